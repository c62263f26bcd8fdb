"""The commands over results made anywhere: ``mer-ray score`` (anyone's predictions, scored as
mer-ray scores its own runs). ``cli.py`` dispatches them."""

from __future__ import annotations

from pathlib import Path

from .cli_args import Help, config_args, data_args
from .cli_data import data_choice, experiment_config
from .console import show


def score_args(sub) -> None:
    p = sub.add_parser(
        "score", formatter_class=Help,
        help="score predictions made anywhere, as mer-ray scores its runs (a run folder)",
        description="Score a predictions file (CSV or Parquet, one row per test clip: clip, "
                    "prediction as class name or index; optional subject, fold, label, "
                    "p_<class>) against the protocol's clips and folds. Missing, extra or "
                    "repeated clips, classes outside the protocol and folds that contradict "
                    "the subjects are refused (exit 2). The figures are those mer-ray reports "
                    "for its own runs; the file becomes a run folder under --storage-path. "
                    "Of the configuration only train.seed and train.val_subjects are read "
                    "(--config / --set): they draw the folds' validation subjects, as for a "
                    "run, so the scored run's folds hash matches a run's; train.seed also "
                    "seeds the bootstrap.")
    p.add_argument("predictions", type=Path, help="the predictions file (.csv or .parquet)")
    data_args(p, synthetic=False, shards=True, workdir=False)
    config_args(p)
    p.add_argument("--selection", choices=("validation", "test", "unknown"), default="unknown",
                   help="how the submitter chose epochs and settings: validation (without the "
                        "test subjects: ranked with honest runs), test (the leaky protocol) or "
                        "unknown; test and unknown are never ranked with honest runs")
    p.add_argument("--method", default=None,
                   help="the method's name in tables (default: the file's name)")
    p.add_argument("--against", default=None, metavar="RUN",
                   help="a stored run (its name in --storage-path): the paired subject-"
                        "bootstrap difference of this file minus that run")
    p.add_argument("--storage-path", default="results",
                   help="where the scored run is written (and --against is read): a folder "
                        "or a pyarrow URI")
    p.add_argument("--name", default=None,
                   help="the scored run's name (default: scored-<method>-<dataset>-"
                        "<protocol>-<file hash>)")





def _given(args, flag: str) -> bool:
    return any(a == flag or a.startswith(f"{flag}=") for a in getattr(args, "argv", []))


def truth_of(args):
    """The protocol's clips, classes and folds, from --shards or --data-root (its manifest:
    nothing is aligned); train.val_subjects and train.seed (--config / --set) draw the
    folds' validation subjects, as they do for a run."""
    from .protocols.truth import truth_for

    exp, _ = experiment_config(args)
    data = data_choice(args)
    data.check()
    given = args.shards is None  # with shards, only what the user typed is held to theirs
    return truth_for(shards=data.handle() if args.shards is not None else None,
                     data_root=args.data_root,
                     dataset=args.dataset if given or _given(args, "--dataset") else None,
                     protocol=args.protocol if given or _given(args, "--protocol") else None,
                     annotations=args.annotations, val_subjects=exp.train.val_subjects,
                     seed=exp.train.seed), exp


def cmd_score(args) -> int:
    """``mer-ray score``: refuse or score a predictions file; write it as a run folder."""
    from .protocols.scoring import against, read_predictions, score, write
    from .protocols.summary import print_summary
    from .storage import open_storage

    frame, raw = read_predictions(args.predictions)
    truth, exp = truth_of(args)
    scored = score(frame, truth, file=str(args.predictions), selection=args.selection,
                   method=args.method, seed=exp.train.seed, name=args.name, raw=raw)
    storage = open_storage(args.storage_path)
    if args.against:
        d = against(scored, storage, args.against, seed=exp.train.seed)
        scored.summary["against"] = d
    where = write(scored, storage, truth.folds_file, raw, str(args.predictions))
    print_summary(scored.summary, where)
    if args.against:
        d = scored.summary["against"]
        show(["figure", "this file", d["run"], "difference [95 % CI]"],
             [(key.upper(), f"{scored.summary['metrics'][key]:.4f}", f"{d[f'run_{key}']:.4f}",
               f"{d[key]['difference']:+.4f} [{d[key]['ci95'][0]:+.4f}, "
               f"{d[key]['ci95'][1]:+.4f}]" + (" excludes 0" if d[key]["excludes_zero"] else ""))
              for key in d["figures"]],
             title=f"paired bootstrap over test subjects ({d['resamples']} resamples)"
                   + ("" if d["same_folds"] else "; the run's folds hash differs: other "
                                                "validation subjects, the same test subjects"))
    return 0


def leaderboard_args(sub) -> None:
    p = sub.add_parser(
        "leaderboard", formatter_class=Help,
        help="a static leaderboard site over stored runs (works offline)",
        description="A static site (open OUT/index.html; no server, no network): each "
                    "benchmark (dataset, protocol, clips) with its methods ranked by UF1 with "
                    "intervals, leaky and undeclared runs in a table of their own, a page per "
                    "run with its confusion matrix and files, and a critical-difference "
                    "diagram across benchmarks (or seeds).")
    p.add_argument("paths", nargs="+",
                   help="run folders, or folders or URIs holding them (scored files too)")
    p.add_argument("--out", type=Path, default=Path("site"), help="the site's folder")
    p.add_argument("--title", default="mer-ray leaderboard", help="the index page's title")


def cmd_leaderboard(args) -> int:
    from .console import Ticker
    from .report.site import build_site

    with Ticker(f"building the leaderboard of {', '.join(map(str, args.paths))}"):
        index = build_site(args.paths, args.out, args.title)
    print(f"leaderboard: {index} (open it in a browser; it needs no server)")
    return 0


def new_method_args(sub) -> None:
    p = sub.add_parser(
        "new-method", formatter_class=Help,
        help="write a working method of your own as a file to edit (--plugin FILE trains it)",
        description="Writes NAME.py: a small network method (NetworkMethod) on the change "
                    "between the onset and the middle frame, which trains as written with "
                    "'mer-ray train --plugin NAME.py --set model.method=NAME', on Ray or "
                    "--local. Replace its inputs and network with yours.")
    p.add_argument("name", help="the method's name (what --set model.method= takes)")
    p.add_argument("--out", type=Path, default=None, help="the file (default: NAME.py)")


def cmd_new_method(args) -> int:
    from .methods.template import write_template

    out = write_template(args.name, args.out)
    print(f"{out}: the method {args.name!r}. Train it: mer-ray train --plugin {out} --set "
          f"model.method={args.name} --config experiments/configs/demo.yaml")
    return 0
