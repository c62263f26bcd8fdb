"""The model commands of ``mer-ray`` (``model-info``, ``checkpoint``, ``predict``, ``export``):
what each prints, over the model accounting and the serving modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..console import show


def model_info(args) -> int:
    from dataclasses import replace

    from ..fitting.device import fold_device, use_gpus
    from ..model.accounting import model_stats
    from ..model.variants import variant

    names = args.variant or ["full", "full_finetune"]
    rows = []
    for name in names:
        cfg = replace(variant(name), backbone=args.backbone, pretrained=False)
        st = model_stats(name, cfg, args.frames, args.size, memory=not args.no_memory,
                         batch=args.batch, device=fold_device(use_gpus("auto")))
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


def checkpoint(args) -> int:
    from .modelfile import checkpoint_from_run, save_checkpoint

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


def predict(args) -> int:
    from .modelfile import load_checkpoint
    from .predict import predict_clip

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


def export(args) -> int:
    from .export import export_model
    from .modelfile import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    res = export_model(model, args.out, batch_max=args.max_batch)
    print(f"exported {res['out']} ({res['bytes'] / 1e6:.1f} MB) in {res['seconds']:.1f} s; "
          f"reloaded and checked: max |difference| {res['max_abs_diff']:.1e}")
    print(f"input: uint8 aligned frames (B, {model.preprocess.frames}, {model.preprocess.size}, "
          f"{model.preprocess.size}, 3); outputs: {', '.join(res['outputs'])}")
    print("load with: torch.export.load(PATH).module() (metadata in the 'mer_ray.json' extra "
          "file)")
    return 0
