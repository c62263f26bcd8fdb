"""Hyper-parameter search (Ray Tune + Optuna) over lambda1, lambda2, LoRA rank and expert count,
then a full LOSO with the best configuration.

    python experiments/sweep.py --num-samples 24 --sweep-folds 4 [--asha] [--study-db optuna.db]
    ray job submit --working-dir . -- python experiments/sweep.py --dataset casme2 \\
        --data-root /shared/CASME2 --storage-path s3://bucket/mer-ray

Trials are scored by the mean best-validation UF1 over a fixed set of folds; those folds' test
subjects are never read during the search. The search space is experiments/configs/
sweep_space.yaml (--space to change it). Running the same command again resumes an interrupted
sweep. Writes trials.parquet and sweep.json under the sweep's name, and the best configuration's
LOSO under <name>-best: that run's test figures are the result to report.
Without --data-root it runs on a synthetic set and says so.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import build_parser, prepare_data, run_loso  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None):
    p = build_parser("the chosen dataset", __doc__)
    p.add_argument("--dataset", default="samm", choices=("samm", "casme2", "smic"))
    p.add_argument("--space", type=Path, default=HERE / "configs" / "sweep_space.yaml")
    p.add_argument("--num-samples", type=int, default=16, help="trials")
    p.add_argument("--sweep-folds", type=int, default=3, help="folds each trial trains")
    p.add_argument("--asha", action="store_true", help="stop weak trials early (ASHA)")
    p.add_argument("--study-db", default=None,
                   help="keep the Optuna study in this SQLite file (optuna-dashboard opens it)")
    p.add_argument("--no-final", action="store_true", help="skip the best configuration's LOSO")
    args = p.parse_args(argv)

    from mer_ray.console import show
    from mer_ray.sweep import SweepInterrupted, load_space, run_sweep
    from mer_ray.train.loso import plan_loso

    space = load_space(args.space)  # fail on a bad space before any work
    exp, root, shards = prepare_data(args.dataset, args)
    name = args.name or f"sweep-{args.dataset}-{args.protocol}-{exp.hash()}"
    setup = plan_loso(shards, exp, args.storage_path, name)
    try:
        best, table = run_sweep(setup, space, args.num_samples, args.sweep_folds, args.asha,
                                args.study_db, exp.train.seed)
    except (SweepInterrupted, KeyboardInterrupt) as stopped:
        # never a pick from a partial search: the state is saved, the same command resumes
        print(stopped or "interrupted; run the same command again to resume the sweep",
              file=sys.stderr)
        sys.exit(130)
    show(list(table.columns), table.rows(), title=f"sweep {name}: objective = mean validation "
                                                  f"UF1 over the sweep folds")
    print(f"best configuration: {best}")
    if args.no_final:
        return best, None
    summary = run_loso(exp.with_values(best), shards, args, f"{name}-best",
                       {"command": [Path(sys.argv[0]).name, *(argv or sys.argv[1:])],
                        "data_root": str(root), "sweep": name, "best_params": best})
    return best, summary


if __name__ == "__main__":
    main()
