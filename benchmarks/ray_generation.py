"""Images per second of ``generate --ray`` with 1 and 2 workers, against the single process.

One plan, one generator (random weights in a real generator directory, tiny or small UNet)
and the same gates, run in this process as the whole ``generate_cache`` path four ways: in
this process with 1 torch thread (what one Ray worker runs; with ``--threads N``, also with N),
then on a local Ray instance of ``--ray-cpus`` CPUs with 1 and with 2 workers of 1 CPU each.
Each backend first samples one batch per worker (process start, lazy initialisation), which
is not counted. Printed: images decided per second of each run, its ratio to the one-thread
single process, and whether each Ray cache holds the same ids and PNG bytes as that one.

    # CPU (a minute or two on a 2-core machine)
    python benchmarks/ray_generation.py --model-size tiny --images 96 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generation_throughput import make_generator, plan_for  # noqa: E402


def cache_files(cache: Path) -> dict[str, bytes]:
    """Each record's id and its PNG bytes."""
    from genaug.synthetic import SyntheticCache

    return {r["id"]: (cache / r["path"]).read_bytes() for r in SyntheticCache(cache).records}


def run(plan, generator: Path, cache: Path, *, args, ray_workers: int | None = None) -> dict:
    """One whole generate run; the backend warmed up first (one batch per worker)."""
    from genaug.generation import GenerationRequest, generate_cache, load_backend

    placement = {} if ray_workers is None else {"ray": True, "ray_workers": ray_workers,
                                                 "ray_cpus_per_worker": 1}
    backend = load_backend(generator, device="cpu", steps=args.steps, sampler="ddim",
                           batch_size=args.batch_size, pixel_check=False, **placement)
    try:
        for worker in range(ray_workers or 1):
            backend.generate_batch([GenerationRequest(class_name=plan.class_names[0],
                                                      seed=10**7 + worker)])
        started = time.perf_counter()
        # random weights make noise: thresholds it passes, so every gate still runs
        summary = generate_cache(plan, backend=backend, cache_dir=cache, blur_min=0.0,
                                 structure_min=-1.0, max_retries=1, progress=False)
        seconds = time.perf_counter() - started
    finally:
        backend.close()
    decided = summary["totals"]["accepted"] + summary["totals"]["exhausted"]
    return {"images": decided, "seconds": round(seconds, 2),
            "images_per_second": round(decided / seconds, 2)}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-size", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--images", type=int, default=96, help="images the plan asks for")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int,
                        help="also run the single process with this many torch threads")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # a one-machine cluster on the loopback interface (read when ray is imported)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    import torch

    from genaug.data._embedded import digits_longtail

    plan = plan_for(digits_longtail()[0], args.images)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generator = make_generator(tmp / "generator", model_size=args.model_size,
                                   resolution=args.resolution, channels=1,
                                   class_names=plan.class_names)
        for threads in (1, args.threads) if args.threads else (1,):
            label = f"single process, {threads} thread(s)"
            torch.set_num_threads(threads)
            results.append({"run": label, **run(plan, generator, tmp / label, args=args)})
        ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False)
        try:
            for workers in (1, 2):
                label = f"ray, {workers} worker(s) of 1 CPU"
                results.append({"run": label, **run(plan, generator, tmp / label, args=args,
                                                    ray_workers=workers)})
        finally:
            ray.shutdown()
        reference = results[0]
        expected = cache_files(tmp / reference["run"])
        for result in results:
            result["ratio_to_1_thread"] = round(
                result["images_per_second"] / reference["images_per_second"], 2)
            if result["run"].startswith("ray"):
                result["same_cache"] = cache_files(tmp / result["run"]) == expected
    setting = (f"{args.model_size} UNet, {args.resolution}px, ddim {args.steps} steps, batch "
               f"{args.batch_size}, {plan.total_to_generate} planned images, "
               f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for result in results:
        result["setting"] = setting
        print(json.dumps(result) if args.json else
              f"{result['run']}: {result['images']} images in {result['seconds']:.1f} s = "
              f"{result['images_per_second']:.1f} images/s = {result['ratio_to_1_thread']:.2f}x"
              + (f", same cache: {result['same_cache']}" if "same_cache" in result else ""))
    if not args.json:
        print(setting)
    return results


if __name__ == "__main__":
    main()
