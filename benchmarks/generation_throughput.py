"""Images per second of the ddpm backend, of the whole generate run, and what fewer steps cost.

Three measurements, each in one process and against the obvious alternative:

* default: the sampler alone (``DDPMBackend.generate_batch``: per-image seeded noise, the
  solver loop, classifier-free guidance when asked, uint8 output) at 32 and 64 pixels, for
  each ``--runtime`` (eager, CUDA graphs, torch.compile); the UNet holds random weights
  (throughput does not depend on them) in a real generator directory.
* ``--end-to-end``: the full ``generate_cache`` path (plan, gates blur/structure/pHash,
  PNG writes, records, summary) against the sampler alone with the same backend and batch,
  printing the ratio and the run's time split. With random weights the blur and structure
  gates get thresholds that noise passes (their scores are still computed).
* ``--quality``: for each sampler setting (``--quality-configs``: the first is the
  reference, today's default DPM-Solver++ 20 steps with guidance 2; then DPM-Solver++ 2M/3M
  and UniPC at 8-15 steps) and each ``--distilled`` generator (``genaug distill-generator``,
  at its own step count), on the same generator and seeds: the sampler's images per second,
  the class-mean KID and FID of its images against the class's real images in the feature
  space of a balanced classifier trained on the real images (``genaug.evidence``), that
  classifier's class accuracy on the images, and whether the setting qualifies as a default
  (:func:`quality_held`: KID within 10 % of the reference's, class accuracy within 1 point).
  Needs a trained ``--generator`` and its ``--data-dir``.

    # GPU: the 25M-parameter base UNet, 25 DDIM steps, bf16, each runtime
    python benchmarks/generation_throughput.py --device cuda --model-size base \\
        --runtimes eager,cuda-graph,compile
    python benchmarks/generation_throughput.py --device cuda --end-to-end --sampler dpm++ \\
        --steps 20 --guidance-scale 2
    # CPU smoke runs (tiny UNet)
    python benchmarks/generation_throughput.py --device cpu --model-size tiny --threads 1
    python benchmarks/generation_throughput.py --device cpu --end-to-end --images 256
    # quality and speed of each setting (the rule applied), a distilled generator included
    python benchmarks/generation_throughput.py --device cpu --quality --generator gen \
        --distilled gen-4steps --data-dir data

Reference (untuned, H100, base UNet, 25 DDIM steps, bf16): about 110 images/s at 64x64 and
420 at 32x32; H200 with an earlier version of the sampler: 680 and 198.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: A setting qualifies as a default when its class-mean KID is at most this much (relative)
#: above the reference's and its class accuracy at most this many points below.
KID_TOLERANCE = 0.10
ACCURACY_POINTS = 1.0

RUNTIMES = {"eager": {"cuda_graph": False, "compile": False},
            "cuda-graph": {"cuda_graph": True, "compile": False},
            "compile": {"cuda_graph": False, "compile": "default"},
            "compile-reduce-overhead": {"cuda_graph": False, "compile": "reduce-overhead"}}


def make_generator(directory: Path, *, model_size: str, resolution: int, channels: int,
                   num_classes: int | None = None, class_names=None) -> Path:
    """A generator directory holding a UNet with random weights (``class_names``, or
    ``class0``... for ``num_classes`` classes)."""
    import torch

    from genaug.generation._ddpm_model import build_train_scheduler, build_unet, save_generator

    names = list(class_names or (f"class{i}" for i in range(num_classes)))
    torch.manual_seed(0)
    unet = build_unet(num_classes=len(names), resolution=resolution, channels=channels,
                      model_size=model_size)
    stats = {"count": 1, "mean": 0.5, "second_moment": 0.3, "std": 0.2, "neighbour_corr": 0.9}
    meta = {"class_names": names, "class_counts": dict.fromkeys(names, 1),
            "resolution": resolution, "color_mode": "grayscale" if channels == 1 else "rgb",
            "channels": channels, "label_dropout": 0.1, "steps": 0,
            "pixel_stats": {"all": stats, "per_class": {}}}
    save_generator(directory, unet=unet, scheduler=build_train_scheduler(), class_names=names,
                   meta=meta, train_config={"benchmark": True})
    return directory


def load(args, path, *, runtime: str | None = None, **overrides):
    from genaug.generation import load_backend

    options = dict(device=args.device, precision=args.precision, sampler=args.sampler,
                   steps=args.steps, guidance_scale=args.guidance_scale,
                   batch_size=args.batch_size, pixel_check=False,
                   **RUNTIMES[runtime or args.runtimes.split(",")[0]])
    options.update(overrides)
    return load_backend(path, **options)


def sync(backend) -> None:
    import torch

    if backend.device.startswith("cuda"):
        torch.cuda.synchronize()


def sample_alone(backend, n: int, *, classes, first_seed: int = 0) -> float:
    """Seconds to sample ``n`` images (classes in turn) in batches of the backend's size."""
    from genaug.generation import GenerationRequest

    sync(backend)
    start = time.perf_counter()
    made = 0
    while made < n:
        size = min(backend.batch_size, n - made)
        backend.generate_batch([GenerationRequest(class_name=classes[(made + i) % len(classes)],
                                                  seed=first_seed + made + i)
                                for i in range(size)])
        made += size
    sync(backend)
    return time.perf_counter() - start


