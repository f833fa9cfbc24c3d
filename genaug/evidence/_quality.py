"""Synthetic-set quality per class and overall: FID, KID, nearest-real SSIM, diversity,
near-duplicates and the verification pass rate recorded at generation time."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from genaug.cache import read_rejections
from genaug.data import convert_mode, resize_array
from genaug.evidence._distribution import fid, kid, mean_pairwise_distance
from genaug.evidence._ssim import nearest_ssim

FEATURE_NOTE = (
    "FID and KID here are computed in the feature space of {source}, not Inception-v3 (no "
    "download is possible). They compare synthetic with real images of this dataset only and "
    "are not comparable with published FID/KID values. FID is biased upward for small samples "
    "(compare it with the real-vs-real baseline of the same class); KID is unbiased."
)


def measure_quality(
    index,
    cache,
    extractor,
    *,
    max_per_class: int = 1000,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    phash_distance: int = 4,
    ssim_size: int = 64,
    ssim_candidates: int = 10,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure a synthetic cache against the real images, per class and overall.

    Parameters
    ----------
    index : genaug.data.DatasetIndex
        The real images (all splits).
    cache : genaug.cache.SyntheticCache
        The synthetic images, opened with the dataset's class names.
    extractor : FeatureExtractor
        Embedding used for FID, KID and feature diversity.
    max_per_class : int
        Random sample size per class and kind (real / synthetic) for the image-based metrics.
    kid_subsets, kid_subset_size : int
        KID rounds and subset size (capped by the smaller sample).
    phash_distance : int
        Two perceptual hashes at most this many bits apart are near-duplicates.
    ssim_size : int
        Images are compared by SSIM in grayscale at ``ssim_size`` x ``ssim_size``.
    ssim_candidates : int
        Pixel-nearest real images searched per synthetic image for the best SSIM.
    seed : int
        Seed of the sampling and the KID subsets.
    progress : callable, optional
        Called with one line per class.

    Returns
    -------
    dict
        ``feature_space``, ``settings``, ``classes`` {name: metrics}, ``overall`` (all classes
        together, class-matched; plainly pooled values under ``overall["pooled"]``),
        ``class_mean`` (mean of the per-class values) and ``cache_problems``.
    """
    rng = np.random.default_rng(seed)
    records = cache.by_class()
    settings = {"max_per_class": max_per_class, "kid_subsets": kid_subsets,
                "kid_subset_size": kid_subset_size, "phash_distance": phash_distance,
                "ssim_size": ssim_size, "ssim_candidates": ssim_candidates, "seed": seed}
    classes, pooled = {}, {"real": [], "synthetic": []}
    rejections = read_rejections(cache.directory)
    paths_by_class = index.paths_by_class()
    for label, name in enumerate(index.class_names):
        real_paths = _sample(paths_by_class[name], max_per_class, rng)
        class_records = records.get(name, [])
        syn_paths = _sample([cache.path(r) for r in class_records], max_per_class, rng)
        if progress:
            progress(f"quality: {name}: {len(real_paths)} real, {len(syn_paths)} synthetic images")
        real = _embed(real_paths, extractor, ssim_size)
        synthetic = _embed(syn_paths, extractor, ssim_size)
        metrics = _class_metrics(real, synthetic, extractor.dimension, kid_subsets=kid_subsets,
                                 kid_subset_size=kid_subset_size, phash_distance=phash_distance,
                                 ssim_candidates=ssim_candidates, seed=seed)
        metrics["n_real_total"] = int((index.labels == label).sum())
        metrics["n_synthetic_total"] = len(class_records)
        metrics["verification"] = verification_summary(
            class_records, [e for e in rejections if e.get("class") == name])
        classes[name] = metrics
        pooled["real"].append(real)
        pooled["synthetic"].append(synthetic)
    overall = _overall(pooled, classes, extractor.dimension, kid_subsets=kid_subsets,
                       kid_subset_size=kid_subset_size, seed=seed)
    overall["verification"] = verification_summary(
        cache.records, [e for e in rejections if e.get("class") in set(index.class_names)])
    feature_space = extractor.describe()
    feature_space["note"] = FEATURE_NOTE.format(source=extractor.source)
    return {
        "feature_space": feature_space,
        "settings": settings,
        "classes": classes,
        "overall": overall,
        "class_mean": _class_mean(classes),
        "cache_problems": cache.problems.lines(),
    }


