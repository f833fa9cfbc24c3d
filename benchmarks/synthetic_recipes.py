"""Which synthetic-data recipe helps? Every recipe arm against balanced sampling, paired by seed.

One ``genaug compare`` over the synthetic recipe's arms (each lever alone, the candidate
combination, today's defaults, and an oracle arm trained on held-out real images), written to
OUTPUT_DIR/compare.json/.md like any comparison. ``--resume`` keeps finished runs, so arms
and seeds can be added later without retraining the others.

    python benchmarks/synthetic_recipes.py DATA --test-dir TEST --synthetic-cache CACHE \\
        --oracle-cache ORACLE --output-dir OUT --epochs 12 --batch-size 128 --image-size 28

The candidate combination (``balanced_synthetic_select_cooldown``) is registered here, not in
genaug: it is the recipe under test. The other arms are genaug's own (``genaug compare
--arms`` runs them by name).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RECIPE_ARMS = ("balanced,balanced_synthetic,balanced_synthetic_select,"
               "balanced_synthetic_cooldown,balanced_synthetic_fill,"
               "balanced_synthetic_weight03,balanced_synthetic_confusion,balanced_synthetic_smooth,"
               "balanced_synthetic_mixup,"
               "balanced_synthetic_select_cooldown,oracle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--test-dir", required=True)
    parser.add_argument("--synthetic-cache", required=True)
    parser.add_argument("--oracle-cache", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--arms", default=RECIPE_ARMS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--color-mode", default="auto")
    args = parser.parse_args()

    from genaug.evidence import ARMS, Arm, oracle_arm, register_arm, run_compare
    from training.pipeline import TrainConfig, run_training

    select, cooldown = ARMS["balanced_synthetic_select"], ARMS["balanced_synthetic_cooldown"]
    register_arm(Arm("balanced_synthetic_select_cooldown",
                     "feature-distance selection and a real-only cool-down",
                     {**select.overrides, **cooldown.overrides},
                     recipe=replace(select.recipe, **cooldown.recipe.changed()),
                     needs_cache=True), replace_existing=True)
    register_arm(oracle_arm(args.oracle_cache), replace_existing=True)
    base = TrainConfig(data_dir=args.data_dir, test_dir=args.test_dir, epochs=args.epochs,
                       batch_size=args.batch_size, image_size=args.image_size,
                       color_mode=args.color_mode, output_dir=args.output_dir,
                       model_dir=os.path.join(args.output_dir, "models"), verbose=0)
    result = run_compare(base, arms=args.arms, seeds=args.seeds, output_dir=args.output_dir,
                         runner=run_training, synthetic_cache=args.synthetic_cache,
                         resume=True)
    print(recipe_table(result))


def recipe_table(result: dict) -> str:
    """Markdown: per arm the means over seeds, and the paired difference of balanced accuracy
    (with its 95 % t-interval) against ``balanced`` and against ``balanced_synthetic``."""
    from genaug.evidence import paired_difference

    seeds, runs = result["seeds"], [r for r in result["runs"] if r.get("status") == "ok"]

    def per_seed(arm, value):
        by_seed = {r["seed"]: r["metrics"] for r in runs if r["arm"] == arm}
        return [value(by_seed[s]) if s in by_seed else None for s in seeds]

    def rarest_recall(metrics):
        counts = metrics["train_counts"]
        return metrics["per_class"][min(counts, key=counts.get)]["recall"]

    def mean(values):
        values = [v for v in values if v is not None]
        return f"{sum(values) / len(values):.3f}" if values else "-"

    def versus(arm, reference):
        if reference == arm or reference not in result["arms"]:
            return ""
        d = paired_difference(per_seed(arm, lambda m: m["balanced_accuracy"]),
                              per_seed(reference, lambda m: m["balanced_accuracy"]),
                              seeds=seeds)
        if d.n < 2:
            return f"{d.mean:+.3f} (n={d.n})" if d.n else ""
        return f"{d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"

    lines = ["| arm | seeds | balanced accuracy | macro-F1 | rarest-class recall "
             "| vs balanced | vs balanced_synthetic |", "|---|--:|--:|--:|--:|--:|--:|"]
    for arm in result["arms"]:
        accuracy = per_seed(arm, lambda m: m["balanced_accuracy"])
        lines.append(f"| {arm} | {sum(v is not None for v in accuracy)} | {mean(accuracy)} "
                     f"| {mean(per_seed(arm, lambda m: m['macro_f1']))} "
                     f"| {mean(per_seed(arm, rarest_recall))} | {versus(arm, 'balanced')} "
                     f"| {versus(arm, 'balanced_synthetic')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
