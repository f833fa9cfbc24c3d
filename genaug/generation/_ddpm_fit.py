"""Training the class-conditional DDPM on the user's own images (no pretrained weights)."""

from __future__ import annotations

import io
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genaug.exceptions import ConfigError, DatasetError
from genaug.generation._ddpm_model import (
    MODEL_SIZES,
    build_train_scheduler,
    build_unet,
    save_generator,
)
from genaug.generation._sanity import class_pixel_statistics
from genaug.generation._utils import (
    device_report,
    offline_hub,
    package_versions,
    progress_bar,
    quiet_diffusers,
    require_generation_extras,
    resolve_device,
    resolve_dtype,
)

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass
class FitResult:
    """What :func:`fit_generator` did."""

    path: Path
    steps: int
    seconds: float
    final_loss: float
    device: str
    precision: str
    parameters: int
    interrupted: bool

    def describe(self) -> str:
        stop = " (interrupted)" if self.interrupted else ""
        return (f"trained {self.parameters / 1e6:.2f}M-parameter UNet for {self.steps} steps in "
                f"{self.seconds:.0f} s on {self.device} ({self.precision}){stop}; "
                f"final loss {self.final_loss:.4f}; saved to {self.path}")


def infer_color_mode(index) -> str:
    """``grayscale`` when most real images are single-channel, else ``rgb``."""
    modes = Counter(index.modes or ())
    if not modes:
        return "rgb"
    gray = sum(n for mode, n in modes.items() if mode in GRAY_MODES)
    return "grayscale" if gray * 2 > sum(modes.values()) else "rgb"


def load_training_images(index, *, resolution: int, color_mode: str) -> np.ndarray:
    """All images of ``index`` decoded to uint8 (N, resolution, resolution, C)."""
    from genaug.data import load_image

    def one(path):
        return load_image(path, image_size=(resolution, resolution), color_mode=color_mode,
                          interpolation="area")

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return np.stack(list(pool.map(one, index.paths, chunksize=64)))