def verification_summary(records, rejections=None) -> dict:
    """How the generated candidates fared in the quality gates at generation time.

    Parameters
    ----------
    records : list of dict
        Accepted images (cache records), with ``quality`` {gate: {"passed", ...}} and
        ``attempts``.
    rejections : list of dict, optional
        Rejected candidates (see :func:`genaug.cache.read_rejections`). The cache keeps only
        accepted images, so without this log the pass rate can only be estimated from ``attempts``.

    Returns
    -------
    dict
        ``candidates``, ``accepted``, ``rejected``, ``pass_rate`` (accepted / candidates),
        ``per_gate`` (pass rate of each gate over the candidates it checked),
        ``first_attempt_rate`` and ``source`` (how the pass rate was obtained).
    """
    rejections = list(rejections or [])
    gates: dict[str, list[bool]] = {}
    for entry in [*records, *rejections]:
        quality = entry.get("quality")
        if isinstance(quality, dict):
            for gate, score in quality.items():
                flag = bool(score.get("passed")) if isinstance(score, dict) else bool(score)
                gates.setdefault(gate, []).append(flag)
    attempts = [r.get("attempts") for r in records]
    known = [a for a in attempts if isinstance(a, (int, float)) and a >= 1]
    accepted = len(records)
    if rejections:
        candidates, source = accepted + len(rejections), "cache records and rejection log"
    elif known and len(known) == accepted:
        candidates = int(sum(known))
        source = "attempts recorded with the accepted images (no rejection log)"
    else:
        candidates, source = None, "unknown: no rejection log and no attempt counts"
    return {
        "accepted": accepted,
        "rejected": len(rejections),
        "candidates": candidates,
        "pass_rate": accepted / candidates if candidates else None,
        "per_gate": {gate: sum(flags) / len(flags) for gate, flags in sorted(gates.items())},
        "first_attempt_rate": (sum(1 for a in known if a == 1) / len(known) if known else None),
        "source": source,
    }


class _Images:
    """Embeddings, grayscale SSIM arrays and perceptual hashes of one image sample."""

    def __init__(self, features, gray, hashes):
        self.features, self.gray, self.hashes = features, gray, hashes

    def __len__(self):
        return len(self.features)


def _sample(items, limit, rng):
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in np.sort(rng.choice(len(items), limit, replace=False))]


def _decode(path, image_size, color_mode, ssim_size):
    with Image.open(path) as image:
        if image.format == "JPEG":
            side = max(max(image_size), ssim_size)
            image.draft(image.mode, (side, side))
        image.seek(0)
        image.load()
        pixels = resize_array(np.asarray(convert_mode(image, color_mode)), image_size)
        gray = resize_array(np.asarray(convert_mode(image, "grayscale")), (ssim_size, ssim_size))
    return pixels, gray[:, :, 0]


def _embed(paths, extractor, ssim_size) -> _Images:
    import imagehash

    if not paths:
        return _Images(np.zeros((0, extractor.dimension)), np.zeros((0, ssim_size, ssim_size)),
                       np.zeros((0, 64), bool))
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        decoded = list(pool.map(lambda p: _decode(p, extractor.image_size, extractor.color_mode,
                                                  ssim_size), paths))
    pixels = np.stack([d[0] for d in decoded])
    gray = np.stack([d[1] for d in decoded])
    hashes = np.stack([imagehash.phash(Image.fromarray(g)).hash.reshape(-1) for g in gray])
    return _Images(extractor(pixels), gray, hashes)


def _hamming(a, b):
    a, b = a.astype(np.float32), b.astype(np.float32)
    return a @ (1.0 - b).T + (1.0 - a) @ b.T


def near_duplicate_flags(hashes, *, others=None, distance: int = 4) -> np.ndarray:
    """For each hash, whether another hash (in ``hashes`` itself, or in ``others``) is at most
    ``distance`` bits away."""
    hashes = np.asarray(hashes, bool)
    if len(hashes) == 0:
        return np.zeros(0, bool)
    if others is None:
        d = _hamming(hashes, hashes)
        np.fill_diagonal(d, np.inf)
    else:
        others = np.asarray(others, bool)
        if len(others) == 0:
            return np.zeros(len(hashes), bool)
        d = _hamming(hashes, others)
    return (d <= distance).any(axis=1)


