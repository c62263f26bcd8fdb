"""The ``mer-ray`` command (also ``python -m mer_ray``): every job from one front door.

Data:
    mer-ray synth       write a synthetic dataset in a real dataset's format
    mer-ray manifest    one row per annotated clip, with exclusion reasons
    mer-ray prepare     align faces and write Parquet shards (Ray Data), with optical flow
                        on request (--flow)
    mer-ray flow        one clip's onset -> apex optical flow and strain as a PNG
Experiments:
    mer-ray train       a LOSO run, from a dataset root, from prepared shards, or on the
                        synthetic default
    mer-ray grid        a grid of LOSO runs: ablation, sensitivity, lora-vs-full, or a YAML file
    mer-ray transfer    cross-dataset transfer, with and without domain adaptation (Table 5)
    mer-ray sweep       hyper-parameter search: nested LOSO (default) or flat
    mer-ray compare     methods x datasets on the same folds: UF1/UAR with intervals, paired
                        differences from the best, parameters, seconds; --with-leaky beside
    mer-ray report      Markdown (and LaTeX / CSV tables) + PNG figures from stored results
    mer-ray config      every configuration field with its default and help; --show: the
                        resolved configuration and its hash
Models:
    mer-ray model-info  parameters, GFLOPs and peak memory per model variant
    mer-ray checkpoint  one self-contained model file from a run's fold
    mer-ray predict     label a video or a folder of frames, optionally with an explanation PNG
    mer-ray export      the whole model as a torch.export (.pt2) file that needs only torch

Every input is checked before Ray starts. Errors print one line naming the file or setting and
what to do, and exit 2 (``--debug``, anywhere on the line, shows the traceback); Ctrl+C exits
130, leaving runs and searches resumable.

This file parses and reports; each command's work is done by its module (``experiments/``,
``data/``, ``serving/``).
"""

from __future__ import annotations

import json
import sys
import warnings
from collections import Counter
from pathlib import Path

from .config import ExperimentConfig, config_fields, load_yaml
from .console import Ticker, show
from .data.annotations import AnnotationError
from .data.frames import FrameError


def _overrides(args) -> list[str]:
    """--set options, then --frames, --size and --flow as the data settings they stand for."""
    return list(args.overrides) + [f"data.{o}={getattr(args, o)}"
                                   for o in ("frames", "size", "flow") if getattr(args, o, None)]


def experiment_config(args) -> tuple[ExperimentConfig, set[str]]:
    """The configuration the options resolve to, and the data settings the user set (a config
    file's data section, --set data.*, --frames, --size)."""
    overrides = _overrides(args)
    user_set = {o.partition("=")[0].strip() for o in overrides if o.startswith("data.")}
    if args.config:
        user_set |= {f"data.{k}" for k in (load_yaml(args.config).get("data") or {})}
    from .methods import load_with_recipe

    return load_with_recipe(args.config, overrides), user_set


def _synthetic(args):
    from .experiments.data import SyntheticSet

    if not hasattr(args, "synthetic_subjects"):  # a command without a synthetic default
        return SyntheticSet()
    return SyntheticSet(subjects=args.synthetic_subjects,
                        clips_per_class=args.synthetic_clips_per_class,
                        seed=args.synthetic_seed, intensity=args.synthetic_intensity,
                        distractors=not args.synthetic_no_distractors)


def _data(args):
    from .experiments.data import DataChoice

    return DataChoice(args.dataset, args.protocol, args.data_root, getattr(args, "shards", None),
                      args.annotations, _synthetic(args), getattr(args, "workdir", Path("data")))


def _start_ray(args, command: str) -> None:
    from .cluster import ensure_ray
    from .experiments.data import driver_log

    ensure_ray(log_file=driver_log(args.storage_path, args.workdir, command))


def _options(args, extra: dict):
    from .experiments.loso import RunOptions

    return RunOptions(storage_path=args.storage_path, max_folds=args.max_folds,
                      local=args.local, seeds=getattr(args, "seeds", 1),
                      tracking=args.tracking, tracking_uri=args.tracking_uri,
                      extra={"command": ["mer-ray", *args.argv], **extra})


# -- data --------------------------------------------------------------------------------------

def cmd_synth(args) -> int:
    from .data.synth import generate
    from .data.synth.render import RenderConfig
    from .experiments.data import SyntheticSet

    subjects = SyntheticSet(args.subjects).subjects_for(args.layout)
    with Ticker(f"rendering a synthetic {args.layout} set ({subjects} subjects)") as tick:
        res = generate(args.out, args.layout, subjects, args.clips_per_class, args.protocol,
                       args.seed, args.preview,
                       RenderConfig(frame_size=args.frame_size, intensity=args.intensity,
                                    distractors=not args.no_distractors),
                       progress=lambda done, total: tick.update(f"{done}/{total} clips"))
    per_class = Counter(c.label for c in res.clips)
    show(["class", "clips"], sorted(per_class.items()) + [("total", len(res.clips))],
         title=f"synthetic {args.layout} ({args.protocol}) in {res.root}: {subjects} "
               f"subjects, seed {args.seed}")
    for what, path in (("annotations", res.annotation_file), ("preview", res.preview)):
        if path:
            print(f"{what}: {path}")
    return 0


