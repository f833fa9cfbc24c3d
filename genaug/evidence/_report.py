"""``genaug report``: the pictures a person inspects before trusting a synthetic set.

Everything is written into one folder (PNGs plus an ``index.html`` that shows them with
relative links), so the folder can be zipped, copied or opened from anywhere.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from genaug.cache import STATUS_FILE, TrainingStatus
from genaug.data import load_image
from genaug.evidence._io import new_figure, save_figure, write_text
from genaug.exceptions import DatasetError
from genaug.io import atomic_write_bytes

SPLITS = ("train", "validation", "test")


@dataclass
class SplitCounts:
    """Real and synthetic image counts per class and split, and where they came from.

    Attributes
    ----------
    class_names : list of str
    original, synthetic : ndarray of int
        Training images per class: real, and distinct synthetic images (those a training run
        used over all its epochs, or without a run, all the cache holds).
    splits : dict
        ``{split: {"original": ndarray, "synthetic": ndarray}}`` for train, validation, test.
    source : str
        Where the numbers come from, for the page.
    share_of_draws : ndarray of float, optional
        Per class, the largest share over the epochs of a run's draws that were synthetic
        (what ``synthetic_cap`` bounds); only known from a run's ``status.json``.
    synthetic_cap, synthetic_pool_cap : float, optional
        The run's caps on the share of draws per epoch and on the share of distinct images.
    """

    class_names: list
    original: np.ndarray
    synthetic: np.ndarray
    splits: dict = field(default_factory=dict)
    source: str = ""
    share_of_draws: np.ndarray | None = None
    synthetic_cap: float | None = None
    synthetic_pool_cap: float | None = None

    @property
    def share_of_images(self) -> np.ndarray:
        """Distinct synthetic images / (real + distinct synthetic) training images, per class
        (what ``synthetic_pool_cap`` bounds)."""
        total = self.original + self.synthetic
        return np.divide(self.synthetic, total, out=np.zeros(len(total)), where=total > 0)


def split_counts(index, cache=None, *, status: dict | None = None) -> SplitCounts:
    """Counts per class and split.

    From a training run's ``status.json`` when given, of the same classes, and (when a cache is
    given) with synthetic images in it; else from the dataset (its CSV manifest splits, if any)
    and the cache (synthetic images are only ever used for training).
    """
    names = list(index.class_names)
    if status:
        parsed = _from_status(status, names)
        # A status.json of a run without synthetic data says nothing about a given cache.
        if parsed is not None and (cache is None or parsed.synthetic.sum() > 0):
            return parsed
    real = index.counts()
    synthetic = np.zeros(len(names), dtype=np.int64)
    if cache is not None:
        counts = cache.counts()
        synthetic = np.asarray([counts.get(n, 0) for n in names], dtype=np.int64)
    zeros = np.zeros(len(names), dtype=np.int64)
    if index.splits is not None:
        per_split = {s: np.bincount(index.labels[index.split_indices(s)], minlength=len(names))
                     for s in SPLITS}
        splits = {s: {"original": per_split[s], "synthetic": synthetic if s == "train" else zeros}
                  for s in SPLITS}
        return SplitCounts(names, per_split["train"], synthetic, splits,
                           "the dataset's CSV manifest splits and the synthetic cache")
    splits = {"train": {"original": real, "synthetic": synthetic},
              "validation": {"original": zeros, "synthetic": zeros},
              "test": {"original": zeros, "synthetic": zeros}}
    return SplitCounts(names, real, synthetic, splits,
                       "the dataset and the synthetic cache ('original' counts all real "
                       "images, before training holds out its validation and test images; no "
                       "matching status.json of a training run with this data was found)")


def _from_status(status: dict, names) -> SplitCounts | None:
    """Per-class and per-split counts from a training run's ``status.json``
    (:meth:`genaug.cache.TrainingStatus.from_json`); None when the file has no per-class
    counts or its classes are not the dataset's."""
    try:
        parsed = TrainingStatus.from_json(status)
    except DatasetError:
        return None
    if set(parsed.class_names) != set(names):
        return None
    order = [parsed.class_names.index(n) for n in names]

    def counts(values):
        return np.asarray([values[i] for i in order], dtype=np.int64)

    original, synthetic = counts(parsed.original), counts(parsed.synthetic)
    splits = {"train": {"original": original, "synthetic": synthetic}}
    zeros = np.zeros(len(names), dtype=np.int64)
    for split in ("validation", "test"):
        values = getattr(parsed, split)
        if values is not None:
            splits[split] = {"original": counts(values), "synthetic": zeros}
    share_of_draws = (np.asarray([parsed.share_of_draws[i] for i in order], dtype=np.float64)
                      if parsed.share_of_draws is not None else None)
    return SplitCounts(list(names), original, synthetic, splits,
                       "the last training run's status.json (synthetic = distinct images used "
                       "over the run)", share_of_draws=share_of_draws,
                       synthetic_cap=parsed.synthetic_cap,
                       synthetic_pool_cap=parsed.synthetic_pool_cap)