def warm_up(backend, classes) -> float:
    """The first full batch (CUDA graph capture or compilation happens here), in seconds."""
    return sample_alone(backend, backend.batch_size, classes=classes, first_seed=10**7)


def device_name(backend) -> str:
    import torch

    if backend.device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"


# -- the sampler alone, per runtime ---------------------------------------------------------
def measure_sampler(args, resolution: int, runtime: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_generator(Path(tmp) / "generator", model_size=args.model_size,
                              resolution=resolution, channels=args.channels,
                              num_classes=args.classes)
        backend = load(args, path, runtime=runtime)
        names = backend.class_names
        first = warm_up(backend, names)
        seconds = sample_alone(backend, args.images, classes=names)
        result = {
            "device": device_name(backend), "model_size": args.model_size,
            "parameters_m": round(sum(p.numel() for p in backend.generator.unet.parameters())
                                  / 1e6, 2),
            "resolution": resolution, "channels": args.channels, "sampler": args.sampler,
            "steps": args.steps, "guidance_scale": args.guidance_scale,
            "precision": str(backend.dtype).replace("torch.", ""),
            "batch_size": backend.batch_size, "runtime": backend.runtime,
            "first_batch_s": round(first, 2), "images": args.images,
            "seconds": round(seconds, 3), "images_per_second": round(args.images / seconds, 2),
        }
        backend.close()
        return result


# -- the whole generate run against the sampler alone -----------------------------------------
def plan_for(data_dir, images: int):
    """A plan that asks for about ``images`` images in all."""
    from genaug.data import DatasetIndex
    from genaug.generation import make_plan

    index = DatasetIndex.from_directory(data_dir)
    counts = sorted(int(c) for c in index.counts())
    target = counts[0]
    while sum(max(0, target - c) for c in counts) < images:
        target += 1
    return make_plan(index, target_per_class=target, seed=0)


def measure_end_to_end(args) -> dict:
    from genaug.data._embedded import digits_longtail
    from genaug.generation import GateSpec, generate_cache

    data_dir = Path(args.data_dir) if args.data_dir else digits_longtail()[0]
    plan = plan_for(data_dir, args.images)
    n = plan.total_to_generate
    with tempfile.TemporaryDirectory() as tmp:
        generator = args.generator or make_generator(
            Path(tmp) / "generator", model_size=args.model_size, resolution=args.resolution,
            channels=args.channels, class_names=plan.class_names)
        backend = load(args, generator)
        names = list(plan.class_names)
        first = warm_up(backend, names)
        alone = sample_alone(backend, n, classes=names)
        # random weights make noise: thresholds it passes, so every gate still runs
        gates = GateSpec() if args.generator else GateSpec(blur_min=0.0, structure_min=-1.0)
        summary = generate_cache(plan, backend=backend, cache_dir=Path(tmp) / "cache",
                                 gates=gates, image_size=args.resolution,
                                 max_retries=args.max_retries, workers=args.workers,
                                 progress=False)
        decided = summary["totals"]["accepted"] + summary["totals"]["exhausted"]
        result = {
            "device": device_name(backend), "runtime": backend.runtime,
            "model_size": args.model_size if not args.generator else str(args.generator),
            "resolution": args.resolution, "sampler": args.sampler, "steps": args.steps,
            "guidance_scale": args.guidance_scale, "batch_size": backend.batch_size,
            "first_batch_s": round(first, 2), "images": n,
            "sampler_alone_per_s": round(n / alone, 2),
            "end_to_end_per_s": round(decided / summary["seconds"], 2),
            "accepted": summary["totals"]["accepted"],
            "candidates": sum(c["candidates"] for c in summary["classes"].values()),
            "time_split": summary["time_split"], "seconds": summary["seconds"],
        }
        result["ratio"] = round(result["end_to_end_per_s"] / result["sampler_alone_per_s"], 3)
        backend.close()
        return result


# -- fewer solver steps against sample quality -------------------------------------------------
def quality_held(*, kid: float, accuracy: float, reference_kid: float,
                 reference_accuracy: float) -> bool:
    """Whether a setting keeps the reference's quality: its KID at most
    :data:`KID_TOLERANCE` (relative to the reference's magnitude) above the reference's, and
    its class accuracy (in points) at most :data:`ACCURACY_POINTS` below. Lower KID and higher
    accuracy always qualify."""
    return (kid <= reference_kid + KID_TOLERANCE * abs(reference_kid)
            and accuracy >= reference_accuracy - ACCURACY_POINTS)


def quality_models(args, data_dir: Path, workdir: Path):
    """The feature extractor and the classifier it comes from (trained on the real images,
    balanced, unless ``--feature-model`` names one)."""
    from genaug.classifier import load_classifier, load_feature_extractor
    from genaug.evidence import train_feature_extractor

    if args.feature_model:
        path = Path(args.feature_model)
        extractor = load_feature_extractor(path)
    else:
        from training.pipeline import TrainConfig, run_training

        trained = {}

        def train(**options):
            trained.update(run_training(TrainConfig(**options)))
            return trained

        extractor = train_feature_extractor(data_dir, train_classifier=train,
                                            output_dir=workdir / "features",
                                            epochs=args.feature_epochs,
                                            image_size=args.resolution,
                                            color_mode=args.color_mode, seed=0)
        path = Path(trained["model_path"])
    return extractor, load_classifier(path)


def quality_settings(args) -> list[tuple[str, str, dict]]:
    """``(label, generator, backend options)`` per setting, the reference first."""
    settings = []
    for config in args.quality_configs.split(","):
        sampler, steps = config.split(":")
        settings.append((f"{sampler} {steps} steps, guidance {args.quality_guidance:g}",
                         args.generator, {"sampler": sampler, "steps": int(steps),
                                          "guidance_scale": args.quality_guidance}))
    for path in filter(None, (args.distilled or "").split(",")):
        settings.append((f"distilled {path}", path,
                         {"sampler": None, "steps": None, "guidance_scale": None}))
    return settings


def measure_quality(args) -> list[dict]:
    import numpy as np

    from genaug.data import DatasetIndex, load_image
    from genaug.evidence import fid, kid
    from genaug.generation import GenerationRequest, normalize_image

    if not args.generator or not args.data_dir:
        raise SystemExit("--quality needs a trained --generator and its --data-dir")
    index = DatasetIndex.from_directory(args.data_dir)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        extractor, (classifier, info) = quality_models(args, Path(args.data_dir), Path(tmp))
        size, mode = extractor.image_size, extractor.color_mode
        labels = {name: i for i, name in enumerate(info["class_names"] or index.class_names)}
        real = {name: extractor(np.stack([load_image(p, image_size=size, color_mode=mode)
                                          for p in paths]))
                for name, paths in index.paths_by_class().items() if paths}
        for label, generator, options in quality_settings(args):
            backend = load(args, generator, **options)
            names = [n for n in backend.class_names if n in real]
            warm_up(backend, names)
            kids, fids, accuracies, seconds = [], [], [], 0.0
            for name in names:
                requests = [GenerationRequest(class_name=name, seed=i)
                            for i in range(args.quality_per_class)]  # same seeds per setting
                sync(backend)
                start = time.perf_counter()
                made = []
                for begin in range(0, len(requests), backend.batch_size):
                    made += backend.generate_batch(requests[begin:begin + backend.batch_size])
                sync(backend)
                seconds += time.perf_counter() - start
                pixels = np.stack([normalize_image(m.image, size, mode) for m in made])
                fake = extractor(pixels)
                kids.append(kid(real[name], fake, subsets=50, subset_size=100)[0])
                fids.append(fid(real[name], fake))
                scores = classifier.predict(pixels.astype(np.float32), verbose=0)
                accuracies.append(float(np.mean(np.argmax(scores, axis=-1) == labels[name])))
            result = {
                "device": device_name(backend), "runtime": backend.runtime, "setting": label,
                "sampler": backend.sampler_name, "steps": backend.steps,
                "guidance_scale": backend.guidance_scale,
                "images_per_second": round(len(names) * args.quality_per_class / seconds, 2),
                "kid_x1000_class_mean": round(1000 * statistics.fmean(kids), 3),
                "fid_class_mean": round(statistics.fmean(fids), 2),
                "class_accuracy_pct": round(100 * statistics.fmean(accuracies), 2),
                "classes": len(names), "images_per_class": args.quality_per_class,
                "feature_space": extractor.source,
            }
            reference = results[0] if results else result
            result["speedup"] = round(result["images_per_second"]
                                      / reference["images_per_second"], 2)
            result["qualifies"] = quality_held(
                kid=result["kid_x1000_class_mean"], accuracy=result["class_accuracy_pct"],
                reference_kid=reference["kid_x1000_class_mean"],
                reference_accuracy=reference["class_accuracy_pct"])
            result["reference"] = not results
            results.append(result)
            backend.close()
    return results


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model-size", choices=["tiny", "small", "base"],
                        help="default: base on CUDA, tiny on CPU")
    parser.add_argument("--resolutions", default="32,64", help="sampler-alone mode")
    parser.add_argument("--resolution", type=int, default=32,
                        help="--end-to-end and --quality")
    parser.add_argument("--channels", type=int, choices=[1, 3], default=3)
    parser.add_argument("--color-mode", choices=["grayscale", "rgb"], default="grayscale",
                        help="--quality: the feature model's colour mode")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--sampler", choices=["ddim", "dpm++", "dpm++3m", "unipc"],
                        default="ddim")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=1.0,
                        help="1.0: no classifier-free guidance (half the UNet work)")
    parser.add_argument("--batch-size", type=int, help="default: 512 on CUDA, 16 on CPU")
    parser.add_argument("--images", type=int, help="default: 4096 on CUDA, 32 on CPU")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                        default="auto")
    parser.add_argument("--runtimes", default="eager",
                        help=f"comma-separated, of {', '.join(RUNTIMES)} (the first is used "
                             "by --end-to-end and --quality)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="the whole generate run against the sampler alone")
    parser.add_argument("--data-dir", help="real images (default: the embedded digits)")
    parser.add_argument("--generator", help="a trained generator (default: random weights)")
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--workers", type=int, help="generate's CPU threads")
    parser.add_argument("--quality", action="store_true",
                        help="KID/FID of fewer solver steps against the real images")
    parser.add_argument("--quality-configs",
                        default="dpm++:20,dpm++:8,dpm++:10,dpm++:15,dpm++3m:8,dpm++3m:10,"
                                "dpm++3m:15,unipc:8,unipc:10,unipc:15",
                        help="sampler:steps settings; the first is the reference (today's "
                             "default)")
    parser.add_argument("--quality-guidance", type=float, default=2.0,
                        help="--quality: guidance of the --quality-configs (today's default)")
    parser.add_argument("--distilled", help="--quality: comma-separated distilled generators "
                        "of --generator, each at its own default sampling")
    parser.add_argument("--quality-per-class", type=int, default=200)
    parser.add_argument("--feature-model", help="a classifier for the features (default: "
                        "train one on --data-dir)")
    parser.add_argument("--feature-epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args(argv)

    import torch

    from genaug.generation._utils import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = resolve_device(args.device)
    cuda = args.device.startswith("cuda")
    args.model_size = args.model_size or ("base" if cuda else "tiny")
    args.batch_size = args.batch_size or (512 if cuda else 16)
    args.images = args.images or (4096 if cuda else 32)
    if args.quality:
        results = measure_quality(args)
    elif args.end_to_end:
        results = [measure_end_to_end(args)]
    else:
        results = [measure_sampler(args, int(r), runtime)
                   for r in args.resolutions.split(",") for runtime in args.runtimes.split(",")]
    for result in results:
        print(json.dumps(result) if args.json else describe(result))
    return results


def describe(result: dict) -> str:
    if "ratio" in result:
        split = ", ".join(f"{k} {v:.1f} s" for k, v in result["time_split"].items())
        return (f"{result['device']} | {result['model_size']} | {result['resolution']}px | "
                f"{result['sampler']} {result['steps']} steps, guidance "
                f"{result['guidance_scale']} | batch {result['batch_size']} | "
                f"{result['runtime']} | {result['images']} images: sampler alone "
                f"{result['sampler_alone_per_s']:.1f} img/s, whole generate run "
                f"{result['end_to_end_per_s']:.1f} img/s = {result['ratio']:.2f}x "
                f"({result['accepted']} accepted of {result['candidates']} candidates; "
                f"{result['seconds']:.1f} s: {split})")
    if "kid_x1000_class_mean" in result:
        verdict = "reference" if result["reference"] else (
            "yes" if result["qualifies"] else "no")
        return (f"{result['device']} | {result['setting']} ({result['sampler']} "
                f"{result['steps']} steps, guidance {result['guidance_scale']:g}) | "
                f"{result['runtime']} | {result['images_per_second']:.1f} img/s "
                f"({result['speedup']:.2f}x) | KID x1000 {result['kid_x1000_class_mean']:.2f}, "
                f"FID {result['fid_class_mean']:.1f}, class accuracy "
                f"{result['class_accuracy_pct']:.1f} % (class means over {result['classes']} "
                f"classes, {result['images_per_class']} images each) | qualifies: {verdict}")
    return (f"{result['device']} | {result['model_size']} UNet ({result['parameters_m']}M "
            f"params) | {result['resolution']}x{result['resolution']}x{result['channels']} | "
            f"{result['sampler']} {result['steps']} steps | guidance "
            f"{result['guidance_scale']} | {result['precision']} | batch "
            f"{result['batch_size']} | {result['runtime']} (first batch "
            f"{result['first_batch_s']:.1f} s) | {result['images']} images in "
            f"{result['seconds']:.2f} s = {result['images_per_second']:.1f} images/s")


if __name__ == "__main__":
    main()
