"""``genaug compare``: run every arm at every seed and aggregate the results honestly."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from genaug._io import to_jsonable
from genaug.evidence._arms import ARMS, COMPARISONS, arm_config, parse_arms, parse_seeds
from genaug.evidence._io import write_json
from genaug.evidence._stats import (
    DEFAULT_THRESHOLD,
    describe,
    paired_difference,
    verdict_sentence,
)

#: Metrics aggregated per arm, in report order, with their display names.
METRICS = {
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "cohen_kappa": "Cohen's kappa",
    "rare_recall": "recall of the rarest classes",
}
PRIMARY_METRIC = "balanced_accuracy"
MIN_SEEDS = 3


def run_compare(
    base_config,
    *,
    arms,
    seeds,
    output_dir,
    synthetic_cache=None,
    runner: Callable | None = None,
    progress: Callable[[str], None] | None = print,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict:
    """Train every arm at every seed on the same test set; write ``compare.json/.md/.png``.

    Runs go seed by seed (all arms of seed 0, then seed 1, ...), so an interrupted comparison
    still holds complete pairs. ``compare.json`` is rewritten after every run. A run that raises
    is recorded as failed with its error and the others still run.

    Parameters
    ----------
    base_config : training.pipeline.TrainConfig
        Options shared by all arms (model, epochs, image size, test set, ...).
    arms : str or sequence
        Arm names (see :data:`genaug.evidence.ARMS`).
    seeds : str or sequence of int
    output_dir : path-like
        ``compare.json`` goes here and each run's files to ``compare/<arm>/seed<k>/``.
    synthetic_cache : path-like, optional
        Required by the ``balanced_synthetic`` arm.
    runner : callable, optional
        ``runner(config) -> metrics dict``; default ``training.pipeline.run_training``.
    progress : callable, optional
        Receives one line per run start and end.
    threshold : float
        Practical-significance threshold of the verdicts.

    Returns
    -------
    dict
        The content of ``compare.json`` (see :func:`summarize`).
    """
    arms = parse_arms(arms)
    seeds = parse_seeds(seeds)
    output_dir = Path(output_dir)
    configs = {(arm.name, seed): arm_config(base_config, arm, seed=seed, output_dir=output_dir,
                                           synthetic_cache=synthetic_cache)
               for seed in seeds for arm in arms}
    if runner is None:
        from training.pipeline import run_training as runner
    say = progress or (lambda line: None)
    runs = []
    total = len(configs)
    started_all = datetime.now(timezone.utc).isoformat()
    for number, ((arm_name, seed), config) in enumerate(configs.items(), start=1):
        say(f"[{number}/{total}] {arm_name} seed={seed}: training ...")
        started = time.perf_counter()
        run = {"arm": arm_name, "seed": seed, "output_dir": str(config.output_dir)}
        try:
            metrics = runner(config)
            run.update(status="ok", metrics=to_jsonable(metrics))
        except KeyboardInterrupt:
            raise
        except Exception as error:  # a failed arm must not stop the others
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            run.update(status="failed", error=message, traceback=traceback.format_exc())
        run["seconds"] = round(time.perf_counter() - started, 1)
        runs.append(run)
        if run["status"] == "ok":
            m = run["metrics"]
            say(f"[{number}/{total}] {arm_name} seed={seed}: done in {run['seconds']:.0f}s, "
                f"balanced accuracy {_num(m.get('balanced_accuracy'))}, macro-F1 "
                f"{_num(m.get('macro_f1'))}, kappa {_num(m.get('cohen_kappa'))}")
        else:
            say(f"[{number}/{total}] {arm_name} seed={seed}: FAILED after "
                f"{run['seconds']:.0f}s: {run['error']}")
        result = summarize(runs, arms=[a.name for a in arms], seeds=seeds, threshold=threshold)
        result["setup"] = _setup(base_config, synthetic_cache, started_all, runs)
        write_json(output_dir / "compare.json", result)
    from genaug.evidence._compare_report import write_compare_outputs

    write_compare_outputs(result, output_dir)
    return result


def rarest_classes(train_counts: dict, *, fraction: float = 0.25) -> list[str]:
    """The classes with the fewest real training images: the bottom ``fraction``, at least 1.

    Ties keep the classes' order in ``train_counts``.
    """
    names = list(train_counts)
    if not names:
        return []
    k = max(1, int(math.floor(len(names) * fraction)))
    order = sorted(range(len(names)), key=lambda i: (train_counts[names[i]], i))
    return [names[i] for i in order[:k]]


def convergence(history: dict | None, *, window: float = 0.2, share: float = 0.25) -> dict:
    """Judge from a Keras history whether training had levelled off.

    The validation loss (else the training loss) is "still falling" when its drop over the last
    ``window`` of the epochs (at least 2) is more than ``share`` of its whole range (peak to
    minimum), i.e. the curve has not flattened yet.

    Returns
    -------
    dict
        ``converged`` (True, False, or None when there is nothing to judge), ``reason``.
    """
    history = history or {}
    key = "val_loss" if history.get("val_loss") else "loss"
    losses = [float(v) for v in history.get(key) or [] if v is not None]
    if not losses:
        return {"converged": None, "reason": "no loss history"}
    if len(losses) < 3:
        return {"converged": False, "reason": f"only {len(losses)} epoch(s)"}
    n = len(losses)
    w = min(max(2, math.ceil(n * window)), n - 1)
    total = max(losses) - min(losses)
    recent = losses[-w - 1] - losses[-1]
    if total <= 0 or recent <= share * total:
        return {"converged": True, "reason": f"{key} levelled off"}
    return {"converged": False,
            "reason": f"{key} fell {recent / total:.0%} of its total drop in the last {w} of "
                      f"{n} epochs"}


def run_scores(metrics: dict, rare: Sequence[str]) -> dict:
    """The aggregated metrics of one run (``rare_recall`` = mean recall over ``rare``)."""
    per_class = metrics.get("per_class") or {}
    recalls = [per_class[c]["recall"] for c in rare
               if c in per_class and per_class[c].get("recall") is not None]
    scores = {key: metrics.get(key) for key in METRICS if key != "rare_recall"}
    scores["rare_recall"] = float(np.mean(recalls)) if recalls else None
    return scores


def summarize(runs: list[dict], *, arms: Sequence[str], seeds: Sequence[int],
              threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Aggregate run records into per-arm statistics, paired comparisons and warnings.

    Parameters
    ----------
    runs : list of dict
        ``{"arm", "seed", "status": "ok"|"failed", "metrics" (when ok), "error" (when failed)}``.
    arms, seeds : sequence
        The planned arms and seeds (a failed or missing run leaves a gap, not a shift).
    threshold : float
        Practical-significance threshold of the verdicts.

    Returns
    -------
    dict
        ``arms``, ``seeds``, ``rarest_classes``, ``runs`` (each with ``scores`` and
        ``convergence``), ``summary`` {arm: {metric: {mean, std, n, values}}},
        ``comparisons`` (list), ``verdict`` (headline sentence), ``warnings`` (list).
    """
    ok = [r for r in runs if r.get("status") == "ok"]
    counts = {}
    for run in ok:
        for name, value in (run["metrics"].get("train_counts") or {}).items():
            counts.setdefault(name, []).append(value)
    mean_counts = {name: float(np.mean(v)) for name, v in counts.items()}
    rare = rarest_classes(mean_counts)
    table = {}
    for run in runs:
        if run.get("status") == "ok":
            run["scores"] = run_scores(run["metrics"], rare)
            run["convergence"] = convergence(run["metrics"].get("history"))
            table[(run["arm"], run["seed"])] = run["scores"]
    summary = {
        arm: {"runs": sum(1 for r in ok if r["arm"] == arm),
              **{m: describe([table[(arm, s)][m] for s in seeds if (arm, s) in table])
                 for m in METRICS}}
        for arm in arms
    }
    comparisons = []
    for arm, reference, subject in COMPARISONS:
        if arm not in arms or reference not in arms:
            continue
        per_metric = {}
        for metric in METRICS:
            values = [(table.get((arm, s), {}).get(metric), table.get((reference, s), {})
                       .get(metric)) for s in seeds]
            per_metric[metric] = paired_difference(
                [a for a, _ in values], [r for _, r in values], seeds=seeds,
                threshold=threshold).to_dict()
        primary = paired_difference(
            [table.get((arm, s), {}).get(PRIMARY_METRIC) for s in seeds],
            [table.get((reference, s), {}).get(PRIMARY_METRIC) for s in seeds],
            seeds=seeds, threshold=threshold)
        comparisons.append({
            "arm": arm, "reference": reference, "subject": subject,
            "metrics": per_metric, "outcome": primary.outcome,
            "verdict": verdict_sentence(subject, primary, metric=METRICS[PRIMARY_METRIC]),
            "other_outcomes": {METRICS[m]: d["outcome"] for m, d in per_metric.items()
                               if m != PRIMARY_METRIC and d["outcome"] != primary.outcome},
        })
    return {
        "arms": list(arms),
        "seeds": list(seeds),
        "primary_metric": PRIMARY_METRIC,
        "threshold": threshold,
        "rarest_classes": {name: mean_counts[name] for name in rare},
        "runs": runs,
        "summary": summary,
        "comparisons": comparisons,
        "verdict": _headline(comparisons),
        "warnings": _warnings(runs, seeds),
    }