def _manifest(args, check_frames: bool = True):
    from .data.manifest import annotation_files, build_manifest, read_manifest, summary_counts

    _data(args).check()
    if getattr(args, "manifest", None):
        return read_manifest(args.manifest)
    m = build_manifest(args.dataset, args.data_root, args.protocol,
                       annotations=args.annotations, check_frames=check_frames)
    for name, sha in annotation_files(m):
        print(f"annotations: {name} (sha256 {sha})")
    inc, exc = summary_counts(m)
    show(["class", "clips"], sorted(inc.items()) + [("total", sum(inc.values()))],
         title="included clips per class")
    if exc:
        show(["reason", "clips"], sorted(exc.items()), title="excluded clips per reason")
    return m


def cmd_manifest(args) -> int:
    m = _manifest(args, check_frames=not args.no_frame_check)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    m.write_parquet(args.out)
    print(f"manifest: {args.out} ({m.height} rows)")
    if args.strict and m["excluded_reason"].is_not_null().any():
        print("--strict: some clips were excluded (see the table above)", file=sys.stderr)
        return 3
    return 0


def cmd_prepare(args) -> int:
    from .cluster import ensure_ray
    from .data.prepare import prepare_clips, refuse_overwrite
    from .experiments.data import driver_log
    from .storage import locate

    exp, _ = experiment_config(args)
    out = locate(args.out)  # a URI is checked here: a bucket that cannot be used stops it
    if not args.overwrite:
        refuse_overwrite(out.where())
    manifest = _manifest(args)
    ensure_ray(log_file=driver_log(out.where(), Path("data"), "prepare"))
    res = prepare_clips(manifest, out.where(), exp.data, args.dataset, args.protocol,
                        args.data_root, args.annotations, args.workers, args.overwrite)
    show(["class", "clips"], sorted(res.per_class.items()) + [("total", res.clips)],
         title=f"shards in {out.where('clips')} (T={exp.data.frames}, S={exp.data.size})")
    if res.rejected.height:
        counts = Counter(zip(res.rejected["stage"].to_list(), res.rejected["reason"].to_list()))
        show(["stage", "reason", "clips"], [(s, r, n) for (s, r), n in sorted(counts.items())],
             title=f"rejected clips (details in {out.where('rejected.parquet')})")
    rate = res.frames_aligned / res.seconds if res.seconds else 0.0
    print(f"{res.frames_aligned} frames aligned in {res.seconds:.1f} s ({rate:.1f} frames/s)")
    print(f"train on them: mer-ray train --shards {out.where()} (their T, S and alignment come "
          f"with them)")
    if args.strict and res.rejected.height:
        print("--strict: some clips were rejected (see the table above)", file=sys.stderr)
        return 3
    return 0


def cmd_flow(args) -> int:
    from .data.flow_preview import computed_flow, flow_figure, stored_flow
    from .data.shards import Shards

    exp, _ = experiment_config(args)
    if args.shards is not None:
        clip, columns = stored_flow(Shards.open(args.shards), args.clip)
        backend = Shards.open(args.shards).meta.data.flow
    else:
        if args.data_root is None:
            raise ValueError("mer-ray flow needs --shards (prepared with --flow) or --data-root")
        from .data.manifest import included

        rows = [r for r in included(_manifest(args)).to_dicts()
                if args.clip in (None, r["clip"], f"{r['subject']}/{r['clip']}")]
        if not rows:
            raise ValueError(f"{args.data_root}: no included clip {args.clip!r}")
        backend = exp.data.flow or "tvl1"
        clip = f"{rows[0]['subject']}/{rows[0]['clip']}"
        columns = computed_flow(rows[0], exp.data, backend)
    out = flow_figure(columns, args.out, f"{clip}: {backend} flow, onset -> apex")
    print(f"flow preview: {out}" + (f" ({columns['flow_note']})" if columns["flow_note"]
                                    else ""))
    return 0


# -- experiments -------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from .experiments.loso import refuse_clashes, run_name, settle, train

    exp, user_set = experiment_config(args)
    data = _data(args)
    exp = settle(data, exp, user_set)
    name = args.name or run_name(data, exp, args.max_folds)
    names = [name] if args.seeds <= 1 else \
        [f"{name}-seed{exp.train.seed + i}" for i in range(args.seeds)]
    refuse_clashes(data, exp, args.storage_path, names)
    _start_ray(args, "train")
    shards = data.prepare(exp.data)
    train(exp, shards, _options(args, {"data_root": shards.meta.root}), name)
    return 0


def cmd_grid(args) -> int:
    from .experiments.grid import run_grid_command

    exp, user_set = experiment_config(args)
    return run_grid_command(args.grid, args.values, _data(args), exp, user_set,
                            _options(args, {}), args.name, lambda: _start_ray(args, "grid"))


