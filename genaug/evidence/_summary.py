"""Aggregating compare runs: per-arm statistics, paired comparisons, verdicts and warnings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from genaug.evidence._arms import ARMS, BALANCED, comparisons
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
    compared = []
    for arm, reference, subject in comparisons(arms):
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
        per_class = _per_class_changes(ok, arm, reference, seeds, threshold=threshold)
        harmed = sorted(name for name, row in per_class.items()
                        if row["recall"] is not None and row["recall"] < -HARM_RECALL_LOSS)
        compared.append({
            "arm": arm, "reference": reference, "subject": subject,
            "metrics": per_metric, "per_class": per_class, "harmed_classes": harmed,
            "harm": _harm_sentence(arm, reference, harmed, per_class),
            "outcome": primary.outcome,
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
        "comparisons": compared,
        "verdict": _headline(compared),
        "warnings": _warnings(runs, seeds),
    }


#: A class whose recall fell by more than this (mean paired difference) is flagged as harmed.
HARM_RECALL_LOSS = 0.05


def _per_class_changes(ok_runs, arm, reference, seeds, *, threshold) -> dict:
    """Per class, the mean paired difference (arm - reference) of recall and precision."""
    scores = {(r["arm"], r["seed"]): r["metrics"].get("per_class") or {} for r in ok_runs}
    names = sorted({name for (a, _), rows in scores.items() if a in (arm, reference)
                    for name in rows})
    out = {}
    for name in names:
        row = {}
        for measure in ("recall", "precision"):
            pairs = [(scores.get((arm, s), {}).get(name, {}).get(measure),
                      scores.get((reference, s), {}).get(name, {}).get(measure))
                     for s in seeds]
            row[measure] = paired_difference([a for a, _ in pairs], [r for _, r in pairs],
                                             seeds=seeds, threshold=threshold).mean
        out[name] = row
    return out


def _harm_sentence(arm, reference, harmed, per_class) -> str | None:
    """One sentence naming the classes whose recall the arm cost more than 5 points."""
    if not harmed:
        return None
    losses = ", ".join(f"{name} {per_class[name]['recall'] * 100:+.1f}" for name in harmed)
    return (f"HARM: {arm} lost more than {HARM_RECALL_LOSS * 100:.0f} points of recall "
            f"against {reference} on {losses} (mean paired difference, points)")


def _headline(compared) -> str | None:
    """The verdict of the first synthetic arm against ``balanced``, else the first verdict."""
    for c in compared:
        if ARMS[c["arm"]].needs_cache and c["reference"] == BALANCED:
            return c["verdict"]
    return compared[0]["verdict"] if compared else None


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
