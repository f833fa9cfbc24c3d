"""The generation summary: per class, what was asked for, accepted and rejected, and why.

Computed from the cache's records and the rejection log only, so it is the same however many
runs (and however many workers) made the cache.
"""

from __future__ import annotations

from collections import Counter

from genaug.generation._gates import COLLAPSE_MIN_CHECKED, COLLAPSE_RATE, collapse_message
from genaug.generation._plan import GenerationPlan

#: the first-attempt success rate a class should reach
FIRST_ATTEMPT_GOAL = 0.8


def summarize(plan: GenerationPlan, records: list[dict], rejections: list[dict]) -> dict:
    """Per class: requested, accepted, rejected by gate, first-attempt success rate (goal 80 %).

    Computed from the cache records and the rejection log (one entry per id and attempt, as
    :func:`genaug.cache.read_rejections` gives it), so it is the same however many runs the
    cache took.
    """
    ids = {c: {it.record_id for it in plan.items(c)} for c in plan.class_names
           if plan.classes[c]["generate"]}
    classes, warnings_ = {}, []
    for class_name, planned in ids.items():
        accepted = [r for r in records if r["class"] == class_name and r["id"] in planned]
        rejected = [e for e in rejections if e.get("class") == class_name and e["id"] in planned]
        exhausted = {e["id"] for e in rejected if e.get("exhausted")}
        by_gate, checked, passed = Counter(), Counter(), Counter()
        for quality in [r.get("quality") or {} for r in accepted] + [
                e.get("quality") or {} for e in rejected]:
            for gate, result in quality.items():
                checked[gate] += 1
                passed[gate] += bool(result.get("passed"))
                if not result.get("passed"):
                    by_gate[gate] += 1
        decided = len(accepted) + len(exhausted)
        first = sum(1 for r in accepted if r.get("attempts") == 1)
        rate = first / decided if decided else None
        acceptance = {g: round(passed[g] / checked[g], 4) for g in sorted(checked)}
        for gate in sorted(checked):
            if (checked[gate] >= COLLAPSE_MIN_CHECKED
                    and passed[gate] / checked[gate] < COLLAPSE_RATE):
                structure_rate = (passed["structure"] / checked["structure"]
                                  if checked["structure"] else None)
                warnings_.append(collapse_message(class_name, gate, passed[gate],
                                                  checked[gate], structure_rate=structure_rate))
        classes[class_name] = {
            "requested": len(planned),
            "accepted": len(accepted),
            "exhausted": len(exhausted),
            "pending": len(planned) - len(accepted) - len(exhausted),
            "candidates": len(accepted) + len(rejected),
            "rejected_by_gate": dict(sorted(by_gate.items())),
            "gate_acceptance": acceptance,
            "first_attempt_success_rate": None if rate is None else round(rate, 4),
            "meets_goal": None if rate is None else rate >= FIRST_ATTEMPT_GOAL,
        }
    total_decided = sum(c["accepted"] + c["exhausted"] for c in classes.values())
    total_first = sum(round((c["first_attempt_success_rate"] or 0) * (c["accepted"]
                      + c["exhausted"])) for c in classes.values())
    return {
        "goal_first_attempt_success_rate": FIRST_ATTEMPT_GOAL,
        "classes": classes,
        "totals": {
            "requested": sum(c["requested"] for c in classes.values()),
            "accepted": sum(c["accepted"] for c in classes.values()),
            "exhausted": sum(c["exhausted"] for c in classes.values()),
            "pending": sum(c["pending"] for c in classes.values()),
            "first_attempt_success_rate": (round(total_first / total_decided, 4)
                                           if total_decided else None),
        },
        "warnings": warnings_,
    }


def summary_lines(summary: dict) -> list[str]:
    """The summary as a small terminal table."""
    classes = summary["classes"]
    width = max([5, *(len(c) for c in classes)])
    lines = [f"{'class':<{width}}  {'requested':>9}  {'accepted':>8}  {'exhausted':>9}  "
             f"{'1st-try':>7}  rejected by gate"]
    for name, c in classes.items():
        rate = c["first_attempt_success_rate"]
        rate_text = "-" if rate is None else f"{rate:.0%}"
        flag = "" if c["meets_goal"] in (None, True) else " (below 80% goal)"
        rejected = ", ".join(f"{g} {n}" for g, n in c["rejected_by_gate"].items()) or "-"
        lines.append(f"{name:<{width}}  {c['requested']:>9}  {c['accepted']:>8}  "
                     f"{c['exhausted']:>9}  {rate_text:>7}  {rejected}{flag}")
    t = summary["totals"]
    lines.append(f"total: {t['accepted']} of {t['requested']} accepted, {t['exhausted']} gave "
                 f"up after all retries, {t['pending']} pending")
    if "time_split" in summary:
        split = summary["time_split"]
        lines.append(f"time: {summary['seconds']:.1f} s ("
                     + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in split.items())
                     + f"; stages overlap), {summary['accepted_per_second']:.1f} accepted "
                     "images/s")
    for worker in summary.get("cluster", {}).get("workers", ()):
        restarts = f", restarted {worker['restarts']}x" if worker["restarts"] else ""
        lines.append(f"Ray worker {worker['worker']} on {worker['node']} ({worker['device']}): "
                     f"{worker['images']} images in {worker['jobs']} jobs, "
                     f"{worker['images_per_second']:.1f} images/s{restarts}")
    return lines
