"""Hyper-parameter search (Optuna TPE) over lambda1, lambda2, LoRA rank and SFA experts, with a
figure that can be reported: nested leave-one-subject-out by default.

    python experiments/sweep.py --trials 8 --inner-folds 2            # nested (the default)
    python experiments/sweep.py --flat --num-samples 16 --sweep-folds 3 [--asha]
    ray job submit --working-dir . -- python experiments/sweep.py --dataset casme2 \\
        --data-root /shared/CASME2 --storage-path s3://bucket/mer-ray

Nested (the figure to report): for every outer test subject, a search over the other subjects
only (--trials configurations, each scored by its mean validation UF1 on --inner-folds inner
folds), then the chosen configuration trained on all other subjects and the outer subject
predicted once. The outer predictions give the reported UF1/UAR; each outer fold records its
chosen configuration and the subjects its search saw (never its own). Outer folds run
concurrently as Ray Tune trials, on the shared trunk tokens.

--flat: one Ray Tune + Optuna search on a few folds (--sweep-folds) whose training and
validation subjects together cover most subjects, then the best configuration as a LOSO under
<name>-best. That LOSO's test subjects took part in choosing its configuration: its summary says
search_informed: true, and its figures are not an unbiased estimate (use them to pick settings
for a new dataset, not to report).

The search space is experiments/configs/sweep_space.yaml (--space to change it). Running the
same command again resumes: finished outer folds (or Tune trials) are kept. Without
--data-root it runs on a synthetic set and says so.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import build_parser, prepare_data, run_loso  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None):
    p = build_parser("the chosen dataset", __doc__)
    p.add_argument("--dataset", default="samm", choices=("samm", "casme2", "smic", "casme3",
                                                         "megc"))
    p.add_argument("--space", type=Path, default=HERE / "configs" / "sweep_space.yaml")
    p.add_argument("--trials", type=int, default=8,
                   help="nested: configurations each outer fold's search tries")
    p.add_argument("--inner-folds", type=int, default=2,
                   help="nested: inner folds each configuration is scored on")
    p.add_argument("--flat", action="store_true",
                   help="one search on a few folds, then a LOSO with the pick (search-informed)")
    p.add_argument("--num-samples", type=int, default=16, help="--flat: trials")
    p.add_argument("--sweep-folds", type=int, default=3, help="--flat: folds each trial trains")
    p.add_argument("--asha", action="store_true", help="--flat: stop weak trials early (ASHA)")
    p.add_argument("--study-db", default=None,
                   help="--flat: keep the Optuna study in this SQLite file (optuna-dashboard)")
    p.add_argument("--no-final", action="store_true",
                   help="--flat: skip the best configuration's LOSO")
    args = p.parse_args(argv)

    from mer_ray.console import show
    from mer_ray.sweep import SweepInterrupted, read_space, run_sweep, tune_space
    from mer_ray.train.loso import plan_loso

    space = read_space(args.space)  # fail on a bad space before any work
    exp, root, shards = prepare_data(args.dataset, args)
    command = {"command": [Path(sys.argv[0]).name, *(argv or sys.argv[1:])],
               "data_root": str(root)}
    if not args.flat:
        return nested(args, exp, shards, space, command)
    name = args.name or f"sweep-{args.dataset}-{args.protocol}-{exp.hash()}"
    setup = plan_loso(shards, exp, args.storage_path, name)
    try:
        best, table = run_sweep(setup, tune_space(space), args.num_samples, args.sweep_folds,
                                args.asha, args.study_db, exp.train.seed)
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
    import json

    record = json.loads(setup.storage.read_bytes(name, "sweep.json"))
    summary = run_loso(exp.with_values(best), shards, args, f"{name}-best",
                       {**command, "sweep": name, "best_params": best,
                        "search_informed": True,
                        "search_subjects": record["search_subjects"]})
    return best, summary


def nested(args, exp, shards, space, command):
    from mer_ray.nested import nested_record, plan_nested, run_nested
    from mer_ray.train.results import print_summary, summarise

    plan = plan_nested(shards, exp, args.storage_path, args.name, space, args.trials,
                       args.inner_folds, args.max_folds)
    from mer_ray.sweep import SweepInterrupted

    try:
        run_nested(plan)
    except (SweepInterrupted, KeyboardInterrupt) as stopped:
        print(stopped or "interrupted; run the same command again to resume (finished outer "
              "folds are kept)", file=sys.stderr)
        sys.exit(130)
    summary = summarise(plan.setup, {**command, "nested": nested_record(plan)})
    print_summary(summary, plan.setup.storage.path(plan.setup.name))
    return summary


if __name__ == "__main__":
    main()
