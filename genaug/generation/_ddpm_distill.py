"""Progressive distillation of a fitted DDPM into a few-step DDIM sampler.

Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models" (2022): a
student, initialised from the teacher, learns to make in one DDIM step what the teacher makes
in two; the student becomes the next round's teacher, so each round halves the step count.
The student predicts the velocity ``v`` whatever the teacher predicts (a noise prediction
cannot give the clean image at the first, nearly pure-noise step of a few-step sampler), and
its loss is the squared error of its clean-image estimate against the one that reproduces the
teacher's two steps, weighted by the truncated SNR ``max(alpha^2 / sigma^2, 1)``.

A teacher trained with label dropout samples with classifier-free guidance; the first round
then distils the guided teacher (both passes per teacher step, Meng et al., "On Distillation of
Guided Diffusion Models", 2023) at the one guidance scale genaug samples it with, so the
student needs one UNet pass per step and no "no class" branch. Meng et al. also condition the
student on the guidance scale to keep it adjustable; genaug samples a generator at one scale,
so that input is left out and the scale is recorded in the metadata.

No maintained library holds this procedure (diffusers' examples distil Stable Diffusion into
latent consistency models); the schedules, the DDIM grid and the UNet are diffusers'.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genaug.exceptions import ConfigError, DatasetError
from genaug.generation._ddpm_fit import load_training_images
from genaug.generation._ddpm_model import (
    build_sampler,
    build_train_scheduler,
    load_generator,
    save_generator,
)
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

#: The DDIM step count of a fitted (not yet distilled) teacher, which the first round halves:
#: DDIM at 64 steps is close to the fitted model's own quality on a cosine schedule.
TEACHER_STEPS = 64
#: The parameterisation every distilled student predicts (diffusers' name).
STUDENT_PREDICTION = "v_prediction"


@dataclass
class DistillResult(TrainingResult):
    """What :func:`distill_generator` did (``steps``: optimisation steps over all rounds)."""

    teacher: Path
    sampling_steps: int
    rounds: int

    def describe(self) -> str:
        return (f"distilled {self.teacher} into a {self.sampling_steps}-step DDIM sampler in "
                f"{self.rounds} round(s), {self._run_text()}; saved to {self.path}")


def _power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


def distill_generator(
    teacher,
    *,
    out_dir,
    steps: int,
    teacher_steps: int | None = None,
    data=None,
    guidance_scale: float | None = None,
    max_steps: int | None = 1000,
    max_seconds: float | None = None,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    seed: int = 0,
    device=None,
    precision: str = "auto",
    progress: bool = True,
    log_every: int = 25,
) -> DistillResult:
    """Distil a ``genaug fit-generator`` directory into a ``steps``-step DDIM sampler.

    The result is a generator directory of the same format whose default sampling (recorded
    in its metadata) is DDIM at ``steps`` steps without guidance, so ``genaug generate``, the
    live producer and Ray use it as it is.

    Parameters
    ----------
    teacher : path-like
        A generator directory (a fitted one, or a distilled one to halve further).
    out_dir : path-like
        The distilled generator's directory (replaced atomically when it exists).
    steps : int
        Sampling steps of the result: a power of two below ``teacher_steps``.
    teacher_steps : int, optional
        DDIM steps of the teacher that the first round halves (a power of two; default 64).
        A distilled teacher's is its own step count.
    data : path-like or DatasetIndex, optional
        The teacher's training images (default: the folder its ``train_config.json`` names).
        Classes are drawn equally often, so rare classes are distilled as well as common ones.
    guidance_scale : float, optional
        Guidance of the teacher to distil (default: the teacher's default sampling guidance,
        2.0 for a teacher fitted with label dropout).
    max_steps : int, optional
        Optimisation steps per round (default 1000).
    max_seconds : float, optional
        Time for all rounds together, shared equally; whichever budget ends a round first.
    batch_size : int, default 32
    learning_rate : float, default 1e-4
        AdamW; decays linearly to zero over each round's budget.
    seed : int, default 0
    device, precision
        As for :func:`~genaug.generation.fit_generator`.
    progress : bool, default True
    log_every : int, default 25

    Returns
    -------
    DistillResult
    """
    run = _DistillRun(teacher, out_dir=out_dir, steps=steps, teacher_steps=teacher_steps,
                      data=data, guidance_scale=guidance_scale, max_steps=max_steps,
                      max_seconds=max_seconds, batch_size=batch_size,
                      learning_rate=learning_rate, seed=seed, device=device,
                      precision=precision, progress=progress, log_every=log_every)
    return run()


def x0_and_noise(output, z, alpha_bar, prediction_type: str):
    """The clean image (clipped to [-1, 1]) and the noise a UNet ``output`` implies for the
    noisy ``z`` at ``alpha_bar``, as diffusers' DDIM step derives them."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        x0, noise = (z - s * output) / a, output
    else:
        x0, noise = a * z - s * output, a * output + s * z
    return x0.clamp(-1, 1), noise


