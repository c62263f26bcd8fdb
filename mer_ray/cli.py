"""The ``mer-ray`` command: one subcommand per pipeline step.

    mer-ray synth     write a synthetic dataset in a real dataset's format
    mer-ray manifest  one row per annotated clip, with exclusion reasons
    mer-ray prepare   align faces and write Parquet shards (Ray Data)
    mer-ray model-info  parameters, GFLOPs and peak memory per model variant
    mer-ray checkpoint  one self-contained model file from a LOSO run's fold
    mer-ray predict   label a video or a folder of frames, optionally with an explanation PNG
    mer-ray export    the whole model as a torch.export (.pt2) file that needs only torch
    mer-ray report    Markdown + PNG figures from run folders and experiment grids
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from .console import show
from .data.adapters import DATASETS
from .data.labels import ALL_PROTOCOLS as PROTOCOLS


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, type=Path, help="the dataset's folder")
    p.add_argument("--protocol", default="3class", choices=PROTOCOLS,
                   help="3class (every dataset), 5class (samm, casme2), 7class / 4class "
                        "(casme3)")
    p.add_argument("--annotations", type=Path, default=None,
                   help="the annotation file, when it is not in --root or several versions "
                        "are (SAMM, CASME II, CAS(ME)^3 sheets; MEGC: combined_3class_gt.csv)")


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


def cmd_manifest(args) -> int:
    from .data.manifest import build_manifest

    m = build_manifest(args.dataset, args.root, args.protocol, annotations=args.annotations,
                       check_frames=not args.no_frame_check)
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
    from .data.align import AlignGeometry
    from .data.labels import class_names
    from .data.manifest import build_manifest, read_manifest
    from .data.prepare import PrepareConfig, prepare_shards
    from .data.synth import is_synthetic

    cfg = PrepareConfig(frames=args.frames, size=args.size,
                        geometry=AlignGeometry(eye_y=args.eye_y, inter_ocular=args.inter_ocular))
    if args.manifest:
        manifest = read_manifest(args.manifest)
    else:
        manifest = build_manifest(args.dataset, args.root, args.protocol,
                                  annotations=args.annotations)
    ensure_ray()
    res = prepare_shards(
        manifest, args.out, cfg, class_names=class_names(args.dataset, args.protocol),
        workers=args.workers, overwrite=args.overwrite,
        extra_meta={"dataset": args.dataset, "protocol": args.protocol,
                    "root": str(args.root), "synthetic": is_synthetic(args.root)},
    )
    show(["class", "clips"], sorted(res.per_class.items()) + [("total", res.clips)],
         title=f"shards in {res.out / 'clips'}")
    if res.rejected.height:
        counts = Counter(zip(res.rejected["stage"].to_list(), res.rejected["reason"].to_list()))
        show(["stage", "reason", "clips"], [(s, r, n) for (s, r), n in sorted(counts.items())],
             title=f"rejected clips (details in {res.out / 'rejected.parquet'})")
    rate = res.frames_aligned / res.seconds if res.seconds else 0.0
    print(f"{res.frames_aligned} frames aligned in {res.seconds:.1f} s ({rate:.1f} frames/s)")
    if args.strict and res.rejected.height:
        print("--strict: some clips were rejected (see the table above)", file=sys.stderr)
        return 3
    return 0


def cmd_model_info(args) -> int:
    from dataclasses import replace

    from .model.accounting import model_stats
    from .model.config import variant

    names = args.variant or ["full", "full_finetune"]
    rows = []
    for name in names:
        cfg = replace(variant(name), backbone=args.backbone, image_size=args.size,
                      pretrained=False)
        st = model_stats(name, cfg, args.frames, memory=not args.no_memory, batch=args.batch)
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
    from .inference import checkpoint_from_run, save_checkpoint

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
    import json

    from .inference import load_checkpoint, predict_clip

    model = load_checkpoint(args.checkpoint)
    result, clip = predict_clip(model, args.input, args.onset, args.offset)
    if args.explain:
        from .explain import attributions, explain_figure, summary_values

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
    from .inference import export_model, load_checkpoint

    model = load_checkpoint(args.checkpoint)
    res = export_model(model, args.out, batch_max=args.max_batch)
    print(f"exported {res['out']} ({res['bytes'] / 1e6:.1f} MB) in {res['seconds']:.1f} s; "
          f"reloaded and checked: max |difference| {res['max_abs_diff']:.1e}")
    print(f"input: uint8 aligned frames (B, {model.preprocess.frames}, {model.preprocess.size}, "
          f"{model.preprocess.size}, 3); outputs: {', '.join(res['outputs'])}")
    print("load with: torch.export.load(PATH).module() (metadata in the 'mer_ray.json' extra "
          "file)")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    report = write_report(args.paths, args.out)
    print(f"report: {report} (figures in {report.parent / 'figures'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .data.synth.layouts import LAYOUTS

    parser = argparse.ArgumentParser(prog="mer-ray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    _add_dataset_args(p)
    p.add_argument("--out", required=True, type=Path, help="manifest.parquet to write")
    p.add_argument("--no-frame-check", action="store_true",
                   help="read the annotations only (frames not yet on disk)")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any clip is excluded")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("prepare", help="align faces and write Parquet shards with Ray Data")
    _add_dataset_args(p)
    p.add_argument("--out", required=True, type=Path, help="shard folder to write")
    p.add_argument("--manifest", type=Path, default=None,
                   help="use this manifest instead of building one")
    p.add_argument("--frames", type=int, default=8, help="T, frames sampled per clip")
    p.add_argument("--size", type=int, default=224, help="S, aligned size (multiple of 14)")
    p.add_argument("--eye-y", type=float, default=0.38, help="eye height, fraction of S")
    p.add_argument("--inter-ocular", type=float, default=0.32, help="eye distance, fraction of S")
    p.add_argument("--workers", type=int, default=None,
                   help="concurrent Ray Data tasks (default: all CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards in --out")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any clip is rejected")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("model-info", help="parameters, GFLOPs per clip and peak memory")
    p.add_argument("--variant", action="append", default=None,
                   help="a model variant (repeatable; default: full and full_finetune)")
    p.add_argument("--backbone", default="vit_small_patch14_dinov2",
                   choices=("vit_small_patch14_dinov2", "vit_base_patch14_dinov2"))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=1, help="clips per step for the memory figure")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.set_defaults(func=cmd_model_info)

    p = sub.add_parser("checkpoint", help="a self-contained model file from a LOSO run's fold")
    p.add_argument("run", help="the run folder (or URI) a loso_*.py script wrote")
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

    p = sub.add_parser("report", help="Markdown + PNG figures from stored results")
    p.add_argument("paths", nargs="+",
                   help="run folders, grid files (ablation.json, ...) or folders holding them")
    p.add_argument("--out", type=Path, default=Path("report"), help="report folder to write")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data.annotations import AnnotationError
    from .data.frames import FrameError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AnnotationError, FrameError, FileNotFoundError, FileExistsError, ValueError,
            OSError) as exc:
        print(f"mer-ray {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
