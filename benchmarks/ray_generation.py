"""Images per second of ``generate --ray`` with 1 and 2 workers, against the single process.

One plan, one generator (random weights in a real generator directory, tiny or small UNet)
and the same gates, run in this process as the whole ``generate_cache`` path three ways: in
this process with 1 torch thread (what one Ray worker runs; with ``--threads N``, also with N),
then on a local Ray instance with 1 and with 2 workers of 1 CPU each. Every backend is loaded
and samples one batch per worker first (process start, lazy initialisation: not counted);
then the runs take turns, ``--repeats`` times, each into a new cache. Printed: each run's
seconds, the images decided per second at the median, its ratio to the one-thread single
process, and whether every Ray cache holds the same ids and PNG bytes as that one.

    # CPU (a minute or two on a 2-core machine)
    python benchmarks/ray_generation.py --model-size tiny --images 64 --steps 10
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generation_throughput import make_generator, plan_for  # noqa: E402


def cache_files(cache: Path) -> dict[str, bytes]:
    """Each record's id and its PNG bytes."""
    from genaug.cache import SyntheticCache

    return {r["id"]: (cache / r["path"]).read_bytes() for r in SyntheticCache(cache).records}


def load(generator: Path, plan, *, args, ray_workers: int | None = None):
    """The backend, warmed up: one batch per worker (process start, lazy initialisation)."""
    from genaug.generation import GenerationRequest, load_backend

    placement = {} if ray_workers is None else {"ray": True, "ray_workers": ray_workers,
                                                 "ray_cpus_per_worker": 1}
    backend = load_backend(generator, device="cpu", steps=args.steps, sampler="ddim",
                           batch_size=args.batch_size, pixel_check=False, **placement)
    for worker in range(ray_workers or 1):
        backend.generate_batch([GenerationRequest(class_name=plan.class_names[0],
                                                  seed=10**7 + worker)])
    return backend


def run(plan, backend, cache: Path) -> tuple[int, float]:
    """One whole generate run into a new cache: (images decided, seconds)."""
    from genaug.generation import GateSpec, generate_cache

    started = time.perf_counter()
    # random weights make noise: thresholds it passes, so every gate still runs
    summary = generate_cache(plan, backend=backend, cache_dir=cache,
                             gates=GateSpec(blur_min=0.0, structure_min=-1.0), max_retries=1,
                             progress=False)
    seconds = time.perf_counter() - started
    return summary["totals"]["accepted"] + summary["totals"]["exhausted"], seconds


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-size", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--images", type=int, default=96, help="images the plan asks for")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int,
                        help="also run the single process with this many torch threads")
    parser.add_argument("--ray-cpus", type=int, default=3,
                        help="CPUs of the local Ray (both backends' workers stay loaded)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, taking turns")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # a one-machine cluster on the loopback interface (read when ray is imported)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    import torch

    from genaug.data._embedded import digits_longtail

    plan = plan_for(digits_longtail()[0], args.images)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generator = make_generator(tmp / "generator", model_size=args.model_size,
                                   resolution=args.resolution, channels=1,
                                   class_names=plan.class_names)
        # label -> (torch threads in this process, backend); all loaded before any timing
        runs = {f"single process, {t} thread(s)": (t, load(generator, plan, args=args))
                for t in ((1, args.threads) if args.threads else (1,))}
        ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False)
        try:
            for workers in (1, 2):
                runs[f"ray, {workers} worker(s) of 1 CPU"] = (
                    1, load(generator, plan, args=args, ray_workers=workers))
            # the runs take turns, so a change in the machine's load hits them all alike
            seconds = {label: [] for label in runs}
            for repeat in range(args.repeats):
                for label, (threads, backend) in runs.items():
                    torch.set_num_threads(threads)
                    images, took = run(plan, backend, tmp / f"{label} {repeat}")
                    seconds[label].append(took)
            for _, backend in runs.values():
                backend.close()
        finally:
            ray.shutdown()
        reference = next(iter(runs))
        expected = cache_files(tmp / f"{reference} 0")
        results = []
        for label, took in seconds.items():
            median = statistics.median(took)
            results.append({"run": label, "images": images, "seconds": [round(t, 2) for t in took],
                            "images_per_second": round(images / median, 2),
                            "ratio_to_1_thread": round(statistics.median(seconds[reference])
                                                       / median, 2)})
            if label.startswith("ray"):
                results[-1]["same_cache"] = all(cache_files(tmp / f"{label} {r}") == expected
                                                for r in range(args.repeats))
    setting = (f"{args.model_size} UNet, {args.resolution}px, ddim {args.steps} steps, batch "
               f"{args.batch_size}, {plan.total_to_generate} planned images, "
               f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for result in results:
        result["setting"] = setting
        print(json.dumps(result) if args.json else
              f"{result['run']}: {result['images']} images in "
              f"{'/'.join(f'{t:.1f}' for t in result['seconds'])} s, median "
              f"{result['images_per_second']:.1f} images/s = {result['ratio_to_1_thread']:.2f}x"
              + (f", same cache: {result['same_cache']}" if "same_cache" in result else ""))
    if not args.json:
        print(setting)
    return results


if __name__ == "__main__":
    main()
