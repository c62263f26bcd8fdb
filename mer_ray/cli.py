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
    mer-ray score       predictions made anywhere, scored as mer-ray scores its runs
    mer-ray leaderboard a static site over stored runs: benchmarks, ranked methods, a
                        critical-difference diagram
    mer-ray report      Markdown (and LaTeX / CSV tables) + PNG figures from stored results
    mer-ray config      every configuration field with its default and help; --show: the
                        resolved configuration and its hash
Models:
    mer-ray model-info  parameters, GFLOPs and peak memory per model variant
    mer-ray checkpoint  one self-contained model file from a run's fold
    mer-ray predict     label a video or a folder of frames, optionally with an explanation PNG
    mer-ray export      the whole model as a torch.export (.pt2) file that needs only torch
    mer-ray new-method  a working method of your own as a file to edit (--plugin trains it)

Every input is checked before Ray starts. Errors print one line naming the file or setting and
what to do, and exit 2 (``--debug``, anywhere on the line, shows the traceback); Ctrl+C exits
130, leaving runs and searches resumable.

This file parses and reports; each command's work is done by its module (``experiments/``,
``data/``, ``serving/``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from dataclasses import replace

from .cli_data import (
    cmd_flow,
    cmd_folds,
    cmd_manifest,
    cmd_prepare,
    cmd_synth,
    data_choice,
    experiment_config,
    settings,
    synthetic_set,
)
from .cli_results import (
    cmd_leaderboard,
    cmd_new_method,
    cmd_score,
    leaderboard_args,
    new_method_args,
    score_args,
)
from .config import config_fields
from .console import Ticker, show
from .data.annotations import AnnotationError
from .data.frames import FrameError


def _start_ray(args, command: str) -> None:
    from .cluster import driver_log, ensure_ray

    ensure_ray(log_file=driver_log(args.storage_path, args.workdir, command))


def _options(args, extra: dict):
    from .protocols.loso import RunOptions

    return RunOptions(storage_path=args.storage_path, max_folds=args.max_folds,
                      local=args.local, seeds=getattr(args, "seeds", 1),
                      tracking=args.tracking, tracking_uri=args.tracking_uri,
                      extra={"command": ["mer-ray", *args.argv], **extra})


# -- experiments -------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from .protocols.loso import refuse_clashes, settle, train
    from .protocols.names import run_name, seed_names

    exp, user_set = experiment_config(args)
    data = data_choice(args)
    exp = settle(data, exp, user_set)
    name = args.name or run_name(data, exp, args.max_folds)
    opts = _options(args, {})
    refuse_clashes(data, exp, opts.storage, seed_names(name, exp.train.seed, args.seeds))
    if args.local and data.ready(exp.data):
        # in this process, on shards that exist: nothing needs Ray (a trunk-token folder the
        # folds share is read when it exists; without it each fold computes its trunk)
        print("--local on prepared shards: no Ray started", flush=True)
    else:
        _start_ray(args, "train")
    shards = data.prepare(exp.data)
    train(exp, shards, replace(opts, extra={**opts.extra, "data_root": shards.meta.root}), name)
    return 0


def cmd_grid(args) -> int:
    from .methods import load_with_recipe
    from .protocols.grid import resolve_grid, run_grid_command

    _, user_set = experiment_config(args)
    given = settings(args)
    spec = resolve_grid(args.grid, args.values, data_choice(args),
                        lambda row: load_with_recipe(args.config, given, row), user_set,
                        args.name)
    return run_grid_command(spec, _options(args, {}), lambda: _start_ray(args, "grid"))


def cmd_transfer(args) -> int:
    from .data.choice import dataset_choices
    from .protocols.transfer import transfer_command, transfer_spec

    if args.protocol != "3class":
        raise ValueError("cross-dataset transfer uses the 3-class protocol (one label space)")
    exp, _ = experiment_config(args)
    data = dataset_choices([args.source, *(args.targets or ["casme2", "smic"])],
                           args.data_roots, "3class", synthetic_set(args), args.workdir)
    spec = transfer_spec(exp, args.source, args.targets, data, args.conditions, args.name,
                         args.annotations)
    return transfer_command(spec, _options(args, {}), lambda: _start_ray(args, "transfer"))


def cmd_compare(args) -> int:
    from .data.choice import dataset_choices
    from .protocols.compare import CompareSpec, compare_command

    _, user_set = experiment_config(args)
    spec = CompareSpec(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                       data=dataset_choices(args.datasets, args.data_roots,
                                            args.protocol, synthetic_set(args), args.workdir,
                                            args.shards, apart=len(args.datasets or []) > 1),
                       base_file=args.config,
                       settings=settings(args), user_set=frozenset(user_set),
                       name=args.name or "compare", with_leaky=args.with_leaky,
                       seeds=args.seeds, with_controls=args.with_controls)
    compare_command(spec, _options(args, {}), lambda: _start_ray(args, "compare"))
    return 0


