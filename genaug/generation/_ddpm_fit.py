"""Training the class-conditional DDPM on the user's own images (no pretrained weights)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genaug.data import channels_of, infer_color_mode
from genaug.exceptions import ConfigError, DatasetError
from genaug.generation._ddpm_model import (
    MODEL_SIZES,
    PREDICTION_TYPES,
    build_train_scheduler,
    build_unet,
    save_generator,
)
from genaug.generation._sanity import class_pixel_statistics
from genaug.generation._train_loop import TrainingResult, check_budget, train_steps
from genaug.generation._utils import (
    device_report,
    offline_hub,
    precision_name,
    quiet_diffusers,
    require_generation_extras,
    resolve_device,
    resolve_dtype,
)
from genaug.io import package_versions

#: Learning-rate schedules after the linear warm-up: hold the rate, or decay it along a
#: half cosine to zero at ``max_steps`` (diffusers.optimization names in brackets).
LR_SCHEDULES = {"constant": "constant_with_warmup", "cosine": "cosine"}


@dataclass
class FitResult(TrainingResult):
    """What :func:`fit_generator` did."""

    parameters: int

    def describe(self) -> str:
        return (f"trained {self.parameters / 1e6:.2f}M-parameter UNet {self._run_text()}; "
                f"saved to {self.path}")


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
    prediction_type: str = "epsilon",
    snr_gamma: float | None = None,
    lr_schedule: str = "constant",
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
    prediction_type : {"epsilon", "v_prediction"}, default "epsilon"
        What the UNet learns to predict: the noise, or the velocity (Salimans & Ho 2022).
        Saved with the generator's scheduler, so sampling follows it.
    snr_gamma : float, optional
        Min-SNR-gamma loss weighting (Hang et al. 2023; 5.0 is the paper's choice): each
        timestep's loss is weighted by ``min(SNR, gamma) / SNR`` (``/ (SNR + 1)`` for
        v-prediction), so the many nearly noise-free timesteps stop dominating the
        gradient. None: the plain mean squared error.
    lr_schedule : {"constant", "cosine"}, default "constant"
        After the warm-up, hold the rate or decay it along a cosine to zero at
        ``max_steps`` (a time budget that stops earlier leaves the rate higher).
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
    run = _FitRun(data, out_dir=out_dir, class_names=class_names, resolution=resolution,
                  color_mode=color_mode, model_size=model_size, max_steps=max_steps,
                  max_seconds=max_seconds, batch_size=batch_size, learning_rate=learning_rate,
                  warmup_steps=warmup_steps, label_dropout=label_dropout, hflip=hflip,
                  ema_decay=ema_decay, prediction_type=prediction_type, snr_gamma=snr_gamma,
                  lr_schedule=lr_schedule, seed=seed, device=device, precision=precision,
                  progress=progress, log_every=log_every)
    return run()


class _FitRun:
    """One :func:`fit_generator` call; :meth:`__call__` lists its steps and :meth:`_step` is
    one optimisation step."""

    def __init__(self, data, *, out_dir, class_names, resolution: int, color_mode: str,
                 model_size: str, max_steps, max_seconds, batch_size: int,
                 learning_rate: float, warmup_steps, label_dropout: float, hflip: bool,
                 ema_decay: float, prediction_type: str, snr_gamma, lr_schedule: str,
                 seed: int, device, precision: str, progress: bool, log_every: int):
        check_budget(max_steps, max_seconds)
        if batch_size < 1:
            raise ConfigError(f"`batch_size` must be at least 1, got {batch_size}")
        if not 0.0 <= label_dropout < 1.0:
            raise ConfigError(f"`label_dropout` must be in [0, 1), got {label_dropout}")
        if model_size not in MODEL_SIZES:
            raise ConfigError(f"`model_size` must be one of {', '.join(MODEL_SIZES)}")
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"`prediction_type` must be one of {', '.join(PREDICTION_TYPES)}, "
                              f"got {prediction_type!r}")
        if snr_gamma is not None and not snr_gamma > 0:
            raise ConfigError(f"`snr_gamma` must be positive (or None), got {snr_gamma}")
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"`lr_schedule` must be one of {', '.join(LR_SCHEDULES)}, "
                              f"got {lr_schedule!r}")
        if color_mode not in ("auto", "grayscale", "rgb"):
            raise ConfigError(f"`color_mode` must be auto, grayscale or rgb, "
                              f"got {color_mode!r}")
        self.data, self.out_dir, self.class_names = data, out_dir, class_names
        self.resolution, self.color_mode, self.model_size = resolution, color_mode, model_size
        self.max_steps, self.max_seconds, self.batch_size = max_steps, max_seconds, batch_size
        self.learning_rate, self.warmup_steps = learning_rate, warmup_steps
        self.label_dropout, self.hflip, self.ema_decay = label_dropout, hflip, ema_decay
        self.prediction_type, self.snr_gamma = prediction_type, snr_gamma
        self.lr_schedule_name = lr_schedule
        self.seed, self.device, self.precision = seed, device, precision
        self.progress, self.log_every = progress, log_every

    def __call__(self) -> FitResult:
        require_generation_extras()
        offline_hub()
        quiet_diffusers()
        # 1. Read the images: class labels, colour mode, pixels at the training size.
        self._load_data()
        # 2. Build the UNet, its EMA, the optimiser and the warm-up schedule on the device.
        self._build_model()
        # 3. Train until max_steps, max_seconds or Ctrl-C, logging the loss.
        self._train()
        # 4. Save the EMA weights with the generator's metadata.
        return self._save()

    # -- 1. data -----------------------------------------------------------------------------
    def _load_data(self) -> None:
        import torch

        from genaug.data import DatasetIndex

        index = self.data if isinstance(self.data, DatasetIndex) else DatasetIndex.load(
            self.data, class_names=self.class_names, validate=True)
        if len(index) == 0:
            raise DatasetError("no usable images to train the generator on")
        if self.color_mode == "auto":
            self.color_mode = infer_color_mode(index)
        self.channels = channels_of(self.color_mode)
        self.device = resolve_device(self.device)
        self.dtype = resolve_dtype(self.device, self.precision)
        self.precision_name = precision_name(self.dtype)
        torch.manual_seed(self.seed)
        self.index = index
        self.images = load_training_images(index, resolution=self.resolution,
                                           color_mode=self.color_mode)
        self.labels = np.asarray(index.labels, dtype=np.int64)
        self.class_names = tuple(index.class_names)
        self.counts = {name: int(n) for name, n in zip(self.class_names, index.counts())}
        self.null_label = len(self.class_names)

    # -- 2. model ----------------------------------------------------------------------------
    def _build_model(self) -> None:
        import torch
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        device, cuda = self.device, self.device.startswith("cuda")
        self.unet = build_unet(num_classes=len(self.class_names), resolution=self.resolution,
                               channels=self.channels, model_size=self.model_size)
        self.n_params = sum(p.numel() for p in self.unet.parameters())
        self.scheduler = build_train_scheduler(prediction_type=self.prediction_type)
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.memory_format = torch.channels_last if cuda else torch.contiguous_format
        self.unet.to(device, memory_format=self.memory_format).train()
        self.ema = EMAModel(self.unet.parameters(), decay=self.ema_decay, use_ema_warmup=True,
                            power=3 / 4, foreach=cuda)
        self.ema.to(device)
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=self.learning_rate,
                                           weight_decay=0.0, fused=cuda)
        planned = self.max_steps if self.max_steps is not None else 10**9
        self.warmup = (self.warmup_steps if self.warmup_steps is not None
                       else min(500, max(1, planned // 10)))
        self.lr_schedule = get_scheduler(LR_SCHEDULES[self.lr_schedule_name], self.optimizer,
                                         num_warmup_steps=self.warmup,
                                         num_training_steps=planned)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        # Data, batch order, flips and label dropout all live on the device: a step copies
        # nothing from the host, so the GPU never waits for Python between steps.
        self.data_t = torch.from_numpy(self.images).permute(0, 3, 1, 2).contiguous().to(device)
        self.labels_t = torch.from_numpy(self.labels).to(device)
        self.noise_gen = torch.Generator(device=device).manual_seed(self.seed)
        # The schedule's table on the device once: the noising, the velocity target and the
        # SNR weights index it with device timesteps at every step.
        self.scheduler.alphas_cumprod = self.scheduler.alphas_cumprod.to(device)
        self.alphas = self.scheduler.alphas_cumprod
        self.timesteps_total = self.scheduler.config.num_train_timesteps

    # -- 3. training -------------------------------------------------------------------------
    def _train(self) -> None:
        import torch

        self.order = torch.randperm(len(self.images), generator=self.noise_gen,
                                    device=self.device)
        self.cursor = 0
        self.loop = train_steps(self._step, max_steps=self.max_steps,
                                max_seconds=self.max_seconds, batch_size=self.batch_size,
                                learning_rate=lambda: self.lr_schedule.get_last_lr()[0],
                                log_every=self.log_every, desc="fit-generator",
                                progress=self.progress)

    def _step(self):
        """One optimisation step; returns the loss as a device tensor."""
        import torch
        import torch.nn.functional as F

        n, device, batch = len(self.images), self.device, self.batch_size
        # 1. Draw the batch (with replacement when the data is smaller than a batch).
        if batch > n:
            idx = torch.randint(0, n, (batch,), generator=self.noise_gen, device=device)
        else:
            if self.cursor + batch > n:
                self.order = torch.randperm(n, generator=self.noise_gen, device=device)
                self.cursor = 0
            idx = self.order[self.cursor:self.cursor + batch]
            self.cursor += batch
        x0 = self.data_t[idx].float().div_(127.5).sub_(1.0)
        # 2. Flip and drop labels (the "no class" label enables classifier-free guidance).
        if self.hflip:
            flip = torch.rand(batch, generator=self.noise_gen, device=device) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        y = self.labels_t[idx]
        if self.label_dropout > 0:
            drop = (torch.rand(batch, generator=self.noise_gen, device=device)
                    < self.label_dropout)
            y = torch.where(drop, torch.full_like(y, self.null_label), y)
        # 3. Noise the images at random timesteps and predict the noise (or the velocity).
        x0 = x0.contiguous(memory_format=self.memory_format)
        noise = torch.randn(x0.shape, generator=self.noise_gen, device=device)
        t = torch.randint(0, self.timesteps_total, (batch,), generator=self.noise_gen,
                          device=device)
        a = self.alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(device_type=device.split(":")[0], dtype=self.dtype,
                            enabled=self.dtype != torch.float32):
            prediction = self.unet(noisy, t, class_labels=y).sample
        target = (noise if self.prediction_type == "epsilon"
                  else self.scheduler.get_velocity(x0, noise, t))
        loss = self._weighted_loss(F.mse_loss(prediction.float(), target, reduction="none"), t)
        # 4. Update the weights (clipped gradients), the learning rate and the EMA.
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_schedule.step()
        self.ema.step(self.unet.parameters())
        return loss.detach()

    def _weighted_loss(self, squared_error, t):
        """The mean squared error, each image's weighted by min-SNR-gamma when asked (the
        weights of diffusers' ``train_text_to_image.py --snr_gamma``)."""
        import torch
        from diffusers.training_utils import compute_snr

        per_image = squared_error.mean(dim=(1, 2, 3))
        if self.snr_gamma is None:
            return per_image.mean()
        snr = compute_snr(self.scheduler, t)
        weights = torch.clamp(snr, max=self.snr_gamma)
        weights = weights / (snr + 1 if self.prediction_type == "v_prediction" else snr)
        return (per_image * weights).mean()

    # -- 4. save -----------------------------------------------------------------------------
    def _save(self) -> FitResult:
        import torch

        self.ema.copy_to(self.unet.parameters())
        self.unet.to("cpu", dtype=torch.float32, memory_format=torch.contiguous_format).eval()
        index = self.index
        train_config = {
            "data": None if index.root is None else str(index.root),
            "class_names": list(self.class_names), "class_counts": self.counts,
            "images": len(index), "resolution": self.resolution,
            "color_mode": self.color_mode, "model_size": self.model_size,
            "block_out_channels": list(self.unet.config.block_out_channels),
            "layers_per_block": self.unet.config.layers_per_block,
            "parameters": self.n_params, "max_steps": self.max_steps,
            "max_seconds": self.max_seconds, "batch_size": self.batch_size,
            "learning_rate": self.learning_rate, "warmup_steps": self.warmup,
            "label_dropout": self.label_dropout, "hflip": self.hflip,
            "ema_decay": self.ema_decay, "seed": self.seed, "device": self.device,
            "precision": self.precision_name, "noise_schedule": "squaredcos_cap_v2 (cosine)",
            "prediction_type": self.prediction_type, "snr_gamma": self.snr_gamma,
            "lr_schedule": self.lr_schedule_name, "num_train_timesteps": self.timesteps_total,
            "optimizer": "AdamW", "grad_clip": 1.0,
        }
        meta = {
            "class_names": list(self.class_names),
            "class_counts": self.counts,
            "resolution": self.resolution,
            "color_mode": self.color_mode,
            "channels": self.channels,
            "label_dropout": self.label_dropout,
            "prediction_type": self.prediction_type,
            "snr_gamma": self.snr_gamma,
            "lr_schedule": self.lr_schedule_name,
            "steps": self.loop.steps,
            "seconds": round(self.loop.seconds, 2),
            "final_loss": self.loop.final_loss,
            "interrupted": self.loop.interrupted,
            "ema": True,
            "pixel_stats": class_pixel_statistics(self.images, self.labels, self.class_names),
            "versions": package_versions(),
            "trained_on": device_report(self.device),
        }
        path = save_generator(self.out_dir, unet=self.unet, scheduler=self.scheduler,
                              class_names=self.class_names, meta=meta,
                              train_config=train_config, loss_log=self.loop.loss_log)
        return FitResult(path=Path(path), steps=self.loop.steps, seconds=self.loop.seconds,
                         final_loss=self.loop.last_loss, device=self.device,
                         precision=self.precision_name, parameters=self.n_params,
                         interrupted=self.loop.interrupted)