def _headline(comparisons) -> str | None:
    for c in comparisons:
        if c["arm"] == "balanced_synthetic" and c["reference"] == "balanced":
            return c["verdict"]
    return comparisons[0]["verdict"] if comparisons else None


def _warnings(runs, seeds) -> list[str]:
    out = []
    if len(seeds) < MIN_SEEDS:
        out.append(f"only {len(seeds)} seed(s): seed-to-seed noise cannot be told from a real "
                   f"effect; use at least {MIN_SEEDS} (5 is better) before trusting a verdict")
    failed = [r for r in runs if r.get("status") != "ok"]
    for run in failed:
        out.append(f"{run['arm']} seed={run['seed']} failed: {run.get('error')}")
    unconverged = [r for r in runs if r.get("status") == "ok"
                   and r.get("convergence", {}).get("converged") is False]
    if unconverged:
        names = ", ".join(f"{r['arm']}/seed{r['seed']}" for r in unconverged[:8])
        more = f" and {len(unconverged) - 8} more" if len(unconverged) > 8 else ""
        out.append(f"{len(unconverged)} run(s) may not have converged ({names}{more}; e.g. "
                   f"{unconverged[0]['convergence']['reason']}): a short budget hides or "
                   "reverses differences between arms; train longer (--epochs) and compare "
                   "again")
    out.extend(_test_set_warnings(runs))
    return out