def cmd_transfer(args) -> int:
    from .experiments.transfer import transfer_command

    if args.protocol != "3class":
        raise ValueError("cross-dataset transfer uses the 3-class protocol (one label space)")
    exp, user_set = experiment_config(args)
    return transfer_command(args.source, args.targets, args.data_roots, args.annotations,
                            args.conditions, args.workdir, _synthetic(args), exp, user_set,
                            _options(args, {}), args.name, lambda: _start_ray(args, "transfer"))


def cmd_compare(args) -> int:
    from .experiments.compare import compare_command

    _, user_set = experiment_config(args)
    compare_command([m.strip() for m in args.methods.split(",") if m.strip()], args.datasets,
                    args.data_roots, args.protocol, args.workdir, _synthetic(args), args.config,
                    _overrides(args), user_set, _options(args, {}), args.name, args.with_leaky,
                    lambda: _start_ray(args, "compare"))
    return 0


def cmd_sweep(args) -> int:
    from .experiments.loso import refuse_clashes, run_name, settle
    from .experiments.search_space import read_space

    space = read_space(args.space)  # a bad space fails before any work
    exp, user_set = experiment_config(args)
    data = _data(args)
    exp = settle(data, exp, user_set)
    if args.flat:
        name = args.name or run_name(data, exp, prefix="sweep-")
        refuse_clashes(data, exp, args.storage_path, [name])
        refuse_clashes(data, exp, args.storage_path, [f"{name}-best"], config_known=False)
    else:
        name = args.name or run_name(data, exp, args.max_folds, prefix="nested-")
    _start_ray(args, "sweep")
    shards = data.prepare(exp.data)
    opts = _options(args, {"data_root": shards.meta.root})
    if args.flat:
        from .experiments.flat_search import flat_search

        flat_search(exp, shards, space, opts, name, args.num_samples, args.sweep_folds,
                    args.asha, args.study_db, final=not args.no_final)
        return 0
    from .experiments.nested_search import nested_search

    nested_search(exp, shards, space, opts, name, args.trials, args.inner_folds)
    return 0


def cmd_config(args) -> int:
    if args.show or args.config or args.overrides or args.frames or args.size:
        import yaml

        exp, _ = experiment_config(args)
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


def _model_command(name: str):
    def run(args) -> int:
        from .serving import commands

        return getattr(commands, name)(args)
    return run


COMMANDS = {"synth": cmd_synth, "manifest": cmd_manifest, "prepare": cmd_prepare, "flow": cmd_flow,
            "train": cmd_train, "grid": cmd_grid, "transfer": cmd_transfer, "sweep": cmd_sweep,
            "compare": cmd_compare, "config": cmd_config, "report": cmd_report,
            "model-info": _model_command("model_info"),
            "checkpoint": _model_command("checkpoint"),
            "predict": _model_command("predict"), "export": _model_command("export")}


# -- the front door ----------------------------------------------------------------------------

def build_parser():
    from .cli_args import build_parser as build
    from .provenance import code_version

    return build(__doc__, code_version())


def _parse(argv: list[str], script: str | None, fixed: dict | None, about: str | None):
    """The options of ``argv`` (a command and its options); as an experiment script
    (``script``): that command's options under the script's name, with ``fixed`` settings
    that the options may not contradict."""
    parser = build_parser()
    if script is None:
        return parser.parse_args(argv)
    command = argv[0]
    sub = parser.commands[command]
    sub.prog, sub.description = script, about
    sub.set_defaults(**(fixed or {}))
    args = sub.parse_args(argv[1:])
    args.command = command
    for key, value in (fixed or {}).items():
        if getattr(args, key) != value:
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"{script} runs {flag} {value}; for {getattr(args, key)} use its "
                             f"own script or 'mer-ray {command} {flag} {getattr(args, key)}'")
    return args


def _quiet_warnings() -> None:
    """Warnings as one line each, without the source line Python adds."""
    warnings.formatwarning = lambda message, category, *a, **k: \
        f"warning: {message}\n"


def main(argv: list[str] | None = None, script: str | None = None, fixed: dict | None = None,
         about: str | None = None) -> int:
    """Run one command; returns its exit status (0, 2 on an error, 3 for --strict, 130 when
    interrupted). ``script``, ``fixed``, ``about``: run as an experiment script (its name in
    usage lines, its description in --help, settings it fixes)."""
    from .experiments.search_space import SweepInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = script or (argv[0] if argv else "mer-ray")
    _quiet_warnings()
    try:
        args = _parse(argv, script, fixed, about)
        args.argv, args.debug = argv, debug
        command = script or f"mer-ray {args.command}"
        from .cli_args import refuse_remote_data

        refuse_remote_data(args)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted; running the same command again resumes",
              file=sys.stderr)
        return 130
    except SweepInterrupted as stopped:
        print(f"{command}: {stopped}", file=sys.stderr)
        return 130
    except (AnnotationError, FrameError, FileNotFoundError, FileExistsError, ValueError,
            RuntimeError, OSError) as exc:
        if debug:
            raise
        print(f"{command}: error: {exc}", file=sys.stderr)
        if isinstance(exc, RuntimeError):
            print("(run with --debug for the traceback; Ray's messages are in the log files "
                  "named above)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