def cmd_sweep(args) -> int:
    from .protocols.loso import refuse_clashes, settle
    from .protocols.names import best_name, run_name
    from .protocols.search_space import read_space, refuse_leaky

    space = read_space(args.space)  # a bad space fails before any work
    exp, user_set = experiment_config(args)
    refuse_leaky(exp)
    data = data_choice(args)
    exp = settle(data, exp, user_set)
    opts = _options(args, {})
    if args.flat:
        name = args.name or run_name(data, exp, prefix="sweep-")
        refuse_clashes(data, exp, opts.storage, [name])
        refuse_clashes(data, exp, opts.storage, [best_name(name)], config_known=False)
    else:
        name = args.name or run_name(data, exp, args.max_folds, prefix="nested-")
    _start_ray(args, "sweep")
    shards = data.prepare(exp.data)
    opts = replace(opts, extra={**opts.extra, "data_root": shards.meta.root})
    if args.flat:
        from .protocols.flat_search import FlatSpec, flat_search
        from .protocols.search_space import tune_space

        flat_search(exp, shards, FlatSpec(tune_space(space), args.num_samples, args.sweep_folds,
                                          args.asha, args.study_db), opts, name,
                    final=not args.no_final)
        return 0
    from .protocols.nested_search import nested_search

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

    with Ticker(f"writing the report of {', '.join(map(str, args.paths))}") as tick:
        report = write_report(args.paths, args.out, tuple(args.format.split(",")),
                              progress=tick.update)
    print(f"report: {report} (figures in {report.parent / 'figures'})")
    return 0


def _model_command(name: str):
    def run(args) -> int:
        from .serving import commands

        return getattr(commands, name)(args)
    return run


COMMANDS = {"synth": cmd_synth, "manifest": cmd_manifest, "prepare": cmd_prepare, "flow": cmd_flow,
            "folds": cmd_folds,
            "train": cmd_train, "grid": cmd_grid, "transfer": cmd_transfer, "sweep": cmd_sweep,
            "compare": cmd_compare, "config": cmd_config, "report": cmd_report,
            "score": cmd_score, "leaderboard": cmd_leaderboard, "new-method": cmd_new_method,
            "model-info": _model_command("model_info"),
            "checkpoint": _model_command("checkpoint"),
            "predict": _model_command("predict"), "export": _model_command("export")}


# -- the front door ----------------------------------------------------------------------------

def build_parser():
    from .cli_args import build_parser as build
    from .provenance import code_version

    return build(__doc__, code_version(), more=(score_args, leaderboard_args, new_method_args))


def _parse(argv: list[str], script: str | None, fixed: dict | None, about: str | None):
    """The options of ``argv`` (a command and its options); as an experiment script
    (``script``): that command's options under the script's name, with ``fixed`` settings
    that the options may not contradict."""
    parser = build_parser()
    if script is None:
        return _cd6me_pairs(parser.parse_args(argv), argv)
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
    return _cd6me_pairs(args, argv)


def _cd6me_pairs(args, argv: list[str]):
    """``--protocol cd6me`` and ``--dataset cd6me`` go together: either one given alone
    brings the other (the benchmark is its own dataset and protocol)."""
    def given(flag: str) -> bool:
        return any(a == flag or a.startswith(f"{flag}=") for a in argv)

    if not hasattr(args, "protocol"):
        return args
    several = hasattr(args, "datasets")
    datasets = (args.datasets or []) if several else [getattr(args, "dataset", None)]
    if args.protocol == "cd6me" and not given("--dataset") and not getattr(args, "shards", None):
        if several:
            args.datasets = ["cd6me"]
        elif hasattr(args, "dataset"):
            args.dataset = "cd6me"
    elif datasets == ["cd6me"] and not given("--protocol"):
        args.protocol = "cd6me"
    return args


def _quiet_warnings() -> None:
    """Warnings as one line each, without the source line Python adds."""
    warnings.formatwarning = lambda message, category, *a, **k: \
        f"warning: {message}\n"


def _interrupted(command: str) -> int:
    """After Ctrl+C: say what is kept, leave Ray, exit 130. Further SIGINTs are ignored
    meanwhile: one that landed while a library was handling the first raised a second
    KeyboardInterrupt inside this handler, and the command exited 1 with a traceback (seen
    once in 37 interruptions by benchmarks/stress_resume.py, Ctrl+C during a grid's summary)."""
    here = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if here else None
    try:
        print(f"{command}: interrupted: finished folds are stored and every running fold "
              f"keeps its last epoch's checkpoint; running the same command again resumes",
              file=sys.stderr, flush=True)
        from .cluster import leave_after_interrupt

        if leave_after_interrupt():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)  # at once: see leave_after_interrupt
    finally:
        if here:
            signal.signal(signal.SIGINT, previous)
    return 130


def main(argv: list[str] | None = None, script: str | None = None, fixed: dict | None = None,
         about: str | None = None) -> int:
    """Run one command; returns its exit status (0, 2 on an error, 3 for --strict, 130 when
    interrupted). ``script``, ``fixed``, ``about``: run as an experiment script (its name in
    usage lines, its description in --help, settings it fixes)."""
    from .protocols.search_space import SweepInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = script or (argv[0] if argv else "mer-ray")
    _quiet_warnings()
    try:
        args = _parse(argv, script, fixed, about)
        args.argv, args.debug = argv, debug
        command = script or f"mer-ray {args.command}"
        from .cli_args import check_locations
        from .methods.plugins import load_plugins

        load_plugins(getattr(args, "plugins", []))

        check_locations(args)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return _interrupted(command)
    except SweepInterrupted as stopped:
        print(f"{command}: {stopped}", file=sys.stderr)
        return 130
    except (AnnotationError, FrameError, FileNotFoundError, FileExistsError, ValueError,
            RuntimeError, OSError) as exc:
        if debug:
            if getattr(exc, "details", ""):
                print(exc.details, file=sys.stderr)
            raise
        for line in str(exc).splitlines() or [""]:  # one line per problem found
            print(f"{command}: error: {line}", file=sys.stderr)
        if isinstance(exc, RuntimeError):
            print("(run with --debug for the traceback; Ray's messages are in the log files "
                  "named above)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