def _class_metrics(real, synthetic, dimension, *, kid_subsets, kid_subset_size, phash_distance,
                   ssim_candidates, seed):
    out = {"n_real": len(real), "n_synthetic": len(synthetic)}
    warnings = []
    out["fid"] = fid(real.features, synthetic.features)
    out["kid"], out["kid_std"], out["kid_subset_size"] = kid(
        real.features, synthetic.features, subsets=kid_subsets, subset_size=kid_subset_size,
        seed=seed)
    # Noise floor: the same metrics between two random halves of the real images.
    half = len(real) // 2
    order = np.random.default_rng(seed).permutation(len(real))
    first, second = real.features[order[:half]], real.features[order[half:2 * half]]
    out["fid_real_vs_real"] = fid(first, second)
    out["kid_real_vs_real"] = kid(first, second, subsets=kid_subsets,
                                  subset_size=kid_subset_size, seed=seed)[0]
    scores = nearest_ssim(synthetic.gray, real.gray, candidates=ssim_candidates)
    finite = scores[np.isfinite(scores)]
    out["ssim_nearest_real"] = ({"mean": float(finite.mean()), "median": float(np.median(finite)),
                                 "max": float(finite.max())} if len(finite) else None)
    out["_ssim_scores"] = finite
    div_syn = mean_pairwise_distance(synthetic.features, seed=seed)
    div_real = mean_pairwise_distance(real.features, seed=seed)
    out["diversity"] = {"synthetic": div_syn, "real": div_real,
                        "ratio": div_syn / div_real if div_syn is not None and div_real else None}
    dup = near_duplicate_flags(synthetic.hashes, distance=phash_distance)
    copy = near_duplicate_flags(synthetic.hashes, others=real.hashes, distance=phash_distance)
    out["near_duplicate_rate"] = float(dup.mean()) if len(dup) else None
    out["near_copy_of_real_rate"] = float(copy.mean()) if len(copy) else None
    out["_dup"], out["_copy"] = dup, copy
    if len(synthetic) == 0:
        warnings.append("no synthetic images")
    elif min(len(real), len(synthetic)) < 2:
        warnings.append("fewer than 2 images on one side: FID/KID undefined")
    elif min(len(real), len(synthetic)) < dimension:
        warnings.append(f"fewer images than feature dimensions ({dimension}): FID is biased "
                        "upward, compare it with fid_real_vs_real")
    if out["kid"] is not None and len(real) == len(synthetic) == out["kid_subset_size"]:
        warnings.append("KID subsets are the whole sample, so kid_std is 0 and no measure of "
                        "uncertainty")
    out["warnings"] = warnings
    return out


