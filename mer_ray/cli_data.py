"""The data commands (``mer-ray synth``, ``manifest``, ``prepare``, ``flow``), and what every
command's options resolve to: the configuration (``--config``, ``--set``, ``--frames``,
``--size``, ``--flow``, with the chosen method's recipe) and the data choice (a dataset root,
shards, or the synthetic default). ``cli.py`` dispatches the commands."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .config import ExperimentConfig, load_yaml, parse_override
from .console import Ticker, show


def settings(args) -> dict[str, Any]:
    """The settings the user gave, parsed once: --set options, then --frames, --size and
    --flow as the data settings they stand for ({"section.field": value})."""
    out = dict(parse_override(o) for o in args.overrides)
    out.update({f"data.{o}": getattr(args, o) for o in ("frames", "size", "flow")
                if getattr(args, o, None)})
    return out


def experiment_config(args) -> tuple[ExperimentConfig, set[str]]:
    """The configuration the options resolve to, and the data settings the user set (a config
    file's data section, --set data.*, --frames, --size)."""
    given = settings(args)
    user_set = {k for k in given if k.startswith("data.")}
    if args.config:
        user_set |= {f"data.{k}" for k in (load_yaml(args.config).get("data") or {})}
    from .methods import load_with_recipe

    return load_with_recipe(args.config, given), user_set


def synthetic_set(args):
    from .data.choice import SyntheticSet

    if not hasattr(args, "synthetic_subjects"):  # a command without a synthetic default
        return SyntheticSet()
    return SyntheticSet(subjects=args.synthetic_subjects,
                        clips_per_class=args.synthetic_clips_per_class,
                        seed=args.synthetic_seed, intensity=args.synthetic_intensity,
                        distractors=not args.synthetic_no_distractors)


def data_choice(args):
    from .data.choice import DataChoice

    return DataChoice(args.dataset, args.protocol, args.data_root, getattr(args, "shards", None),
                      args.annotations, synthetic_set(args), getattr(args, "workdir", Path("data")))



# -- data --------------------------------------------------------------------------------------

def cmd_synth(args) -> int:
    from .data.choice import SyntheticSet
    from .data.synth import generate
    from .data.synth.render import RenderConfig

    chosen = SyntheticSet(args.subjects, args.clips_per_class)
    subjects, clips = chosen.subjects_for(args.layout), chosen.clips_for(args.layout)
    render = RenderConfig(frame_size=args.frame_size, intensity=args.intensity,
                          distractors=not args.no_distractors)
    with Ticker(f"rendering a synthetic {args.layout} set ({subjects} subjects)") as tick:
        def progress(done, total):
            tick.update(f"{done}/{total} clips")

        if args.layout == "cd6me":
            from .data.synth import generate_cd6me

            parts = generate_cd6me(args.out, subjects, clips, args.seed, render, progress)
            show(["part", "subjects", "clips"],
                 [(r.root.name, subjects, len(r.clips)) for r in parts],
                 title=f"synthetic CD6ME in {args.out}: six parts, seed {args.seed}")
            return 0
        res = generate(args.out, args.layout, subjects, clips, args.protocol, args.seed,
                       args.preview, render, progress=progress)
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

    data_choice(args).check()
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
    show_au_counts(m)
    return m


def show_au_counts(manifest) -> None:
    """How many included clips code each AU (the cross-dataset protocol's 12 first), and how
    many code none or were not coded."""
    from .data.aus import CD6ME_AUS
    from .data.manifest import included

    inc = included(manifest)
    coded = [a for a in inc["aus"].to_list() if a is not None]
    if not coded:
        print("action units: not coded in this dataset's annotations")
        return
    counts = Counter(a for aus in coded for a in set(aus))
    others = sorted(a for a in counts if a not in CD6ME_AUS)
    rows = [(f"AU{a}" + (" (CD6ME)" if a in CD6ME_AUS else ""), counts.get(a, 0))
            for a in [*CD6ME_AUS, *others]]
    rows += [("no AU coded", sum(1 for a in coded if not a)),
             ("AU cell missing", inc.height - len(coded))]
    show(["action unit", "included clips"], rows, title="action units of the included clips")


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
    from .cluster import driver_log, ensure_ray
    from .data.prepare import prepare_clips, refuse_overwrite
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


def cmd_folds(args) -> int:
    """``mer-ray folds``: the folds (``data.folds.fold_file``) a run on this data and seed
    would train on, written without training; its hash is the one such a run stores."""
    import json

    from .cluster import driver_log, ensure_ray
    from .data.folds import protocol_splits
    from .protocols.loso import folds_content, settle

    fmt = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "json")
    exp, user_set = experiment_config(args)
    data = data_choice(args)
    exp = settle(data, exp, user_set)
    if data.shards is None:  # aligning (or rendering the synthetic default) runs on Ray
        ensure_ray(log_file=driver_log(args.out.parent, args.workdir, "folds"))
    shards = data.prepare(exp.data)
    folds = protocol_splits(shards.meta.protocol, shards.subject_labels(),
                            exp.train.val_subjects, exp.train.seed)
    content, meta = folds_content(shards, folds, exp.train.seed), shards.meta
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        args.out.write_text(json.dumps(content, indent=1))
    else:
        import polars as pl

        rows = [{"fold": f["test"], "role": role, "subject": subject, "clip": c["clip"],
                 "label": c["label"], "folds_hash": content["hash"]}
                for f in content["folds"]
                for role, subjects in (("test", f.get("test_subjects") or [f["test"]]),
                                       ("val", f["val"]),
                                       ("train", f["train"]))
                for subject in subjects for c in content["clips"].get(subject, [])]
        pl.DataFrame(rows).write_csv(args.out)
    per = "per training dataset and fold" if meta.protocol == "cd6me" else "per fold"
    print(f"{len(folds)} folds over {sum(map(len, content['clips'].values()))} clips "
          f"({meta.dataset}, {meta.protocol}, {exp.train.val_subjects} validation subject(s) "
          f"{per}, seed {exp.train.seed}); "
          f"hash {content['hash']}: {args.out}")
    return 0


def cmd_flow(args) -> int:
    from .data.flow_preview import computed_flow, flow_figure, stored_flow
    from .data.shards import Shards

    exp, _ = experiment_config(args)
    if args.shards is not None:
        shards = Shards.open(args.shards)
        clip, columns = stored_flow(shards, args.clip)
        backend = shards.meta.data.flow
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