def _class_axis(ax, names):
    rotate = len(names) > 6
    ax.set_xticks(np.arange(len(names)), names, rotation=60 if rotate else 0,
                  ha="right" if rotate else "center", fontsize=8 if len(names) > 20 else 9)


def _width(n):
    return min(40.0, max(6.0, 0.35 * n + 2.0))


def plot_counts(comp: SplitCounts, path) -> Path:
    """Stacked bars of original and synthetic training images per class."""
    fig = new_figure(_width(len(comp.class_names)), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(comp.class_names))
    ax.bar(x, comp.original, label="original (real)", color="#4c72b0")
    ax.bar(x, comp.synthetic, bottom=comp.original, label="synthetic", color="#dd8452")
    _class_axis(ax, comp.class_names)
    ax.set_ylabel("training images")
    ax.set_title("Original vs synthetic images per class")
    ax.legend()
    return save_figure(fig, path)


def plot_synthetic_shares(comp: SplitCounts, path) -> Path:
    """Per class, the two synthetic shares, each with the cap that bounds it.

    The share of the distinct training images (``synthetic_pool_cap`` bounds it) and, from a
    run's ``status.json``, the largest share of one epoch's draws (``synthetic_cap`` bounds
    it). Under a cap on draws a long run can train on far more distinct synthetic images.
    """
    fig = new_figure(_width(len(comp.class_names)), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(comp.class_names))
    bars = [(comp.share_of_images, "distinct synthetic images / training images, over the run"
             + (f" (synthetic_pool_cap {comp.synthetic_pool_cap:.0%})"
                if comp.synthetic_pool_cap is not None else ""), "#dd8452")]
    if comp.share_of_draws is not None:
        bars.append((comp.share_of_draws, "synthetic draws / draws, largest epoch"
                     + (f" (synthetic_cap {comp.synthetic_cap:.0%})"
                        if comp.synthetic_cap is not None else ""), "#8172b3"))
    width = 0.8 / len(bars)
    for i, (values, label, colour) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * width
        ax.bar(x + offset, values * 100.0, width, label=label, color=colour)
        if len(x) <= 30:
            for xi, value in zip(x, values, strict=True):
                ax.text(xi + offset, value * 100.0 + 1, f"{value:.0%}", ha="center", fontsize=6)
    for cap, colour in ((comp.synthetic_cap if comp.share_of_draws is not None else None,
                         "#8172b3"), (comp.synthetic_pool_cap, "#dd8452")):
        if cap is not None:
            ax.axhline(cap * 100.0, color=colour, linestyle="--", linewidth=1)
    _class_axis(ax, comp.class_names)
    ax.set_ylim(0, 118)
    ax.set_ylabel("synthetic share (%)")
    ax.set_title("Synthetic share per class (dashed: the cap on each share)")
    ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, path)


def plot_split_heatmap(comp: SplitCounts, path) -> Path:
    """Heatmap of the synthetic share of images per class (rows) and split (columns)."""
    splits = [s for s in SPLITS if s in comp.splits]
    grid = np.zeros((len(comp.class_names), len(splits)))
    for j, split in enumerate(splits):
        original, synthetic = comp.splits[split]["original"], comp.splits[split]["synthetic"]
        total = original + synthetic
        grid[:, j] = np.divide(synthetic, total, out=np.zeros(len(total)), where=total > 0)
    fig = new_figure(2.0 + 1.4 * len(splits), min(40.0, 1.2 + 0.3 * len(comp.class_names)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="Oranges", aspect="auto")
    ax.set_xticks(np.arange(len(splits)), splits)
    ax.set_yticks(np.arange(len(comp.class_names)), comp.class_names,
                  fontsize=8 if len(comp.class_names) > 20 else 9)
    if grid.size <= 300:
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] > 0.6 else "black")
    fig.colorbar(image, ax=ax, label="synthetic share of images")
    ax.set_title("Synthetic share of images per class and split")
    return save_figure(fig, path)