def _overall(pooled, classes, dimension, *, kid_subsets, kid_subset_size, seed):
    """All classes together.

    FID, KID and diversity use a *class-matched* sample: for every class with synthetic images,
    the same number of real and synthetic images (the smaller of the two). Synthetic sets
    usually cover only the rare classes, and comparing them with all real images would mostly
    measure the difference in class mix. The plainly pooled values are kept under ``pooled``.
    """
    rng = np.random.default_rng(seed)
    matched_real, matched_syn, matched_classes = [], [], []
    for name, real, synthetic in zip(classes, pooled["real"], pooled["synthetic"], strict=True):
        m = min(len(real), len(synthetic))
        if m:
            matched_real.append(real.features[rng.permutation(len(real))[:m]])
            matched_syn.append(synthetic.features[rng.permutation(len(synthetic))[:m]])
            matched_classes.append(name)
    width = (0, dimension)
    real_m = np.concatenate(matched_real) if matched_real else np.zeros(width)
    syn_m = np.concatenate(matched_syn) if matched_syn else np.zeros(width)
    real_all = np.concatenate([r.features for r in pooled["real"]])
    syn_all = np.concatenate([s.features for s in pooled["synthetic"]])
    ssim_scores = np.concatenate([c.pop("_ssim_scores") for c in classes.values()])
    dup = np.concatenate([c.pop("_dup") for c in classes.values()])
    copy = np.concatenate([c.pop("_copy") for c in classes.values()])
    kid_mean, kid_std, m = kid(real_m, syn_m, subsets=kid_subsets, subset_size=kid_subset_size,
                               seed=seed)
    warnings = []
    if kid_mean is not None and m == len(real_m):
        warnings.append("KID subsets are the whole sample, so kid_std is 0 and no measure of "
                        "uncertainty")
    pooled_kid, pooled_kid_std, _ = kid(real_all, syn_all, subsets=kid_subsets,
                                        subset_size=kid_subset_size, seed=seed)
    div_syn = mean_pairwise_distance(syn_m, seed=seed)
    div_real = mean_pairwise_distance(real_m, seed=seed)
    return {
        "n_real": len(real_all),
        "n_synthetic": len(syn_all),
        "matched_classes": matched_classes,
        "matched_per_side": len(real_m),
        "fid": fid(real_m, syn_m),
        "kid": kid_mean,
        "kid_std": kid_std,
        "kid_subset_size": m,
        "ssim_nearest_real": ({"mean": float(ssim_scores.mean()),
                               "median": float(np.median(ssim_scores)),
                               "max": float(ssim_scores.max())} if len(ssim_scores) else None),
        "diversity": {"synthetic": div_syn, "real": div_real,
                      "ratio": div_syn / div_real if div_syn is not None and div_real else None},
        "near_duplicate_rate": float(dup.mean()) if len(dup) else None,
        "near_copy_of_real_rate": float(copy.mean()) if len(copy) else None,
        "pooled": {"fid": fid(real_all, syn_all), "kid": pooled_kid, "kid_std": pooled_kid_std,
                   "note": "all real vs all synthetic images; their class mixes differ, which "
                           "alone raises these values"},
        "note": ("FID, KID and diversity over a class-matched sample: per class with synthetic "
                 "images, as many real as synthetic images"),
        "warnings": warnings,
    }


def _class_mean(classes) -> dict:
    def mean(values):
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.mean(values)) if values else None

    rows = [c for c in classes.values() if c["n_synthetic"]]
    return {
        "classes_with_synthetic": len(rows),
        "fid": mean(c["fid"] for c in rows),
        "kid": mean(c["kid"] for c in rows),
        "ssim_nearest_real": mean((c["ssim_nearest_real"] or {}).get("mean") for c in rows),
        "diversity_ratio": mean(c["diversity"]["ratio"] for c in rows),
        "near_duplicate_rate": mean(c["near_duplicate_rate"] for c in rows),
    }


def _fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def quality_table(result: dict) -> str:
    """A fixed-width text table of :func:`measure_quality`'s result, one row per class."""
    header = ("class", "real", "synth", "FID", "FID r/r", "KID", "KID std", "SSIM-NN",
              "div s/r", "dup", "copy", "pass")
    rows = []
    for name, c in [*result["classes"].items(), ("ALL (matched)", result["overall"])]:
        verification = c.get("verification") or {}
        n_real, n_syn = c["n_real"], c["n_synthetic"]
        if c.get("matched_per_side") is not None:  # the class-matched overall row
            n_real = n_syn = c["matched_per_side"]
        rows.append((
            name, str(n_real), str(n_syn), _fmt(c["fid"], ".2f"),
            _fmt(c.get("fid_real_vs_real"), ".2f"), _fmt(c["kid"], ".4f"),
            _fmt(c["kid_std"], ".4f"), _fmt((c["ssim_nearest_real"] or {}).get("mean")),
            _fmt(c["diversity"]["ratio"], ".2f"), _fmt(c["near_duplicate_rate"], ".2f"),
            _fmt(c["near_copy_of_real_rate"], ".2f"), _fmt(verification.get("pass_rate"), ".2f"),
        ))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)  # noqa: E731
                               for i, (v, w) in enumerate(zip(r, widths, strict=True)))
    out = [line(header), line(["-" * w for w in widths]), *map(line, rows)]
    out.append("")
    out.append("ALL (matched): FID/KID/diversity over the classes with synthetic images, "
               "with as many real as synthetic images per class. "
               "FID r/r: FID between two halves of the real images (the noise floor at this "
               "sample size). SSIM-NN: SSIM to the most similar real image. div s/r: feature "
               "diversity synthetic/real. dup: near-duplicate rate among synthetic (pHash). "
               "copy: near-copy-of-real rate. pass: share of generated candidates that passed the "
               "verification gates.")
    return "\n".join(out)
