"""Images per second of the ddpm backend at 32 and 64 pixels.

The UNet has random weights (throughput does not depend on them) and is written as a real
generator directory, so the measured path is exactly ``DDPMBackend.generate_batch``:
per-image seeded noise, the sampler loop, classifier-free guidance when asked, uint8 output.

    # GPU: the 25M-parameter base UNet, 25 DDIM steps, bf16
    python benchmarks/generation_throughput.py --device cuda --model-size base
    # CPU smoke run (about a minute on 2 cores)
    python benchmarks/generation_throughput.py --device cpu --model-size tiny

Reference (untuned, H100, base UNet, 25 DDIM steps, bf16): about 110 images/s at 64x64 and
420 at 32x32.
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


def measure(args, resolution: int) -> dict:
    import torch

    from genaug.generation import GenerationRequest, load_backend

    with tempfile.TemporaryDirectory() as tmp:
        path = make_generator(Path(tmp) / "generator", model_size=args.model_size,
                              resolution=resolution, channels=args.channels,
                              num_classes=args.classes)
        backend = load_backend(path, device=args.device, precision=args.precision,
                               sampler=args.sampler, steps=args.steps,
                               guidance_scale=args.guidance_scale, batch_size=args.batch_size,
                               pixel_check=False, compile=args.compile)
        params = sum(p.numel() for p in backend.generator.unet.parameters())
        batch = backend.batch_size
        names = backend.class_names

        def requests(n, offset):
            return [GenerationRequest(class_name=names[i % len(names)], seed=offset + i)
                    for i in range(n)]

        backend.generate_batch(requests(min(batch, args.images), 10**6))  # warm-up
        if backend.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        made = 0
        while made < args.images:
            n = min(batch, args.images - made)
            backend.generate_batch(requests(n, made))
            made += n
        if backend.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        device_name = (torch.cuda.get_device_name() if backend.device.startswith("cuda")
                       else f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)")
        result = {
            "device": device_name, "model_size": args.model_size,
            "parameters_m": round(params / 1e6, 2), "resolution": resolution,
            "channels": args.channels, "sampler": args.sampler, "steps": args.steps,
            "guidance_scale": args.guidance_scale,
            "precision": str(backend.dtype).replace("torch.", ""), "batch_size": batch,
            "compile": args.compile, "images": made, "seconds": round(seconds, 3),
            "images_per_second": round(made / seconds, 2),
        }
        backend.close()
        return result


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model-size", choices=["tiny", "small", "base"],
                        help="default: base on CUDA, tiny on CPU")
    parser.add_argument("--resolutions", default="32,64")
    parser.add_argument("--channels", type=int, choices=[1, 3], default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--sampler", choices=["ddim", "dpm++"], default="ddim")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=1.0,
                        help="1.0: no classifier-free guidance (half the UNet work)")
    parser.add_argument("--batch-size", type=int, help="default: 512 on CUDA, 16 on CPU")
    parser.add_argument("--images", type=int, help="default: 4096 on CUDA, 32 on CPU")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                        default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet")
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
    results = []
    for resolution in (int(r) for r in args.resolutions.split(",")):
        result = measure(args, resolution)
        results.append(result)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['device']} | {result['model_size']} UNet "
                  f"({result['parameters_m']}M params) | {resolution}x{resolution}x"
                  f"{args.channels} | {args.sampler} {args.steps} steps | guidance "
                  f"{args.guidance_scale} | {result['precision']} | batch "
                  f"{result['batch_size']} | {result['images']} images in "
                  f"{result['seconds']:.2f} s = {result['images_per_second']:.1f} images/s")
    return results


if __name__ == "__main__":
    main()