def plot_balance_deviation(comp: SplitCounts, path) -> Path:
    """Each class's share of the training set minus the balanced target (1 / n_classes), in
    percentage points, before and after adding the synthetic images."""
    n = len(comp.class_names)
    target = 1.0 / n
    before_total = comp.original.sum()
    after_total = (comp.original + comp.synthetic).sum()
    before = comp.original / before_total - target if before_total else np.zeros(n)
    after = (comp.original + comp.synthetic) / after_total - target if after_total else np.zeros(n)
    fig = new_figure(_width(n), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(n)
    ax.bar(x - 0.2, before * 100, 0.4, label="real only", color="#4c72b0")
    ax.bar(x + 0.2, after * 100, 0.4, label="real + synthetic", color="#dd8452")
    ax.axhline(0, color="black", linewidth=0.8)
    _class_axis(ax, comp.class_names)
    ax.set_ylabel("share − target (percentage points)")
    ax.set_title(f"Deviation from the balanced target ({target:.1%} per class)")
    ax.legend()
    return save_figure(fig, path)


def thumbnail_grid(real_paths, synthetic_paths, path, *, size: int = 64) -> Path:
    """One PNG: a row of real images above a row of synthetic images of the same class."""
    label_width, gap = 80, 4
    columns = max(len(real_paths), len(synthetic_paths), 1)
    width = label_width + columns * (size + gap)
    height = 2 * (size + gap) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (label, paths) in enumerate((("real", real_paths), ("synthetic", synthetic_paths))):
        top = gap + row * (size + gap)
        draw.text((6, top + size // 2 - 6), label, fill="black")
        if not paths:
            draw.text((label_width, top + size // 2 - 6), "no images", fill="gray")
        for col, image_path in enumerate(paths):
            try:
                pixels = load_image(image_path, image_size=(size, size), color_mode="rgb")
                tile = Image.fromarray(pixels)
            except Exception:  # an unreadable file shows as a grey tile, not a crash
                tile = Image.new("RGB", (size, size), "#bbbbbb")
            canvas.paste(tile, (label_width + col * (size + gap), top))
    buffer = _png_bytes(canvas)
    atomic_write_bytes(Path(path), buffer)
    return Path(path)


def _png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:40] or "class"


def build_report(
    index,
    *,
    out,
    cache=None,
    output_dir=None,
    thumbnails: int = 8,
    thumbnail_size: int = 64,
    seed: int = 0,
) -> dict:
    """Write all report images and ``index.html`` into ``out``.

    Parameters
    ----------
    index : genaug.data.DatasetIndex
    out : path-like
        Report folder.
    cache : genaug.cache.SyntheticCache, optional
    output_dir : path-like, optional
        Training outputs folder: its ``status.json``, ``confusion_matrix.png``,
        ``compare.png`` / ``compare.json``, ``quality.json`` and the compare runs' confusion
        matrices are used when present.
    thumbnails : int
        Real and synthetic images shown per class.
    thumbnail_size : int
        Side of each thumbnail in pixels.
    seed : int
        Which images are picked for the thumbnails.

    Returns
    -------
    dict
        ``{"html": path, "images": [paths]}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    output_dir = None if output_dir is None else Path(output_dir)
    status = _read_json(output_dir / STATUS_FILE) if output_dir else None
    comp = split_counts(index, cache, status=status)
    sections, images = [], []

    def add(title, filename, writer, note=""):
        path = writer(out / filename)
        images.append(path)
        sections.append((title, [(filename, title)], note))

    add("Original vs synthetic images per class", "counts.png",
        lambda p: plot_counts(comp, p), f"Counts from {comp.source}.")
    add("Synthetic share per class", "synthetic_fraction.png",
        lambda p: plot_synthetic_shares(comp, p),
        "synthetic_cap bounds the synthetic share of each epoch's draws of a class; over a run "
        "a class may train on more distinct synthetic images than that share of its training "
        "images. synthetic_pool_cap bounds the distinct images.")
    add("Synthetic share of images per class and split", "split_heatmap.png",
        lambda p: plot_split_heatmap(comp, p),
        "Synthetic images are used for training only; validation and test must stay at 0 %.")
    add("Balance deviation against the target", "balance_deviation.png",
        lambda p: plot_balance_deviation(comp, p),
        "Each class's share of the training images minus the balanced share (1 / classes).")

    rng = np.random.default_rng(seed)
    by_class = cache.by_class() if cache is not None else {}
    thumbs = []
    real_paths = index.paths_by_class()
    for number, name in enumerate(index.class_names):
        real = real_paths[name]
        synthetic = [cache.path(r) for r in by_class.get(name, [])]
        real = [real[i] for i in sorted(rng.permutation(len(real))[:thumbnails])]
        synthetic = [synthetic[i] for i in sorted(rng.permutation(len(synthetic))[:thumbnails])]
        filename = f"thumbs_{number:03d}_{_slug(name)}.png"
        images.append(thumbnail_grid(real, synthetic, out / filename, size=thumbnail_size))
        thumbs.append((filename, f"{name}: real (top) and synthetic (bottom)"))
    sections.append((f"Real next to synthetic images ({thumbnails} of each per class)", thumbs,
                     "Check that synthetic images show the class, look like the real ones, "
                     "and are not near-copies of each other or of a real image."))

    copied = []
    if output_dir is not None:
        for source, filename, caption in _found_figures(output_dir):
            atomic_write_bytes(out / filename, source.read_bytes())
            images.append(out / filename)
            copied.append((filename, caption))
    if copied:
        sections.append(("Confusion matrices and comparison", copied,
                         f"Copied from {output_dir}."))
    texts = _text_sections(output_dir) if output_dir else []
    html_path = write_text(out / "index.html", _page(comp, sections, texts))
    return {"html": html_path, "images": images}


def _found_figures(output_dir: Path):
    candidates = [(output_dir / "confusion_matrix.png", "confusion_matrix.png",
                   "Confusion matrix of the last training run")]
    compare_runs = output_dir / "compare"
    if compare_runs.is_dir():
        for arm_dir in sorted(p for p in compare_runs.iterdir() if p.is_dir()):
            seeds = sorted(arm_dir.glob("seed*/confusion_matrix.png"),
                           key=lambda p: (len(p.parent.name), p.parent.name))
            if seeds:
                candidates.append((seeds[0], f"confusion_{_slug(arm_dir.name)}_"
                                   f"{_slug(seeds[0].parent.name)}.png",
                                   f"Confusion matrix: compare arm {arm_dir.name}, "
                                   f"{seeds[0].parent.name}"))
    candidates.append((output_dir / "compare.png", "compare.png",
                       "genaug compare: metrics per arm (mean ± std over seeds)"))
    return [c for c in candidates if c[0].is_file()]


def _text_sections(output_dir: Path):
    out = []
    compare = _read_json(output_dir / "compare.json")
    if compare and compare.get("comparisons"):
        lines = [f"{c['arm']} vs {c['reference']}: {c['verdict']}"
                 for c in compare["comparisons"]]
        lines += [f"warning: {w}" for w in compare.get("warnings", [])]
        out.append(("Comparison verdicts (compare.json)", "\n".join(lines)))
    quality = _read_json(output_dir / "quality.json")
    if quality and quality.get("classes"):
        from genaug.evidence._quality import quality_table

        try:
            out.append(("Synthetic quality (quality.json)",
                        quality_table(quality) + "\n\n" +
                        (quality.get("feature_space") or {}).get("note", "")))
        except (KeyError, TypeError):
            pass
    return out


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.querySelectorAll("img"), loaded = 0;
  images.forEach(function (img) {
    var ok = img.complete && img.naturalWidth > 0;
    img.setAttribute("data-loaded", ok ? "yes" : "no");
    if (ok) { loaded += 1; return; }
    var note = document.createElement("p");
    note.className = "missing";
    note.textContent = "image failed to load: " + img.getAttribute("src");
    img.insertAdjacentElement("afterend", note);
  });
  document.body.setAttribute("data-images-loaded", loaded + "/" + images.length);
});
"""


def _page(comp: SplitCounts, sections, texts) -> str:
    esc = html.escape
    draws = (comp.share_of_draws if comp.share_of_draws is not None
             else [None] * len(comp.class_names))
    rows = "".join(
        f"<tr><td>{esc(n)}</td><td>{o}</td><td>{s}</td><td>{f:.1%}</td>"
        f"<td>{'-' if d is None else f'{d:.1%}'}</td></tr>"
        for n, o, s, f, d in zip(comp.class_names, comp.original, comp.synthetic,
                                 comp.share_of_images, draws, strict=True)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>genaug report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "img{max-width:100%;border:1px solid #ddd;margin:4px 0}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:right}td:first-child{text-align:left}.missing{color:#b00}"
        "pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}</style>",
        f"<script>{_SCRIPT}</script>",
        "</head><body>",
        "<h1>genaug report</h1>",
        f"<p>Training images per class, from {esc(comp.source)}.</p>",
        "<table><tr><th>class</th><th>original</th><th>synthetic (distinct)</th>"
        "<th>synthetic share of images</th><th>synthetic share of draws (largest epoch)</th>"
        f"</tr>{rows}</table>",
    ]
    for title, text in texts:
        parts.append(f"<h2>{esc(title)}</h2><pre>{esc(text)}</pre>")
    for title, figures, note in sections:
        parts.append(f"<h2>{esc(title)}</h2>")
        if note:
            parts.append(f"<p>{esc(note)}</p>")
        for filename, caption in figures:
            parts.append(f'<figure><img src="{esc(filename)}" alt="{esc(caption)}">'
                         f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