def ddim_step(x0, noise, alpha_bar_next):
    """Deterministic DDIM (eta 0) to ``alpha_bar_next`` from a clean image and a noise."""
    return alpha_bar_next.sqrt() * x0 + (1 - alpha_bar_next).sqrt() * noise


def student_target(z, z_next, alpha_bar, alpha_bar_next):
    """The clean image whose one DDIM step from ``z`` lands on ``z_next`` (the teacher's
    two steps): ``(z_next - sigma'/sigma z) / (alpha' - sigma'/sigma alpha)``."""
    ratio = ((1 - alpha_bar_next) / (1 - alpha_bar)).sqrt()
    return (z_next - ratio * z) / (alpha_bar_next.sqrt() - ratio * alpha_bar.sqrt())


def ddim_grid(schedule_config, steps: int):
    """The timesteps ``t`` of diffusers' DDIM sampler at ``steps`` steps (trailing), where each
    of its steps lands (``t - T // steps``; -1 is the clean image) and the midpoint the
    teacher's first step of two lands on (``t - T // (2 steps)``), as int64 tensors."""
    sampler = build_sampler(schedule_config, "ddim")
    sampler.set_timesteps(steps)
    timesteps, total = sampler.timesteps, int(schedule_config["num_train_timesteps"])
    return timesteps, timesteps - total // (2 * steps), timesteps - total // steps