def _test_set_warnings(runs) -> list[str]:
    """Paired differences assume all arms of a seed were tested on the same images."""
    out = []
    by_seed = {}
    for run in runs:
        if run.get("status") == "ok":
            support = {c: v.get("support") for c, v in
                       (run["metrics"].get("per_class") or {}).items()}
            by_seed.setdefault(run["seed"], {})[run["arm"]] = support
    for seed, supports in by_seed.items():
        if len({tuple(sorted(s.items())) for s in supports.values()}) > 1:
            out.append(f"seed {seed}: the arms were tested on different test sets (per-class "
                       "support differs), so their paired differences are not valid")
    return out


def _setup(config, synthetic_cache, started, runs) -> dict:
    fields = asdict(config) if is_dataclass(config) else dict(vars(config))
    shared = {k: v for k, v in fields.items()
              if k not in ("seed", "output_dir", "model_name", "balanced", "class_weights",
                           "synthetic_cache")}
    return {
        "data_dir": (str(fields["data_dir"]) if fields.get("data_dir")
                     else "the embedded long-tailed digits"),
        "test_set": _test_set(fields, runs),
        "synthetic_cache": None if synthetic_cache is None else str(synthetic_cache),
        "shared_config": to_jsonable(shared),
        "started": started,
        "arm_definitions": {name: arm.overrides | {"synthetic_cache": arm.needs_cache}
                            for name, arm in ARMS.items()},
    }


def _test_set(fields, runs) -> str:
    """The test set in words, as the runs reported it (``metrics["test_set"]``)."""
    reported = sorted({r["metrics"]["test_set"] for r in runs
                       if r.get("status") == "ok" and r["metrics"].get("test_set")})
    if len(reported) == 1 and "seed" not in reported[0]:
        return f"{reported[0]} (the same for every run)"
    if fields.get("test_dir"):
        return f"--test-dir {fields['test_dir']} (the same for every run)"
    return (f"a held-out stratified {fields.get('test_split')} split of the real images (or the "
            "manifest's test split), drawn with the run's seed only: the same for every arm at "
            "a seed")



def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"
