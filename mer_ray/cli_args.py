"""The ``mer-ray`` command line: every command's options, named the same way across commands,
with their defaults shown in ``--help``. ``cli.py`` runs the commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from .data.adapters import DATASETS
from .data.labels import ALL_PROTOCOLS as PROTOCOLS
from .data.synth.layouts import LAYOUTS

SPACE = Path(__file__).resolve().parent / "protocols" / "sweep_space.yaml"  # the default space


class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and every option's default in its help (unless the help
    already says what the default is)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False):
            return text
        return super()._get_help_string(action)


# -- groups shared by the commands -------------------------------------------------------------

def synthetic_args(g, prefix: str = "") -> None:
    """The synthetic set's settings: ``mer-ray synth`` takes them as they are, the experiment
    commands with the ``--synthetic-`` prefix (the set they use without a data root). One
    default for each, everywhere: the embedded default set."""
    from .data.choice import SYNTH_INTENSITY, SYNTH_SIZE

    g.add_argument(f"--{prefix}subjects", type=int, default=None,
                   help=f"subjects (default for the dataset: {SYNTH_SIZE[0]}; the MEGC "
                        f"composite: 3 per part; CD6ME: 4 per part)")
    g.add_argument(f"--{prefix}clips-per-class", type=int, default=None,
                   help=f"clips per class and subject (default: {SYNTH_SIZE[1]}; CD6ME: 1)")
    g.add_argument(f"--{prefix}seed", type=int, default=0, help="the set's random seed")
    g.add_argument(f"--{prefix}intensity", type=float, default=SYNTH_INTENSITY,
                   help="scales every action-unit amplitude of the generator")
    g.add_argument(f"--{prefix}no-distractors", action="store_true",
                   help="no blinks, head drift or flicker: only the expression moves")


def data_args(p, synthetic: bool = True, shards: bool = False, root_required: bool = False,
              workdir: bool = True) -> None:
    p.add_argument("--dataset", default="samm", choices=DATASETS,
                   help="the dataset: its folder layout, annotation file and label maps")
    p.add_argument("--data-root", "--root", dest="data_root", type=Path, default=None,
                   required=root_required,
                   help="the dataset's folder" + ("; omitted: a synthetic set in the dataset's "
                                                  "layout (said loudly)" if synthetic else ""))
    if shards:
        p.add_argument("--shards", type=Path, default=None,
                       help="train on shards made by 'mer-ray prepare' (instead of "
                            "--data-root): a folder or a URI (s3://bucket/shards); the "
                            "dataset, protocol and frame settings come from their prepare.json")
    p.add_argument("--protocol", default="3class", choices=PROTOCOLS,
                   help="3class (every dataset), 5class (samm, casme2, 4dme), 7class (casme3, "
                        "mmew), 4class (casme3); cd6me: the cross-dataset action-unit "
                        "benchmark (--dataset cd6me, implied)")
    p.add_argument("--annotations", type=Path, default=None,
                   help="the annotation file, when it is not in the data root or several "
                        "versions are (SAMM, CASME II, CAS(ME)^3 sheets; MEGC: "
                        "combined_3class_gt.csv)")
    if synthetic:
        synthetic_args(p.add_argument_group("synthetic default (no --data-root)"), "synthetic-")
    if workdir:
        p.add_argument("--workdir", type=Path, default=Path("data"),
                       help="where synthetic sets and aligned shards are written")


def config_args(p) -> None:
    g = p.add_argument_group("configuration ('mer-ray config' lists every field)")
    g.add_argument("--config", type=Path, default=None,
                   help="YAML with sections data, model, loss, train")
    g.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="override, e.g. model.lora_rank=16")
    g.add_argument("--frames", type=int, default=None,
                   help="T: the same as --set data.frames=T (with --shards: theirs)")
    g.add_argument("--size", type=int, default=None,
                   help="S: the same as --set data.size=S (with --shards: theirs)")
    g.add_argument("--flow", default=None, choices=("tvl1", "farneback", "dis"),
                   help="onset -> apex optical flow in the shards: the same as --set "
                        "data.flow=... (the flow-based methods need it)")


def run_args(p, seeds: bool = True, seeds_help: str | None = None) -> None:
    g = p.add_argument_group("running")
    g.add_argument("--storage-path", default="results",
                   help="where runs are stored: a folder or a pyarrow URI (s3://...)")
    g.add_argument("--name", default=None,
                   help="run name (default: the dataset, protocol, data folder and "
                        "configuration hash; '-firstN' when --max-folds N)")
    g.add_argument("--max-folds", type=int, default=None,
                   help="only the first N folds (a smoke run: its name, summary and table "
                        "say it is partial)")
    g.add_argument("--local", action="store_true",
                   help="train the folds one after another in this process instead of on Ray "
                        "Train workers (the same predictions)")
    g.add_argument("--plugin", dest="plugins", action="append", default=[],
                   metavar="FILE_OR_MODULE",
                   help="a Python file or module that registers a method of yours (repeat for "
                        "several); then --set model.method=NAME trains it, here or on Ray")
    if seeds:
        g.add_argument("--seeds", type=int, default=1,
                       help=seeds_help or "repeat with this many training seeds (train.seed, "
                                          "+1, ...): mean +- std")
    g.add_argument("--tracking", choices=("mlflow", "tensorboard"), default=None,
                   help="log each fold's epochs and each run's summary")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI or TensorBoard folder (default: under the storage)")


# -- the commands ------------------------------------------------------------------------------

def data_commands(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic micro-expression dataset",
                       formatter_class=Help)
    p.add_argument("--out", required=True, type=Path, help="folder to write the set in")
    p.add_argument("--layout", default="samm", choices=(*LAYOUTS, "cd6me"),
                   help="the real dataset whose folders and annotation file it imitates "
                        "(cd6me: six datasets in their six layouts, one folder each)")
    p.add_argument("--protocol", default="3class", choices=PROTOCOLS,
                   help="the label set its annotations spell (cd6me: each part its own)")
    synthetic_args(p)
    p.add_argument("--preview", type=Path, default=None, help="PNG: onset, apex, difference")
    p.add_argument("--frame-size", type=int, default=256, help="rendered frame size (pixels)")

    p = sub.add_parser("manifest", help="list annotated clips with exclusion reasons",
                       formatter_class=Help)
    data_args(p, synthetic=False, root_required=True, workdir=False)
    p.add_argument("--out", required=True, type=Path, help="manifest.parquet to write")
    p.add_argument("--no-frame-check", action="store_true",
                   help="read the annotations only (frames not yet on disk)")
    p.add_argument("--strict", action="store_true", help="exit 3 if any clip is excluded")

    p = sub.add_parser("prepare", help="align faces and write Parquet shards with Ray Data",
                       formatter_class=Help)
    data_args(p, synthetic=False, root_required=True, workdir=False)
    config_args(p)
    p.add_argument("--out", required=True, type=Path,
                   help="shard folder to write: a folder or a URI (s3://bucket/shards)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="use this manifest instead of building one")
    p.add_argument("--workers", type=int, default=None,
                   help="concurrent Ray Data tasks (default: all CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards in --out")
    p.add_argument("--strict", action="store_true", help="exit 3 if any clip is rejected")

    p = sub.add_parser("flow", help="a clip's onset -> apex optical flow and strain, as a PNG",
                       formatter_class=Help)
    data_args(p, synthetic=False, shards=True, workdir=False)
    config_args(p)
    p.add_argument("--clip", default=None,
                   help="the clip (name or subject/clip; default: the first)")
    p.add_argument("--out", type=Path, default=Path("flow.png"), help="PNG to write")


    p = sub.add_parser("folds", formatter_class=Help,
                       help="the LOSO folds a run on this data would use, as a file other "
                            "codebases can read (no training)")
    data_args(p, shards=True)
    config_args(p)
    p.add_argument("--out", required=True, type=Path,
                   help="file to write (.json, or .csv: one row per fold, subject role and "
                        "clip)")
    p.add_argument("--format", choices=("json", "csv"), default=None,
                   help="default: from --out's suffix")


def experiment_commands(sub) -> None:
    p = sub.add_parser("train", help="a LOSO run (the synthetic default without a data root)",
                       formatter_class=Help)
    data_args(p, shards=True)
    config_args(p)
    run_args(p)

    p = sub.add_parser("grid", help="a grid of LOSO runs in the paper's table layout",
                       formatter_class=Help)
    p.add_argument("grid", help="ablation | sensitivity | lora-vs-full | FILE.yaml (rows of "
                                "{label, set: [section.field=value, ...]})")
    p.add_argument("--values", type=float, nargs="+", default=None,
                   help="sensitivity: the lambda values (default 0 0.05 0.1 0.3 0.5 1)")
    data_args(p, shards=True)
    config_args(p)
    run_args(p)

    p = sub.add_parser("transfer", help="cross-dataset transfer (Table 5)", formatter_class=Help)
    p.add_argument("--source", default="samm", choices=DATASETS,
                   help="the dataset trained on (all its subjects)")
    p.add_argument("--target", dest="targets", action="append", default=None,
                   choices=DATASETS, help="repeatable; default: casme2 and smic")
    p.add_argument("--data-root", "--root", dest="data_roots", action="append", default=[],
                   metavar="DATASET=PATH",
                   help="a dataset's folder, e.g. casme2=/data/CASME2 (repeatable); a dataset "
                        "without one is a synthetic set seeded differently per dataset")
    p.add_argument("--conditions", default="both", choices=("both", "none", "adapt"),
                   help="without adaptation, with it, or both")
    p.add_argument("--protocol", default="3class", choices=("3class",),
                   help="one label space across datasets")
    p.add_argument("--annotations", type=Path, default=None,
                   help="the source's annotation file, when it is not in its folder")
    p.add_argument("--workdir", type=Path, default=Path("data"),
                   help="where synthetic sets and aligned shards are written")
    synthetic_args(p.add_argument_group("synthetic sets (datasets without --data-root; each "
                                        "dataset's own seed is added to --synthetic-seed)"),
                   "synthetic-")
    config_args(p)
    run_args(p, seeds=False)

    p = sub.add_parser("sweep", help="hyper-parameter search: nested LOSO (default) or flat",
                       formatter_class=Help)
    data_args(p, shards=True)
    config_args(p)
    run_args(p, seeds=False)
    s = p.add_argument_group("search")
    s.add_argument("--space", type=Path, default=SPACE,
                   help="search space YAML (section.field: {type, ...})")
    s.add_argument("--trials", type=int, default=8,
                   help="nested: configurations each outer fold's search tries")
    s.add_argument("--inner-folds", type=int, default=2,
                   help="nested: inner folds each configuration is scored on")
    s.add_argument("--flat", action="store_true",
                   help="one search on a few folds, then a LOSO with the pick (its figures are "
                        "search-informed)")
    s.add_argument("--num-samples", type=int, default=16, help="--flat: trials")
    s.add_argument("--sweep-folds", type=int, default=3, help="--flat: folds each trial trains")
    s.add_argument("--asha", action="store_true", help="--flat: stop weak trials early (ASHA)")
    s.add_argument("--study-db", default=None,
                   help="--flat: keep the Optuna study in this SQLite file (optuna-dashboard)")
    s.add_argument("--no-final", action="store_true",
                   help="--flat: skip the best configuration's LOSO")


def compare_command(sub) -> None:
    p = sub.add_parser("compare", help="methods x datasets on the same folds, one table",
                       formatter_class=Help)
    p.add_argument("--methods", default="mer,lbptop_svm,ststnet,offapexnet",
                   help="comma-separated registry names (model.method)")
    p.add_argument("--dataset", dest="datasets", action="append", default=None,
                   choices=DATASETS, help="repeatable; default: samm")
    p.add_argument("--data-root", "--root", dest="data_roots", action="append", default=[],
                   metavar="DATASET=PATH",
                   help="a dataset's folder (repeatable); without one, a synthetic set")
    p.add_argument("--shards", type=Path, default=None,
                   help="compare on shards made by 'mer-ray prepare' (a folder or a URI; "
                        "instead of --dataset / --data-root): their dataset, protocol, frame "
                        "settings and flow come with them")
    p.add_argument("--protocol", default="3class", choices=PROTOCOLS,
                   help="the label set, the same for every dataset; cd6me: the cross-dataset "
                        "action-unit benchmark over its six datasets (leave one dataset out)")
    p.add_argument("--with-leaky", action="store_true",
                   help="also each method with train.selection=test (the common leaky "
                        "protocol), shown beside its honest figure with the difference")
    p.add_argument("--with-controls", action="store_true",
                   help="also each method with shuffled training labels (train.shuffle_labels: "
                        "a figure of chance), shown apart, never the best")
    p.add_argument("--workdir", type=Path, default=Path("data"),
                   help="where synthetic sets and aligned shards are written")
    synthetic_args(p.add_argument_group("synthetic sets (datasets without --data-root)"),
                   "synthetic-")
    config_args(p)
    run_args(p, seeds_help="train every method with this many seeds (train.seed, +1, ...) "
                           "on the same folds: each seed's figure, their mean and spread, "
                           "intervals over subjects and seeds")


def result_commands(sub) -> None:
    p = sub.add_parser("report", help="Markdown (+ LaTeX / CSV tables) and PNG figures",
                       formatter_class=Help)
    p.add_argument("paths", nargs="+",
                   help="run folders, grid files (ablation.json, ...), or folders or URIs "
                        "holding them")
    p.add_argument("--out", type=Path, default=Path("report"), help="report folder to write")
    p.add_argument("--format", default="md",
                   help="comma-separated: md (always), latex, csv: the paper-layout tables "
                        "also as LaTeX tabular / CSV files under OUT/tables/")

    p = sub.add_parser("config", help="every configuration field, or a resolved configuration",
                       formatter_class=Help)
    p.add_argument("--show", action="store_true",
                   help="print the configuration that --config / --set resolve to, and its "
                        "hash")
    config_args(p)


def model_commands(sub) -> None:
    from .model.variants import VARIANTS

    p = sub.add_parser("model-info", help="parameters, GFLOPs per clip and peak memory",
                       formatter_class=Help)
    p.add_argument("--variant", action="append", default=None, choices=list(VARIANTS),
                   help="a model variant (repeatable; default: full and full_finetune)")
    p.add_argument("--backbone", default="vit_small_patch14_dinov2",
                   choices=("vit_small_patch14_dinov2", "vit_base_patch14_dinov2"),
                   help="the DinoV2 backbone")
    p.add_argument("--size", type=int, default=224, help="S: frame size in pixels")
    p.add_argument("--frames", type=int, default=8, help="T: frames per clip")
    p.add_argument("--batch", type=int, default=1, help="clips per step for the memory figure")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")

    p = sub.add_parser("checkpoint", help="a self-contained model file from a LOSO run's fold",
                       formatter_class=Help)
    p.add_argument("run", help="the run folder (or URI) 'mer-ray train' wrote")
    p.add_argument("--fold", default=None,
                   help="test subject of the fold to take (default: best validation UF1)")
    p.add_argument("--out", required=True, type=Path, help="model file to write (.pt)")
    p.add_argument("--backbone-weights", default=None,
                   help="the backbone weights file the run used, if it has moved")

    p = sub.add_parser("predict", help="label a video or a folder of frames",
                       formatter_class=Help)
    p.add_argument("input", type=Path, help="a video file or a folder of frame images")
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="the .pt file from 'mer-ray checkpoint' (a .pt2 export is refused: "
                        "loading one runs code; load those only from sources you trust)")
    p.add_argument("--onset", type=int, default=None,
                   help="first frame number of the span (video: 0-based index); default first")
    p.add_argument("--offset", type=int, default=None, help="last frame number; default last")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--explain", type=Path, default=None,
                   help="PNG: frames, saliency, DGAT attention, SFA w and expert weights")

    p = sub.add_parser("export", help="the model as a torch.export file that needs only torch",
                       formatter_class=Help)
    p.add_argument("--checkpoint", required=True, type=Path, help="from 'mer-ray checkpoint'")
    p.add_argument("--out", required=True, type=Path,
                   help=".pt2 file to write (loading it unpickles: share it only with people "
                        "who trust you)")
    p.add_argument("--max-batch", type=int, default=256, help="largest batch the file accepts")


def build_parser(description: str, version: str, more=()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mer-ray", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks of errors (anywhere on the command line)")
    parser.add_argument("--version", action="version", version=f"mer-ray {version}")
    sub = parser.add_subparsers(dest="command", required=True)
    data_commands(sub)
    experiment_commands(sub)
    compare_command(sub)
    result_commands(sub)
    for add in more:  # commands whose options live with their code (cli_results.py)
        add(sub)
    model_commands(sub)
    parser.commands = sub.choices  # each command's own parser (an experiment script's)
    return parser


# Options that name local files or folders. Results may live on an object store
# (--storage-path, report's inputs), and so may shards (--shards, prepare's --out, with the
# trunk tokens beside them); data roots, manifests and annotation files not.
LOCAL_ONLY = ("workdir", "data_root", "out", "manifest", "annotations", "data_roots")
REMOTE_OK = {("prepare", "out")}


def check_locations(args) -> None:
    """Before any work: no URI that carries credentials; results writable where
    ``--storage-path`` says; a clear error for a URI given where a local (or mounted) folder
    is needed."""
    from .storage import as_uri, check_writable, is_uri, redact, refuse_credentials

    for key in ("storage_path", "shards", "out", "paths", "run"):  # what may be remote
        given = getattr(args, key, None)
        for value in given if isinstance(given, list) else [given]:
            if value is not None and is_uri(str(value)):
                refuse_credentials(value, {"paths": "report input", "run": "run"}.get(
                    key, "--" + key.replace("_", "-")))
    if getattr(args, "storage_path", None) is not None:
        check_writable(args.storage_path)
    for key in LOCAL_ONLY:
        if (getattr(args, "command", None), key) in REMOTE_OK:
            continue
        given = getattr(args, key, None)
        for value in given if isinstance(given, list) else [given]:
            text = str(value)
            name, _, path = text.partition("=") if key == "data_roots" else ("", "", text)
            if value is None or not is_uri(path):
                continue
            flag = "--data-root" if key == "data_roots" else "--" + key.replace("_", "-")
            shown = redact(f"{name}={as_uri(path)}" if name else as_uri(path))
            raise ValueError(
                f"{flag} {shown}: this option needs a folder on this machine (or one every "
                f"node mounts); only results (--storage-path) and shards (mer-ray prepare "
                f"--out, --shards) can be on an object store")