class _DistillRun:
    """One :func:`distill_generator` call; :meth:`__call__` lists its steps and
    :meth:`_step` is one optimisation step of a round."""

    def __init__(self, teacher, *, out_dir, steps, teacher_steps, data, guidance_scale,
                 max_steps, max_seconds, batch_size, learning_rate, seed, device, precision,
                 progress, log_every):
        check_budget(max_steps, max_seconds)
        if not _power_of_two(steps):
            raise ConfigError(f"`steps` must be a power of two (1, 2, 4, 8, ...), got {steps}")
        if teacher_steps is not None and not _power_of_two(teacher_steps):
            raise ConfigError(f"`teacher_steps` must be a power of two, got {teacher_steps}")
        if batch_size < 1:
            raise ConfigError(f"`batch_size` must be at least 1, got {batch_size}")
        if not learning_rate > 0:
            raise ConfigError(f"`learning_rate` must be positive, got {learning_rate}")
        if guidance_scale is not None and guidance_scale < 0:
            raise ConfigError(f"`guidance_scale` must be at least 0, got {guidance_scale}")
        self.teacher_path, self.out_dir, self.steps = Path(teacher), out_dir, int(steps)
        self.teacher_steps, self.data, self.guidance_arg = teacher_steps, data, guidance_scale
        self.max_steps, self.max_seconds, self.batch_size = max_steps, max_seconds, batch_size
        self.learning_rate, self.seed, self.device = learning_rate, seed, device
        self.precision, self.progress, self.log_every = precision, progress, log_every

    def __call__(self) -> DistillResult:
        require_generation_extras()
        offline_hub()
        quiet_diffusers()
        # 1. Load the teacher and decide the rounds and the guidance to distil.
        self._load_teacher()
        # 2. Read its training images, noised at the student's timesteps in each step.
        self._load_data()
        # 3. Halve the step count round by round, the student becoming the next teacher.
        self._distil()
        # 4. Save the last student with its sampling defaults and the distillation's record.
        return self._save()

    # -- 1. teacher --------------------------------------------------------------------------
    def _load_teacher(self) -> None:

        from genaug.generation._backends import backend_kind

        if backend_kind(self.teacher_path) != "ddpm":
            raise ConfigError(f"{self.teacher_path} is not a genaug DDPM generator; "
                              "distill-generator distils `genaug fit-generator` directories")
        self.device = resolve_device(self.device)
        self.dtype = resolve_dtype(self.device, self.precision)
        self.precision_name = precision_name(self.dtype)
        self.teacher = load_generator(self.teacher_path, device=self.device)
        meta, sampling = self.teacher.meta, self.teacher.sampling
        if "distillation" in meta:
            own = int(sampling["steps"])
            if self.teacher_steps not in (None, own):
                raise ConfigError(f"{self.teacher_path} was distilled to {own} steps; its "
                                  f"`teacher_steps` cannot be {self.teacher_steps}")
            self.teacher_steps = own
        self.teacher_steps = int(self.teacher_steps or TEACHER_STEPS)
        if self.steps >= self.teacher_steps:
            raise ConfigError(f"`steps` ({self.steps}) must be fewer than the teacher's "
                              f"{self.teacher_steps} DDIM steps")
        self.guidance = float(sampling["guidance_scale"] if self.guidance_arg is None
                              else self.guidance_arg)
        if self.guidance != 1.0 and (not meta.get("label_dropout") or "distillation" in meta):
            raise ConfigError(f"{self.teacher_path} cannot be sampled with guidance "
                              f"{self.guidance:g} (no label dropout, or guidance already "
                              "distilled in); use guidance_scale=1")
        self.rounds = (self.teacher_steps // self.steps).bit_length() - 1
        self.teacher_prediction = self.teacher.train_scheduler_config.get(
            "prediction_type", "epsilon")
        self.num_train_timesteps = int(
            self.teacher.train_scheduler_config["num_train_timesteps"])

    # -- 2. data -----------------------------------------------------------------------------
    def _load_data(self) -> None:
        import torch

        from genaug.data import DatasetIndex

        data = self.data if self.data is not None else self.teacher.train_config.get("data")
        if data is None:
            raise ConfigError(f"{self.teacher_path} names no training images; give `data`")
        if not isinstance(data, DatasetIndex) and not Path(data).exists():
            raise ConfigError(f"the teacher's training images {data} are not there; give "
                              "`data`")
        names = list(self.teacher.class_names)
        index = data if isinstance(data, DatasetIndex) else DatasetIndex.load(
            data, class_names=names, validate=True)
        if list(index.class_names) != names:
            raise DatasetError(f"the data's classes ({', '.join(index.class_names)}) are not "
                               f"the teacher's ({', '.join(names)})")
        if len(index) == 0:
            raise DatasetError("no usable images to distil the generator on")
        meta = self.teacher.meta
        self.index = index
        images = load_training_images(index, resolution=int(meta["resolution"]),
                                      color_mode=meta["color_mode"])
        labels = np.asarray(index.labels, dtype=np.int64)
        counts = np.bincount(labels, minlength=len(names))
        torch.manual_seed(self.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.data_t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.labels_t = torch.from_numpy(labels).to(self.device)
        self.draw_weights = torch.from_numpy(1.0 / counts[labels]).to(self.device)
        self.hflip = bool(self.teacher.train_config.get("hflip", False))

    # -- 3. rounds ---------------------------------------------------------------------------
    def _distil(self) -> None:
        schedule = build_train_scheduler(self.num_train_timesteps,
                                         prediction_type=STUDENT_PREDICTION)
        self.alphas = schedule.alphas_cumprod.to(self.device)
        self.sampler_config = schedule.config
        teacher_unet = self.teacher.unet
        student = copy.deepcopy(teacher_unet).requires_grad_(True).train()
        self.records, self.logs, self.total_steps, self.seconds = [], [], 0, 0.0
        self.interrupted = False
        round_seconds = None if self.max_seconds is None else self.max_seconds / self.rounds
        student_steps = self.teacher_steps
        for number in range(1, self.rounds + 1):
            student_steps //= 2
            self._begin_round(teacher_unet, student, student_steps, round_seconds,
                              first=number == 1)
            try:
                loop = train_steps(self._interruptible_step, max_steps=self.max_steps,
                                   max_seconds=round_seconds, batch_size=self.batch_size,
                                   learning_rate=self._current_lr, log_every=self.log_every,
                                   desc=f"distil {2 * student_steps}->{student_steps} steps",
                                   progress=self.progress)
            except ConfigError:
                if not (self.interrupted and number > 1):
                    raise
                # Ctrl-C before this round's first step: keep the last round's student
                student = teacher_unet
                break
            self.total_steps += loop.steps
            self.seconds += loop.seconds
            self.records.append({"round": number, "teacher_steps": 2 * student_steps,
                                 "steps": student_steps, "optimisation_steps": loop.steps,
                                 "seconds": round(loop.seconds, 2),
                                 "final_loss": loop.final_loss})
            self.logs.append((number, student_steps, loop.loss_log))
            self.last_loss, self.sampling_steps = loop.last_loss, student_steps
            if loop.interrupted:
                break
            teacher_unet = copy.deepcopy(student).requires_grad_(False).eval()
        self.student, self.teacher.unet, self.teacher_unet = student, None, None

    def _begin_round(self, teacher_unet, student, student_steps: int, round_seconds,
                     *, first: bool) -> None:
        import torch

        self.grid = [part.to(self.device)
                     for part in ddim_grid(self.sampler_config, student_steps)]
        self.teacher_unet, self.student_unet = teacher_unet, student
        self.round_prediction = self.teacher_prediction if first else STUDENT_PREDICTION
        self.round_guidance = self.guidance if first else 1.0
        self.optimizer = torch.optim.AdamW(student.parameters(), lr=self.learning_rate,
                                           weight_decay=0.0)
        self.round_start, self.round_seconds = time.perf_counter(), round_seconds
        self.round_step, self.lr = 0, self.learning_rate

    def _interruptible_step(self):
        """:meth:`_step`, remembering a Ctrl-C (the loop turns one before a round's first
        step into an error)."""
        try:
            return self._step()
        except KeyboardInterrupt:
            self.interrupted = True
            raise

    def _current_lr(self) -> float:
        return self.lr

    def _alpha(self, t):
        """The cumulative alpha at ``t``; 1 at ``t = -1`` (the clean image, as DDIM's
        ``set_alpha_to_one``)."""
        import torch

        return torch.where(t >= 0, self.alphas[t.clamp(min=0)], torch.ones_like(t,
                           dtype=self.alphas.dtype)).view(-1, 1, 1, 1)

    def _teacher(self, z, t, labels):
        """The teacher's clean image and noise at ``z``, guided in the first round."""
        import torch

        with torch.no_grad(), self._autocast():
            if self.round_guidance == 1.0:
                out = self.teacher_unet(z, t, class_labels=labels).sample
            else:
                null = torch.full_like(labels, self.teacher.null_label)
                cond, uncond = self.teacher_unet(torch.cat([z, z]), torch.cat([t, t]),
                                                 class_labels=torch.cat([labels, null])
                                                 ).sample.chunk(2)
                out = uncond + self.round_guidance * (cond - uncond)
        return x0_and_noise(out.float(), z, self._alpha(t), self.round_prediction)

    def _autocast(self):
        import torch

        return torch.autocast(device_type=self.device.split(":")[0], dtype=self.dtype,
                              enabled=self.dtype != torch.float32)

    def _step(self):
        """One optimisation step: two teacher DDIM steps, one student step to match them."""
        import torch

        gen, device, batch = self.generator, self.device, self.batch_size
        # 1. A class-balanced batch of real images, flipped as the teacher was trained.
        idx = torch.multinomial(self.draw_weights, batch, replacement=True, generator=gen)
        x = self.data_t[idx].float().div_(127.5).sub_(1.0)
        if self.hflip:
            flip = torch.rand(batch, generator=gen, device=device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        labels = self.labels_t[idx]
        # 2. Noise them at a timestep of the student's grid.
        where = torch.randint(0, len(self.grid[0]), (batch,), generator=gen, device=device)
        t, t_mid, t_next = (part[where] for part in self.grid)
        alpha, alpha_mid, alpha_next = self._alpha(t), self._alpha(t_mid), self._alpha(t_next)
        z = alpha.sqrt() * x + (1 - alpha).sqrt() * torch.randn(x.shape, generator=gen,
                                                                device=device)
        # 3. Two teacher steps t -> t_mid -> t_next, and the clean image that makes them one.
        z_mid = ddim_step(*self._teacher(z, t, labels), alpha_mid)
        z_next = ddim_step(*self._teacher(z_mid, t_mid, labels), alpha_next)
        target = student_target(z, z_next, alpha, alpha_next)
        # 4. The student's clean image from its velocity, truncated-SNR weighted.
        with self._autocast():
            v = self.student_unet(z, t, class_labels=labels).sample
        estimate = alpha.sqrt() * z - (1 - alpha).sqrt() * v.float()
        weight = torch.clamp(alpha / (1 - alpha), min=1.0).view(-1)
        loss = (weight * (estimate - target).pow(2).mean(dim=(1, 2, 3))).mean()
        # 5. Update, with the rate decaying linearly to zero over the round's budget.
        self.round_step += 1
        done = [self.round_step / self.max_steps if self.max_steps else 0.0]
        if self.round_seconds:
            done.append((time.perf_counter() - self.round_start) / self.round_seconds)
        self.lr = self.learning_rate * max(0.0, 1.0 - max(done))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student_unet.parameters(), 1.0)
        self.optimizer.step()
        return loss.detach()

    # -- 4. save -----------------------------------------------------------------------------
    def _save(self) -> DistillResult:
        import torch

        self.student.to("cpu", dtype=torch.float32).eval()
        teacher = self.teacher
        kept = {k: v for k, v in teacher.meta.items()
                if k not in ("format", "backend", "null_label")}
        distillation = {
            "method": "progressive distillation (Salimans & Ho 2022), guided teacher "
                      "distilled in the first round (Meng et al. 2023)",
            "teacher": str(teacher.path), "teacher_hash": teacher.model_hash,
            "teacher_steps": self.teacher_steps, "steps": self.sampling_steps,
            "rounds": len(self.records), "rounds_planned": self.rounds,
            "guidance_scale": self.guidance, "teacher_prediction_type": self.teacher_prediction,
            "loss_weighting": "truncated SNR, max(alpha^2 / sigma^2, 1), on the clean image",
            "optimisation_steps": self.total_steps, "seconds": round(self.seconds, 2),
            "losses": [r["final_loss"] for r in self.records], "per_round": self.records,
        }
        meta = {**kept, "prediction_type": STUDENT_PREDICTION,
                "sampling": {"sampler": "ddim", "steps": self.sampling_steps,
                             "guidance_scale": 1.0},
                "distillation": distillation, "steps": self.total_steps,
                "seconds": round(self.seconds, 2),
                "final_loss": distillation["losses"][-1], "interrupted": self.interrupted,
                "versions": package_versions(), "trained_on": device_report(self.device)}
        options = {"teacher": str(teacher.path), "steps": self.steps,
                   "teacher_steps": self.teacher_steps, "guidance_scale": self.guidance,
                   "data": None if self.index.root is None else str(self.index.root),
                   "max_steps_per_round": self.max_steps, "max_seconds": self.max_seconds,
                   "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                   "lr_schedule": "linear to zero per round", "optimizer": "AdamW",
                   "grad_clip": 1.0, "class_balanced": True, "hflip": self.hflip,
                   "seed": self.seed, "device": self.device, "precision": self.precision_name}
        train_config = {**teacher.train_config, "prediction_type": STUDENT_PREDICTION,
                        "distillation": options}
        log = "round,sampling_steps," + self.logs[0][2].splitlines()[0] + "\n"
        for number, steps, text in self.logs:
            log += "".join(f"{number},{steps},{row}\n" for row in text.splitlines()[1:])
        schedule = build_train_scheduler(self.num_train_timesteps,
                                         prediction_type=STUDENT_PREDICTION)
        path = save_generator(self.out_dir, unet=self.student, scheduler=schedule,
                              class_names=teacher.class_names, meta=meta,
                              train_config=train_config, loss_log=log)
        return DistillResult(path=Path(path), steps=self.total_steps, seconds=self.seconds,
                             final_loss=self.last_loss, device=self.device,
                             precision=self.precision_name, interrupted=self.interrupted,
                             teacher=teacher.path, sampling_steps=self.sampling_steps,
                             rounds=len(self.records))