def fit_generator(
    data,
    *,
    out_dir,
    class_names=None,
    resolution: int = 32,
    color_mode: str = "auto",
    model_size: str = "base",
    max_steps: int | None = 5000,
    max_seconds: float | None = None,
    batch_size: int = 64,
    learning_rate: float = 2e-4,
    warmup_steps: int | None = None,
    label_dropout: float = 0.1,
    hflip: bool = True,
    ema_decay: float = 0.9995,
    seed: int = 0,
    device=None,
    precision: str = "auto",
    progress: bool = True,
    log_every: int = 25,
) -> FitResult:
    """Train a class-conditional DDPM on ``data`` and save it to ``out_dir``.

    Parameters
    ----------
    data : path-like or DatasetIndex
        Real images (class folders or a CSV manifest).
    out_dir : path-like
        Generator directory to write (replaced atomically when it exists).
    resolution : int, default 32
        Training and sampling size (square); 32 or 64 are the usual choices.
    color_mode : {"auto", "grayscale", "rgb"}
    model_size : {"tiny", "small", "base"}
        ``base`` is the 25M-parameter UNet (64/128/256/256, attention at 8x8).
    max_steps, max_seconds : optional
        Stop at whichever comes first (at least one is required).
    batch_size : int, default 64
    learning_rate : float, default 2e-4
        AdamW, linear warm-up over ``warmup_steps`` (default: 10 % of the steps, at most 500).
    label_dropout : float, default 0.1
        Share of labels replaced by "no class", which makes classifier-free guidance possible.
    hflip : bool, default True
        Random horizontal flips (turn off when mirroring changes the class, e.g. digits).
    ema_decay : float, default 0.9995
        Upper bound of the EMA decay (with warm-up, so short runs still average sensibly).
    seed : int, default 0
    device : str, optional
        ``cuda`` when available (bf16, or fp16 with loss scaling), else ``cpu`` (fp32).
    precision : {"auto", "fp32", "bf16", "fp16"}
    progress : bool
        Show a progress bar with the running loss.

    Returns
    -------
    FitResult
    """
    require_generation_extras()
    offline_hub()
    quiet_diffusers()
    import torch
    import torch.nn.functional as F
    from diffusers.training_utils import EMAModel

    from genaug.data import DatasetIndex

    if max_steps is None and max_seconds is None:
        raise ConfigError("give `max_steps` or `max_seconds` (or both)")
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"`max_steps` must be at least 1, got {max_steps}")
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be at least 1, got {batch_size}")
    if not 0.0 <= label_dropout < 1.0:
        raise ConfigError(f"label dropout must be in [0, 1), got {label_dropout}")
    if model_size not in MODEL_SIZES:
        raise ConfigError(f"`model_size` must be one of {', '.join(MODEL_SIZES)}")
    if color_mode not in ("auto", "grayscale", "rgb"):
        raise ConfigError(f"`color_mode` must be auto, grayscale or rgb, got {color_mode!r}")

    index = data if isinstance(data, DatasetIndex) else DatasetIndex.load(
        data, class_names=class_names, validate=True)
    if len(index) == 0:
        raise DatasetError("no usable images to train the generator on")
    if color_mode == "auto":
        color_mode = infer_color_mode(index)
    channels = 1 if color_mode == "grayscale" else 3
    device = resolve_device(device)
    dtype = resolve_dtype(device, precision)
    amp = dtype != torch.float32
    precision_name = {torch.float32: "fp32", torch.bfloat16: "bf16",
                      torch.float16: "fp16"}[dtype]

    torch.manual_seed(seed)
    images = load_training_images(index, resolution=resolution, color_mode=color_mode)
    labels = np.asarray(index.labels, dtype=np.int64)
    class_names = tuple(index.class_names)
    counts = {name: int(n) for name, n in zip(class_names, index.counts())}
    null_label = len(class_names)

    unet = build_unet(num_classes=len(class_names), resolution=resolution, channels=channels,
                      model_size=model_size)
    n_params = sum(p.numel() for p in unet.parameters())
    scheduler = build_train_scheduler()
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if device.startswith("cuda") else torch.contiguous_format
    unet.to(device, memory_format=memory_format).train()
    cuda = device.startswith("cuda")
    ema = EMAModel(unet.parameters(), decay=ema_decay, use_ema_warmup=True, power=3 / 4,
                   foreach=cuda)
    ema.to(device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=learning_rate, weight_decay=0.0,
                                  fused=cuda)
    planned = max_steps if max_steps is not None else 10**9
    warmup = warmup_steps if warmup_steps is not None else min(500, max(1, planned // 10))
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)))
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    # Data, batch order, flips and label dropout all live on the device: a step copies
    # nothing from the host, so the GPU never waits for Python between steps.
    data_t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    labels_t = torch.from_numpy(labels).to(device)
    noise_gen = torch.Generator(device=device).manual_seed(seed)
    n_images = len(images)
    alphas = scheduler.alphas_cumprod.to(device)
    timesteps_total = scheduler.config.num_train_timesteps

    train_config = {
        "data": None if index.root is None else str(index.root),
        "class_names": list(class_names), "class_counts": counts, "images": len(index),
        "resolution": resolution, "color_mode": color_mode, "model_size": model_size,
        "block_out_channels": list(unet.config.block_out_channels),
        "layers_per_block": unet.config.layers_per_block, "parameters": n_params,
        "max_steps": max_steps, "max_seconds": max_seconds, "batch_size": batch_size,
        "learning_rate": learning_rate, "warmup_steps": warmup, "label_dropout": label_dropout,
        "hflip": hflip, "ema_decay": ema_decay, "seed": seed, "device": device,
        "precision": precision_name, "noise_schedule": "squaredcos_cap_v2 (cosine)",
        "prediction_type": "epsilon", "num_train_timesteps": timesteps_total,
        "optimizer": "AdamW", "grad_clip": 1.0,
    }

    log = io.StringIO()
    log.write("step,loss,lr,seconds,images_seen\n")
    order, cursor = torch.randperm(n_images, generator=noise_gen, device=device), 0
    step, losses, last_loss = 0, [], float("nan")
    interrupted = False
    start = time.perf_counter()
    bar = progress_bar(total=max_steps, desc="fit-generator", unit="step", enabled=progress)
    try:
        while max_steps is None or step < max_steps:
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            if batch_size > n_images:  # dataset smaller than a batch: sample with replacement
                idx = torch.randint(0, n_images, (batch_size,), generator=noise_gen,
                                    device=device)
            else:
                if cursor + batch_size > n_images:
                    order, cursor = torch.randperm(n_images, generator=noise_gen,
                                                   device=device), 0
                idx = order[cursor:cursor + batch_size]
                cursor += batch_size
            x0 = data_t[idx].float().div_(127.5).sub_(1.0)
            if hflip:
                flip = torch.rand(batch_size, generator=noise_gen, device=device) < 0.5
                x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
            y = labels_t[idx]
            if label_dropout > 0:
                drop = torch.rand(batch_size, generator=noise_gen, device=device) < label_dropout
                y = torch.where(drop, torch.full_like(y, null_label), y)
            x0 = x0.contiguous(memory_format=memory_format)
            noise = torch.randn(x0.shape, generator=noise_gen, device=device)
            t = torch.randint(0, timesteps_total, (batch_size,), generator=noise_gen,
                              device=device)
            a = alphas[t].view(-1, 1, 1, 1)
            noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
            with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=amp):
                prediction = unet(noisy, t, class_labels=y).sample
            loss = F.mse_loss(prediction.float(), noise)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            lr_schedule.step()
            ema.step(unet.parameters())
            step += 1
            losses.append(loss.detach())
            if step % log_every == 0 or step == max_steps:
                last_loss = float(torch.stack(losses).mean())  # the step's only host sync
                losses = []
                if not math.isfinite(last_loss):
                    raise ConfigError(f"training diverged before step {step} (loss "
                                      f"{last_loss}); lower `learning_rate`")
                elapsed = time.perf_counter() - start
                log.write(f"{step},{last_loss:.6f},{lr_schedule.get_last_lr()[0]:.3e},"
                          f"{elapsed:.2f},{step * batch_size}\n")
                bar.set_postfix(loss=f"{last_loss:.4f}")
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if losses:
        last_loss = float(torch.stack(losses).mean())
        elapsed = time.perf_counter() - start
        log.write(f"{step},{last_loss:.6f},{lr_schedule.get_last_lr()[0]:.3e},{elapsed:.2f},"
                  f"{step * batch_size}\n")
    seconds = time.perf_counter() - start
    if step == 0:
        raise ConfigError("training stopped before the first step; nothing was saved")

    ema.copy_to(unet.parameters())
    unet.to("cpu", dtype=torch.float32, memory_format=torch.contiguous_format).eval()
    meta = {
        "class_names": list(class_names),
        "class_counts": counts,
        "resolution": resolution,
        "color_mode": color_mode,
        "channels": channels,
        "label_dropout": label_dropout,
        "steps": step,
        "seconds": round(seconds, 2),
        "final_loss": last_loss,
        "interrupted": interrupted,
        "ema": True,
        "pixel_stats": class_pixel_statistics(images, labels, class_names),
        "versions": package_versions(),
        "trained_on": device_report(device),
    }
    path = save_generator(out_dir, unet=unet, scheduler=scheduler, class_names=class_names,
                          meta=meta, train_config=train_config, loss_log=log.getvalue())
    return FitResult(path=Path(path), steps=step, seconds=seconds,
                     final_loss=last_loss if math.isfinite(last_loss) else float("nan"),
                     device=device, precision=precision_name, parameters=n_params,
                     interrupted=interrupted)
