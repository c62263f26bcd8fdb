"""The ``mer-ray`` command (also ``python -m mer_ray``): every job from one front door.

Data:
    mer-ray synth       write a synthetic dataset in a real dataset's format
    mer-ray manifest    one row per annotated clip, with exclusion reasons
    mer-ray prepare     align faces and write Parquet shards (Ray Data)
Experiments:
    mer-ray train       a LOSO run, from a dataset root, from prepared shards, or on the
                        synthetic default
    mer-ray grid        a grid of LOSO runs: ablation, sensitivity, lora-vs-full, or a YAML file
    mer-ray transfer    cross-dataset transfer, with and without domain adaptation (Table 5)
    mer-ray sweep       hyper-parameter search: nested LOSO (default) or flat
    mer-ray report      Markdown (and LaTeX / CSV tables) + PNG figures from stored results
    mer-ray config      every configuration field with its default and help; --show: the
                        resolved configuration and its hash
Models:
    mer-ray model-info  parameters, GFLOPs and peak memory per model variant
    mer-ray checkpoint  one self-contained model file from a run's fold
    mer-ray predict     label a video or a folder of frames, optionally with an explanation PNG
    mer-ray export      the whole model as a torch.export (.pt2) file that needs only torch

Errors print one line naming the file or setting and what to do, and exit 2 (``--debug``
shows the traceback); Ctrl+C exits 130, leaving runs and searches resumable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from .config import ExperimentConfig, config_fields, load_experiment
from .console import show
from .data.adapters import DATASETS
from .data.annotations import AnnotationError
from .data.frames import FrameError
from .data.labels import ALL_PROTOCOLS as PROTOCOLS
from .data.labels import protocols_of
from .data.synth.layouts import LAYOUTS

# Heavy modules (torch, Ray, the model) are imported inside the commands that use them: the
# data commands, `config` and `--help` answer in a fraction of a second.


# -- argument groups shared by the commands ----------------------------------------------------

def _data_args(p: argparse.ArgumentParser, default: str | None = "samm",
               synthetic: bool = True, shards: bool = False) -> None:
    p.add_argument("--dataset", default=default, required=default is None, choices=DATASETS)
    p.add_argument("--data-root", "--root", dest="data_root", type=Path, default=None,
                   help="the dataset's folder" + ("; omitted: a synthetic set in the dataset's "
                                                  "layout (said loudly)" if synthetic else ""))
    if shards:
        p.add_argument("--shards", type=Path, default=None,
                       help="train on shards made by 'mer-ray prepare' (instead of "
                            "--data-root); dataset and protocol come from their prepare.json")
    p.add_argument("--protocol", default="3class", choices=PROTOCOLS,
                   help="3class (every dataset), 5class (samm, casme2), 7class / 4class "
                        "(casme3)")
    p.add_argument("--annotations", type=Path, default=None,
                   help="the annotation file, when it is not in the data root or several "
                        "versions are (SAMM, CASME II, CAS(ME)^3 sheets; MEGC: "
                        "combined_3class_gt.csv)")
    if synthetic:
        g = p.add_argument_group("synthetic default (no --data-root)")
        g.add_argument("--synthetic-subjects", type=int, default=None,
                       help="subjects (the MEGC composite: per part); default 8 (MEGC: 3)")
        g.add_argument("--synthetic-clips", type=int, default=4, help="clips per class "
                                                                     "and subject")
        g.add_argument("--synthetic-seed", type=int, default=0)
        g.add_argument("--synthetic-intensity", type=float, default=None,
                       help="scales every action-unit amplitude (default 1.5)")
        g.add_argument("--synthetic-no-distractors", action="store_true",
                       help="no blinks, head drift or flicker: only the expression moves")
    p.add_argument("--workdir", type=Path, default=Path("data"),
                   help="where synthetic sets and aligned shards are written")


def _config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration ('mer-ray config' lists every field)")
    g.add_argument("--config", type=Path, default=None,
                   help="YAML with sections data, model, loss, train")
    g.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="override, e.g. model.lora_rank=16")
    g.add_argument("--frames", type=int, default=None, help="T: the same as --set data.frames=T")
    g.add_argument("--size", type=int, default=None, help="S: the same as --set data.size=S")


def _run_args(p: argparse.ArgumentParser, seeds: bool = True) -> None:
    g = p.add_argument_group("running")
    g.add_argument("--storage-path", default="results",
                   help="where runs are stored: a folder or a pyarrow URI (s3://...)")
    g.add_argument("--name", default=None, help="run name (default: dataset-protocol-"
                                                "confighash)")
    g.add_argument("--max-folds", type=int, default=None, help="only the first N folds (smoke)")
    g.add_argument("--local", action="store_true",
                   help="train the folds one after another in this process instead of on Ray "
                        "Train workers (the same predictions)")
    if seeds:
        g.add_argument("--seeds", type=int, default=1,
                       help="repeat with this many training seeds (train.seed, +1, ...): mean "
                            "+- std")
    g.add_argument("--tracking", choices=("mlflow", "tensorboard"), default=None,
                   help="log each fold's epochs and each run's summary (off by default)")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI or TensorBoard folder (default: under the storage)")


def experiment_config(args) -> ExperimentConfig:
    overrides = list(args.overrides)
    if getattr(args, "frames", None):
        overrides.append(f"data.frames={args.frames}")
    if getattr(args, "size", None):
        overrides.append(f"data.size={args.size}")
    return load_experiment(args.config, overrides)


def _synthetic(args):
    from .experiments.data import SYNTH_INTENSITY, SyntheticSet

    return SyntheticSet(subjects=args.synthetic_subjects, clips=args.synthetic_clips,
                        seed=args.synthetic_seed,
                        intensity=SYNTH_INTENSITY if args.synthetic_intensity is None
                        else args.synthetic_intensity,
                        distractors=not args.synthetic_no_distractors)


def _start_ray(args, command: str) -> None:
    from .cluster import ensure_ray
    from .experiments.data import driver_log

    ensure_ray(log_file=driver_log(args.storage_path, args.workdir, command))


def _check_protocol(args) -> None:
    if args.protocol not in protocols_of(args.dataset):
        raise ValueError(f"dataset {args.dataset!r} has no protocol {args.protocol!r} "
                         f"(offered: {', '.join(protocols_of(args.dataset))})")


def _shards_for(args, exp: ExperimentConfig):
    """(shards, what to record about the data) for train / grid / sweep."""
    from .data.shards import Shards
    from .experiments.data import dataset_shards

    if getattr(args, "shards", None):
        if args.data_root is not None:
            raise ValueError("give --shards or --data-root, not both")
        shards = Shards.open(args.shards)
        return shards, {"data_root": shards.meta.root}
    _check_protocol(args)
    root, shards = dataset_shards(args.dataset, args.data_root, args.protocol, exp.data,
                                  args.workdir, _synthetic(args), annotations=args.annotations)
    return shards, {"data_root": str(root)}


def _options(args, extra: dict):
    from .experiments.loso import RunOptions

    return RunOptions(storage_path=args.storage_path, max_folds=args.max_folds,
                      local=args.local, seeds=getattr(args, "seeds", 1),
                      tracking=args.tracking, tracking_uri=args.tracking_uri, extra=extra)


def _command(args) -> dict:
    return {"command": ["mer-ray", *args.argv]}


# -- data --------------------------------------------------------------------------------------

def _manifest_tables(manifest) -> None:
    from .data.manifest import annotation_files, summary_counts

    for name, sha in annotation_files(manifest):
        print(f"annotations: {name} (sha256 {sha})")
    inc, exc = summary_counts(manifest)
    show(["class", "clips"], sorted(inc.items()) + [("total", sum(inc.values()))],
         title="included clips per class")
    if exc:
        show(["reason", "clips"], sorted(exc.items()), title="excluded clips per reason")
    else:
        print("excluded clips: none")


def cmd_synth(args) -> int:
    from .data.synth import generate
    from .data.synth.render import RenderConfig

    res = generate(args.out, args.layout, args.subjects, args.clips_per_class, args.protocol,
                   args.seed, args.preview,
                   RenderConfig(frame_size=args.frame_size, intensity=args.intensity,
                                distractors=not args.no_distractors))
    per_class = Counter(c.label for c in res.clips)
    show(["class", "clips"], sorted(per_class.items()) + [("total", len(res.clips))],
         title=f"synthetic {args.layout} ({args.protocol}) in {res.root}: {args.subjects} "
               f"subjects, seed {args.seed}")
    if res.annotation_file:
        print(f"annotations: {res.annotation_file}")
    if res.preview:
        print(f"preview: {res.preview}")
    return 0


def _need_root(args) -> Path:
    if args.data_root is None:
        raise ValueError(f"mer-ray {args.command} needs --data-root (the dataset's folder)")
    return args.data_root


def cmd_manifest(args) -> int:
    from .data.manifest import build_manifest

    _check_protocol(args)
    m = build_manifest(args.dataset, _need_root(args), args.protocol,
                       annotations=args.annotations, check_frames=not args.no_frame_check)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    m.write_parquet(args.out)
    _manifest_tables(m)
    print(f"manifest: {args.out} ({m.height} rows)")
    if args.strict and m["excluded_reason"].is_not_null().any():
        print("--strict: some clips were excluded (see the table above)", file=sys.stderr)
        return 3
    return 0


def cmd_prepare(args) -> int:
    from .cluster import ensure_ray
    from .data.labels import class_names
    from .data.manifest import build_manifest, read_manifest
    from .data.prepare import PrepareConfig, prepare_shards
    from .data.synth import is_synthetic

    exp = experiment_config(args)
    _check_protocol(args)
    root = _need_root(args)
    if args.manifest:
        manifest = read_manifest(args.manifest)
    else:
        manifest = build_manifest(args.dataset, root, args.protocol,
                                  annotations=args.annotations)
    ensure_ray(log_file=args.out / "logs" / "prepare.log")
    res = prepare_shards(
        manifest, args.out, PrepareConfig.from_data(exp.data),
        class_names=class_names(args.dataset, args.protocol), workers=args.workers,
        overwrite=args.overwrite,
        extra_meta={"dataset": args.dataset, "protocol": args.protocol,
                    "root": str(Path(root).resolve()), "synthetic": is_synthetic(root),
                    "annotations": str(args.annotations.resolve()) if args.annotations
                    else None},
    )
    show(["class", "clips"], sorted(res.per_class.items()) + [("total", res.clips)],
         title=f"shards in {res.out / 'clips'} (T={exp.data.frames}, S={exp.data.size})")
    if res.rejected.height:
        counts = Counter(zip(res.rejected["stage"].to_list(), res.rejected["reason"].to_list()))
        show(["stage", "reason", "clips"], [(s, r, n) for (s, r), n in sorted(counts.items())],
             title=f"rejected clips (details in {res.out / 'rejected.parquet'})")
    rate = res.frames_aligned / res.seconds if res.seconds else 0.0
    print(f"{res.frames_aligned} frames aligned in {res.seconds:.1f} s ({rate:.1f} frames/s)")
    print(f"train on them: mer-ray train --shards {args.out}"
          + (f" --frames {exp.data.frames}" if exp.data.frames != 8 else "")
          + (f" --size {exp.data.size}" if exp.data.size != 224 else ""))
    if args.strict and res.rejected.height:
        print("--strict: some clips were rejected (see the table above)", file=sys.stderr)
        return 3
    return 0


# -- experiments -------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from .experiments.loso import train

    exp = experiment_config(args)
    _start_ray(args, "train")
    shards, data = _shards_for(args, exp)
    train(exp, shards, _options(args, {**_command(args), **data}), args.name)
    return 0


def cmd_grid(args) -> int:
    from .experiments.grid import accounting, grid_spec, lora_vs_full_table, run_grid

    base = experiment_config(args)
    rows, prefix, title = grid_spec(args.grid, *([args.values] if args.values else []))
    extras = accounting(base, rows) if prefix == "lora_vs_full" else None
    _start_ray(args, "grid")
    shards, data = _shards_for(args, base)
    out = run_grid(base, shards, _options(args, {**_command(args), **data}), rows, prefix,
                   title, args.name, extras)
    if extras:
        lora_vs_full_table(out)
    return 0


def cmd_transfer(args) -> int:
    from .experiments.data import SYNTH_SEEDS, dataset_shards
    from .experiments.transfer import run_cross

    if args.protocol != "3class":
        raise ValueError("cross-dataset transfer uses the 3-class protocol (one label space)")
    roots = {}
    for item in args.data_roots:
        key, _, path = item.partition("=")
        if key not in DATASETS or not path:
            raise ValueError(f"--data-root {item!r}: expected DATASET=PATH with DATASET in "
                             f"{', '.join(DATASETS)}")
        roots[key] = Path(path)
    targets = args.targets or ["casme2", "smic"]
    if args.source in targets:
        raise ValueError("a target must differ from the source")
    conditions = {"both": [False, True], "none": [False], "adapt": [True]}[args.conditions]
    exp = experiment_config(args)
    _start_ray(args, "transfer")

    def shards(ds, annotations=None):
        return dataset_shards(ds, roots.get(ds), "3class", exp.data, args.workdir,
                              _synthetic(args), seed=SYNTH_SEEDS.get(ds, 0),
                              annotations=annotations)

    src_root, src = shards(args.source, args.annotations)
    target_shards, target_roots = {}, {}
    for target in targets:
        target_roots[target], target_shards[target] = shards(target)
    run_cross(exp, args.source, src, target_shards, conditions, args.storage_path, args.name,
              args.local, {**_command(args), "source_root": str(src_root),
                           "target_roots": {k: str(v) for k, v in target_roots.items()}})
    return 0


def cmd_sweep(args) -> int:
    from .experiments.search_space import read_space

    space = read_space(args.space)  # a bad space fails before any work
    exp = experiment_config(args)
    _start_ray(args, "sweep")
    shards, data = _shards_for(args, exp)
    opts = _options(args, {**_command(args), **data})
    if args.flat:
        from .experiments.flat_search import flat_search

        flat_search(exp, shards, space, opts, args.name or f"sweep-{shards.root.name}-"
                    f"{exp.hash()}", args.num_samples, args.sweep_folds, args.asha,
                    args.study_db, final=not args.no_final)
        return 0
    from .experiments.nested_search import nested_search

    nested_search(exp, shards, space, opts, args.name, args.trials, args.inner_folds)
    return 0


def cmd_config(args) -> int:
    if args.show or args.config or args.overrides or args.frames or args.size:
        import yaml

        exp = experiment_config(args)
        print(yaml.safe_dump(exp.to_dict(), sort_keys=False).rstrip())
        print(f"# config hash: {exp.hash()}")
        return 0
    rows = [(f["key"], f["type"], json.dumps(f["default"]), f["help"]) for f in config_fields()]
    show(["field", "type", "default", "help"], rows,
         title=f"{len(rows)} configuration fields: set them in a YAML file (--config, sections "
               f"data / model / loss / train) or with --set section.field=value")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    report = write_report(args.paths, args.out, tuple(args.format.split(",")))
    print(f"report: {report} (figures in {report.parent / 'figures'})")
    return 0


# -- models ------------------------------------------------------------------------------------

def cmd_model_info(args) -> int:
    from dataclasses import replace

    from .model.accounting import model_stats
    from .model.variants import variant

    names = args.variant or ["full", "full_finetune"]
    rows = []
    for name in names:
        cfg = replace(variant(name), backbone=args.backbone, pretrained=False)
        st = model_stats(name, cfg, args.frames, args.size, memory=not args.no_memory,
                         batch=args.batch)
        rows.append((name, cfg.finetune, st.backbone, f"{st.total_params / 1e6:.2f}",
                     f"{st.trainable_params / 1e6:.2f}", f"{st.gflops_forward:.1f}",
                     f"{st.gflops_train:.1f}",
                     "-" if st.peak_memory_mb is None else f"{st.peak_memory_mb:.0f}"))
        kind = st.memory_kind
    show(["variant", "finetune", "backbone", "params (M)", "trainable (M)",
          "GFLOPs/clip fwd", "GFLOPs/clip train", "peak mem (MB)"], rows,
         title=f"S={args.size}, T={args.frames}; peak memory of a training step, batch "
               f"{args.batch}: {kind} (Table 7 columns)")
    return 0


def cmd_checkpoint(args) -> int:
    from .serving.modelfile import checkpoint_from_run, save_checkpoint

    ckpt = checkpoint_from_run(args.run, args.fold, args.backbone_weights)
    out = save_checkpoint(ckpt, args.out)
    src = ckpt["source"]
    print(f"model checkpoint: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    print(f"  from run {src['run_name']}, fold (test subject) {src['fold']} "
          f"[{src['chosen_by']}], best validation UF1 {src['best_val_uf1']:.4f}")
    print(f"  classes: {', '.join(ckpt['class_names'])}; T={ckpt['preprocess']['frames']}, "
          f"S={ckpt['preprocess']['size']}; backbone "
          f"{'pretrained' if ckpt['pretrained'] else 'RANDOM-INIT'} ({ckpt['weights_source']})")
    return 0


def cmd_predict(args) -> int:
    from .serving.modelfile import load_checkpoint
    from .serving.predict import predict_clip

    model = load_checkpoint(args.checkpoint)
    result, clip = predict_clip(model, args.input, args.onset, args.offset)
    if args.explain:
        from .serving.explain import attributions, explain_figure, summary_values

        att = attributions(model.net, clip["frames"])
        title = (f"{Path(args.input).name} frames {result['span'][0]}..{result['span'][1]}: "
                 f"{result['label']} ({result['probabilities'][result['label']]:.2f})"
                 + ("" if model.meta["pretrained"] else "  [random-init backbone]"))
        result["explanation"] = {"png": str(args.explain),
                                 "panels": explain_figure(clip["frames"], att, model.class_names,
                                                          clip["frame_numbers"], args.explain,
                                                          title),
                                 **summary_values(att)}
    show(["class", "probability"],
         [(n, f"{p:.4f}" + ("  <" if n == result["label"] else ""))
          for n, p in result["probabilities"].items()],
         title=f"{args.input}: {result['label']} (frames {result['span'][0]}..{result['span'][1]}"
               f", T={len(result['frame_numbers'])})")
    if "warning" in result:
        print(f"warning: {result['warning']}", file=sys.stderr)
    sec = result["seconds"]
    print(f"read + align {sec['read_and_align']:.2f} s, model {sec['model']:.2f} s")
    if args.explain:
        print(f"explanation: {args.explain}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"json: {args.json}")
    return 0


def cmd_export(args) -> int:
    from .serving.export import export_model
    from .serving.modelfile import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    res = export_model(model, args.out, batch_max=args.max_batch)
    print(f"exported {res['out']} ({res['bytes'] / 1e6:.1f} MB) in {res['seconds']:.1f} s; "
          f"reloaded and checked: max |difference| {res['max_abs_diff']:.1e}")
    print(f"input: uint8 aligned frames (B, {model.preprocess.frames}, {model.preprocess.size}, "
          f"{model.preprocess.size}, 3); outputs: {', '.join(res['outputs'])}")
    print("load with: torch.export.load(PATH).module() (metadata in the 'mer_ray.json' extra "
          "file)")
    return 0


# -- the parser --------------------------------------------------------------------------------

def _variants():
    from .model.variants import VARIANTS

    return VARIANTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mer-ray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic micro-expression dataset")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--layout", default="samm", choices=LAYOUTS)
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--clips-per-class", type=int, default=2, help="per subject")
    p.add_argument("--protocol", default="3class", choices=PROTOCOLS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preview", type=Path, default=None, help="PNG: onset, apex, difference")
    p.add_argument("--frame-size", type=int, default=256)
    p.add_argument("--intensity", type=float, default=1.0, help="scales every AU amplitude")
    p.add_argument("--no-distractors", action="store_true",
                   help="no blinks, head drift or flicker: only the expression moves")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("manifest", help="list annotated clips with exclusion reasons")
    _data_args(p, default=None, synthetic=False)
    p.add_argument("--out", required=True, type=Path, help="manifest.parquet to write")
    p.add_argument("--no-frame-check", action="store_true",
                   help="read the annotations only (frames not yet on disk)")
    p.add_argument("--strict", action="store_true", help="exit 3 if any clip is excluded")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("prepare", help="align faces and write Parquet shards with Ray Data")
    _data_args(p, default=None, synthetic=False)
    _config_args(p)
    p.add_argument("--out", required=True, type=Path, help="shard folder to write")
    p.add_argument("--manifest", type=Path, default=None,
                   help="use this manifest instead of building one")
    p.add_argument("--workers", type=int, default=None,
                   help="concurrent Ray Data tasks (default: all CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards in --out")
    p.add_argument("--strict", action="store_true", help="exit 3 if any clip is rejected")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="a LOSO run (the synthetic default without a data root)")
    _data_args(p, shards=True)
    _config_args(p)
    _run_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("grid", help="a grid of LOSO runs in the paper's table layout")
    p.add_argument("grid", help="ablation | sensitivity | lora-vs-full | FILE.yaml (rows of "
                                "{label, set: [section.field=value, ...]})")
    p.add_argument("--values", type=float, nargs="+", default=None,
                   help="sensitivity: the lambda values (default 0 0.05 0.1 0.3 0.5 1)")
    _data_args(p, default="casme2", shards=True)
    _config_args(p)
    _run_args(p)
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("transfer", help="cross-dataset transfer (Table 5)")
    p.add_argument("--source", default="samm", choices=DATASETS)
    p.add_argument("--target", dest="targets", action="append", default=None,
                   choices=DATASETS, help="repeatable; default: casme2 and smic")
    p.add_argument("--data-root", "--root", dest="data_roots", action="append", default=[],
                   metavar="DATASET=PATH",
                   help="a dataset's folder, e.g. casme2=/data/CASME2 (repeatable); a dataset "
                        "without one is a synthetic set seeded differently per dataset")
    p.add_argument("--conditions", default="both", choices=("both", "none", "adapt"),
                   help="without adaptation, with it, or both")
    p.add_argument("--protocol", default="3class", choices=("3class",))
    p.add_argument("--annotations", type=Path, default=None,
                   help="the source's annotation file, when it is not in its folder")
    p.add_argument("--workdir", type=Path, default=Path("data"))
    g = p.add_argument_group("synthetic sets (datasets without --data-root)")
    g.add_argument("--synthetic-subjects", type=int, default=None)
    g.add_argument("--synthetic-clips", type=int, default=4)
    g.add_argument("--synthetic-seed", type=int, default=0, help="(each dataset's own seed "
                                                                 "is used)")
    g.add_argument("--synthetic-intensity", type=float, default=None)
    g.add_argument("--synthetic-no-distractors", action="store_true")
    _config_args(p)
    _run_args(p, seeds=False)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("sweep", help="hyper-parameter search: nested LOSO (default) or flat")
    _data_args(p, shards=True)
    _config_args(p)
    _run_args(p, seeds=False)
    s = p.add_argument_group("search")
    s.add_argument("--space", type=Path,
                   default=Path(__file__).resolve().parent.parent / "experiments" / "configs"
                   / "sweep_space.yaml", help="search space YAML (section.field: {type, ...})")
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
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="Markdown (+ LaTeX / CSV tables) and PNG figures")
    p.add_argument("paths", nargs="+",
                   help="run folders, grid files (ablation.json, ...), or folders or URIs "
                        "holding them")
    p.add_argument("--out", type=Path, default=Path("report"), help="report folder to write")
    p.add_argument("--format", default="md",
                   help="comma-separated: md (always), latex, csv: the paper-layout tables "
                        "also as LaTeX tabular / CSV files under OUT/tables/")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("config", help="every configuration field, or a resolved configuration")
    p.add_argument("--show", action="store_true",
                   help="print the configuration that --config / --set resolve to, and its "
                        "hash")
    _config_args(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("model-info", help="parameters, GFLOPs per clip and peak memory")
    p.add_argument("--variant", action="append", default=None, choices=list(_variants()),
                   help="a model variant (repeatable; default: full and full_finetune)")
    p.add_argument("--backbone", default="vit_small_patch14_dinov2",
                   choices=("vit_small_patch14_dinov2", "vit_base_patch14_dinov2"))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=1, help="clips per step for the memory figure")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.set_defaults(func=cmd_model_info)

    p = sub.add_parser("checkpoint", help="a self-contained model file from a LOSO run's fold")
    p.add_argument("run", help="the run folder (or URI) 'mer-ray train' wrote")
    p.add_argument("--fold", default=None,
                   help="test subject of the fold to take (default: best validation UF1)")
    p.add_argument("--out", required=True, type=Path, help="model file to write (.pt)")
    p.add_argument("--backbone-weights", default=None,
                   help="the backbone weights file the run used, if it has moved")
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("predict", help="label a video or a folder of frames")
    p.add_argument("input", type=Path, help="a video file or a folder of frame images")
    p.add_argument("--checkpoint", required=True, type=Path, help="from 'mer-ray checkpoint'")
    p.add_argument("--onset", type=int, default=None,
                   help="first frame number of the span (video: 0-based index); default first")
    p.add_argument("--offset", type=int, default=None, help="last frame number; default last")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--explain", type=Path, default=None,
                   help="PNG: frames, saliency, DGAT attention, SFA w and expert weights")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="the model as a torch.export file that needs only torch")
    p.add_argument("--checkpoint", required=True, type=Path, help="from 'mer-ray checkpoint'")
    p.add_argument("--out", required=True, type=Path, help=".pt2 file to write")
    p.add_argument("--max-batch", type=int, default=256, help="largest batch the file accepts")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (0, 2 on an error, 3 for --strict, 130 when
    interrupted)."""
    from .experiments.flat_search import SweepInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"mer-ray {args.command}: interrupted; running the same command again resumes",
              file=sys.stderr)
        return 130
    except SweepInterrupted as stopped:
        print(f"mer-ray {args.command}: {stopped}", file=sys.stderr)
        return 130
    except (AnnotationError, FrameError, FileNotFoundError, FileExistsError, ValueError,
            RuntimeError, OSError) as exc:
        if args.debug:
            raise
        print(f"mer-ray {args.command}: error: {exc}", file=sys.stderr)
        if isinstance(exc, RuntimeError):
            print("(run with --debug for the traceback; Ray's messages are in the log files "
                  "named above)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
