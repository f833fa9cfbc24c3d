"""``compare.md`` and ``compare.png``: the comparison in words, tables and one chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genaug.evidence._io import new_figure, save_figure, write_text
from genaug.evidence._summary import METRICS


def _pm(stats: dict) -> str:
    if stats["mean"] is None:
        return "-"
    if stats["std"] is None:
        return f"{stats['mean']:.3f}"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _signed(value) -> str:
    return "-" if value is None else f"{value:+.3f}"


def compare_markdown(result: dict) -> str:
    """Render a ``compare.json`` result as Markdown."""
    setup = result.get("setup") or {}
    shared = setup.get("shared_config") or {}
    lines = ["# genaug compare", ""]
    lines.append(f"- Data: `{setup.get('data_dir')}`; test set: {setup.get('test_set')}")
    lines.append(f"- Arms: {', '.join(result['arms'])}; seeds: "
                 f"{', '.join(str(s) for s in result['seeds'])}")
    if shared:
        lines.append(f"- Shared settings: {shared.get('epochs')} epochs, image size "
                     f"{shared.get('image_size')}, batch size {shared.get('batch_size')}, "
                     f"colour mode {shared.get('color_mode')}")
    if setup.get("synthetic_cache"):
        lines.append(f"- Synthetic cache: `{setup['synthetic_cache']}`")
    if setup.get("variation_cache"):
        lines.append(f"- Variation cache (variations of real training images): "
                     f"`{setup['variation_cache']}`")
    lines += ["", "## Verdict", ""]
    if not result["comparisons"]:
        lines.append("No comparison: add the `plain` arm (and `balanced` next to "
                     "`balanced_synthetic`) to get paired verdicts.")
    for c in result["comparisons"]:
        text = f"**{c['arm']} vs {c['reference']}**: {c['verdict']}"
        if c.get("other_outcomes"):
            text += "; other metrics: " + ", ".join(
                f"{metric} {outcome}" for metric, outcome in c["other_outcomes"].items())
        lines.append(f"- {text}")
        if c.get("harm"):
            lines.append(f"  - {c['harm']}")
    lines += ["", f"Verdicts use {METRICS[result['primary_metric']]}: an arm helped or hurt only "
              "when the 95 % paired t-interval of its per-seed differences excludes 0 and the "
              f"mean difference exceeds {result['threshold']:.3f}; otherwise there is no clear "
              "difference at these seeds."]
    if result["warnings"]:
        lines += ["", "## Warnings", ""]
        lines += [f"- {w}" for w in result["warnings"]]
    lines += ["", "## Results per arm (mean ± standard deviation over seeds)", ""]
    header = ["arm", "runs", *METRICS.values()]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for arm, stats in result["summary"].items():
        lines.append("| " + " | ".join([arm, str(stats["runs"]),
                                        *(_pm(stats[m]) for m in METRICS)]) + " |")
    rare = result.get("rarest_classes") or {}
    if rare:
        lines += ["", "Rarest classes (fewest real training images, mean over runs): "
                  + ", ".join(f"{name} ({count:g})" for name, count in rare.items())]
    for c in result["comparisons"]:
        lines += ["", f"## Paired differences: {c['arm']} − {c['reference']}", ""]
        lines.append("| metric | per-seed differences | mean | std | 95 % CI | better / worse "
                     "seeds | outcome |")
        lines.append("|---|---|---|---|---|---|---|")
        for metric, d in c["metrics"].items():
            per_seed = ", ".join(f"s{s}: {v:+.3f}" for s, v in
                                 zip(d["seeds"], d["differences"], strict=True)) or "-"
            ci = ("-" if d["ci_low"] is None else
                  f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
            std = "-" if d["std"] is None else f"{d['std']:.3f}"
            lines.append(f"| {METRICS[metric]} | {per_seed} | {_signed(d['mean'])} | {std} | "
                         f"{ci} | {d['positive']} / {d['negative']} | {d['outcome']} |")
    lines += ["", "## Runs", ""]
    lines.append("| arm | seed | status | " + " | ".join(METRICS.values())
                 + " | converged | seconds | output |")
    lines.append("|" + "---|" * (len(METRICS) + 6))
    for run in result["runs"]:
        scores = run.get("scores") or {}
        conv = run.get("convergence") or {}
        converged = {True: "yes", False: "no", None: "?"}[conv.get("converged")]
        if conv.get("converged") is False:
            converged += f" ({conv['reason']})"
        status = run["status"] if run["status"] == "ok" else f"failed: {run.get('error')}"
        cells = [_signed(scores.get(m)).lstrip("+") for m in METRICS]
        lines.append(f"| {run['arm']} | {run['seed']} | {status} | " + " | ".join(cells)
                     + f" | {converged} | {run.get('seconds', '-')} | `{run['output_dir']}` |")
    lines.append("")
    return "\n".join(lines)


def compare_chart(result: dict, path) -> Path:
    """Grouped bar chart: one group per metric, one bar per arm (mean, error bar = std)."""
    arms = list(result["summary"])
    metrics = list(METRICS)
    fig = new_figure(max(6.0, 1.6 * len(metrics) + 0.4 * len(arms)), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(arms))
    x = np.arange(len(metrics))
    low = 0.0
    for i, arm in enumerate(arms):
        stats = result["summary"][arm]
        means = [stats[m]["mean"] if stats[m]["mean"] is not None else np.nan for m in metrics]
        stds = [stats[m]["std"] or 0.0 for m in metrics]
        low = min([low, *(m - s for m, s in zip(means, stds, strict=True) if np.isfinite(m))])
        ax.bar(x + (i - (len(arms) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               label=f"{arm} (n={stats['runs']})")
    short = {"balanced_accuracy": "balanced\naccuracy", "macro_f1": "macro-F1",
             "cohen_kappa": "Cohen's\nkappa", "rare_recall": "recall,\nrarest classes"}
    ax.set_xticks(x, [short.get(m, METRICS[m]) for m in metrics])
    ax.set_ylim(min(0.0, low - 0.05), 1.05)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("score (mean ± std over seeds)")
    ax.set_title("genaug compare: held-out real test set")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def write_compare_outputs(result: dict, output_dir) -> dict:
    """Write ``compare.md`` and ``compare.png`` next to ``compare.json``; return their paths."""
    output_dir = Path(output_dir)
    md = write_text(output_dir / "compare.md", compare_markdown(result))
    png = compare_chart(result, output_dir / "compare.png")
    return {"markdown": md, "chart": png, "json": output_dir / "compare.json"}
