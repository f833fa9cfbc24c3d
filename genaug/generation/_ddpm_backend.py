"""Sampling the class-conditional DDPM: DPM-Solver++ or DDIM, classifier-free guidance."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from genaug.exceptions import ConfigError
from genaug.generation._base import (
    DEFAULT_VARIATION_STRENGTH,
    GeneratedImage,
    GenerationRequest,
    GeneratorBackend,
)
from genaug.generation._ddpm_model import (
    GENERATOR_META,
    LAMBDA_MIN_CLIPPED,
    SAMPLERS,
    build_sampler,
    load_generator,
)
from genaug.generation._noise_predictor import NoisePredictor, resolve_runtime
from genaug.generation._sanity import check_pixel_statistics
from genaug.generation._utils import (
    normalize_image,
    require_generation_extras,
    resolve_device,
    resolve_dtype,
)


class DDPMBackend(GeneratorBackend):
    """Generate from a directory written by ``genaug fit-generator``.

    Parameters
    ----------
    path : path-like
        The generator directory.
    device : str, optional
        ``cuda`` when available, else ``cpu``.
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``auto``: bf16 (fp16 without bf16 support) on CUDA, fp32 on CPU.
    sampler : {"dpm++", "dpm++3m", "unipc", "ddim"}, optional
        DPM-Solver++ 2M or 3M (with ``lambda_min_clipped``), UniPC or DDIM (see
        :func:`~genaug.generation._ddpm_model.build_sampler`). Default: the generator's own,
        ``"dpm++"`` unless it was distilled (``genaug distill-generator``: ``"ddim"``).
    steps : int, optional
        Default: the generator's own, 20 unless it was distilled (then its step count).
    guidance_scale : float, optional
        Classifier-free guidance; 1.0 turns it off (and halves the work). Default: 2.0, or
        1.0 for a distilled generator, whose guidance is built into its weights (another
        value is refused with a warning).
    strength : float, default DEFAULT_VARIATION_STRENGTH
        For variations of real images (requests with ``source_image``): how much noise is
        added to the real image before denoising it (SDEdit); 1.0 ignores the source.
    batch_size : int, optional
        Images per forward pass (default 256 on CUDA, 32 on CPU).
    pixel_check : bool, default True
        Compare the first generated batch's pixel statistics with the training data's and
        raise :class:`GenerationError` when it looks like noise.
    cuda_graph : bool, optional
        Replay each denoising step's UNet call as a CUDA graph captured per batch shape
        (default: on for CUDA unless compiling; refused on the CPU).
    compile : bool or {"default", "reduce-overhead"}, default False
        ``torch.compile`` the UNet (``True`` means ``"default"``; ``"reduce-overhead"`` adds
        CUDA graphs and needs CUDA; max-autotune is refused). Compiled kernels persist in
        ``compile_cache_dir``. Falls back to eager sampling, with a warning, where
        compilation fails.
    compile_cache_dir : path-like, optional
        Default ``$TORCHINDUCTOR_CACHE_DIR``, else ``~/.cache/genaug/torch-compile``.
    """

    backend_name = "ddpm"
    marker = GENERATOR_META
    marker_hint = (f"a genaug generator (no {GENERATOR_META}; train one with "
                   "`genaug fit-generator`)")
    supports_source_images = True

    def __init__(self, path, *, device=None, precision: str = "auto", sampler: str | None = None,
                 steps: int | None = None, guidance_scale: float | None = None,
                 strength: float = DEFAULT_VARIATION_STRENGTH,
                 batch_size: int | None = None, pixel_check: bool = True,
                 cuda_graph: bool | None = None, compile: bool | str = False,
                 compile_cache_dir=None, lambda_min_clipped: float = LAMBDA_MIN_CLIPPED):
        require_generation_extras()
        import torch

        if sampler is not None and sampler not in SAMPLERS:
            raise ConfigError(f"`sampler` must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if steps is not None and steps < 1:
            raise ConfigError(f"`steps` must be at least 1, got {steps}")
        device = resolve_device(device)
        self.generator = load_generator(path, device=device, dtype=resolve_dtype(device,
                                                                                 precision))
        defaults = self.generator.sampling
        self._init_sampling(device=device, precision=precision,
                            steps=defaults["steps"] if steps is None else steps,
                            strength=strength)
        compile_mode, graphs = resolve_runtime(self.device, cuda_graph=cuda_graph,
                                               compile=compile)
        self.unet = self.generator.unet
        if self.device.startswith("cuda"):
            self.unet.to(memory_format=torch.channels_last)
        meta = self.generator.meta
        self.sampler_name = sampler or defaults["sampler"]
        self.guidance_scale = float(defaults["guidance_scale"] if guidance_scale is None
                                    else guidance_scale)
        if self.guidance_scale != 1.0 and "distillation" in meta:
            warnings.warn(f"this generator was distilled with guidance "
                          f"{meta['distillation']['guidance_scale']:g} built in; using "
                          "guidance_scale=1.0", stacklevel=2)
            self.guidance_scale = 1.0
        elif self.guidance_scale != 1.0 and not meta.get("label_dropout"):
            warnings.warn("this generator was trained without label dropout, so classifier-free "
                          "guidance is not available; using guidance_scale=1.0", stacklevel=2)
            self.guidance_scale = 1.0
        self.lambda_min_clipped = float(lambda_min_clipped)
        self.batch_size = int(batch_size or (256 if self.device.startswith("cuda") else 32))
        self.predictor = NoisePredictor(self.unet, guidance_scale=self.guidance_scale,
                                        dtype=self.dtype, device=self.device,
                                        cuda_graph=graphs, compile=compile_mode,
                                        max_batch=self.batch_size,
                                        cache_dir=compile_cache_dir)
        self.pixel_check = bool(pixel_check)
        self._checked = False
        self.resolution = int(meta["resolution"])
        self.native_size = (self.resolution, self.resolution)
        self.native_color_mode = meta["color_mode"]
        self.channels = int(meta["channels"])
        counts = meta.get("class_counts") or {}
        self._trained = tuple(c for c in self.generator.class_names if counts.get(c, 1) > 0)
        self._info = {
            "backend": "ddpm",
            "model": str(self.generator.path),
            "model_hash": self.generator.model_hash,
            "sampler": self.sampler_name,
            "resolution": self.resolution,
            "color_mode": self.native_color_mode,
        }

    @property
    def class_names(self) -> tuple[str, ...]:
        """Classes the generator saw images of (a class with none cannot be sampled)."""
        return self._trained

    def info(self) -> dict:
        return dict(self._info)

    @property
    def runtime(self) -> str:
        """How the denoising step runs: eager, cuda-graph, compile or
        compile-reduce-overhead (recorded in ``env_report.json``)."""
        return self.predictor.runtime

    def _label(self, class_name: str) -> int:
        if class_name not in self.generator.class_map:
            raise ConfigError(f"class {class_name!r} is unknown to the generator "
                              f"{self.generator.path} (it knows "
                              f"{', '.join(self.generator.class_names)})")
        return int(self.generator.class_map[class_name])

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedImage]:
        requests = list(requests)
        out: list[GeneratedImage | None] = [None] * len(requests)
        for part, variation in self._batches(requests):
            images = self._sample([requests[i] for i in part], variation)
            if self.pixel_check and not self._checked and not variation:
                check_pixel_statistics(images, self.generator.meta["pixel_stats"],
                                       class_names=[requests[i].class_name for i in part])
                self._checked = True
            for i, image in zip(part, images):
                out[i] = GeneratedImage(image=image, provenance=self._provenance(
                    requests[i], variation), class_name=requests[i].class_name)
        return out

    def _provenance(self, request: GenerationRequest, variation: bool) -> dict:
        steps = self.steps
        if variation:
            steps = max(1, min(self.steps, round(self.steps * self.strength)))
        return {
            "generator": self.info(),
            "prompt": None,
            "negative_prompt": None,
            "attributes": dict(request.attributes),
            "attributes_conditioned": False,
            "seed": int(request.seed),
            "steps": steps,
            "guidance_scale": self.guidance_scale,
            "source_id": request.source_id if variation else None,
            "mode": "variation" if variation else "class",
            "strength": self.strength if variation else None,
        }

    def _sample(self, requests: list[GenerationRequest], variation: bool) -> np.ndarray:
        """Denoise one batch: noise from each request's seed, then the solver's steps."""
        import torch

        device, n = self.device, len(requests)
        shape = (self.channels, self.resolution, self.resolution)
        # 1. Initial noise from per-image CPU generators: an image depends on its seed only
        #    (not on its batch), and padding rows (zeros) change no other row.
        rows = self.predictor.padded(n, fixed=self.fixed_shape)
        noise = torch.zeros((rows, *shape))
        for i, request in enumerate(requests):
            noise[i] = torch.randn(shape, generator=torch.Generator().manual_seed(
                int(request.seed)))
        noise = noise.to(device)
        labels = torch.zeros(rows, dtype=torch.long)
        labels[:n] = torch.tensor([self._label(r.class_name) for r in requests])
        labels = labels.to(device)
        if self.predictor.guided:
            labels = torch.cat([labels, torch.full_like(labels, self.generator.null_label)])
        # 2. The solver's timesteps (all of them, or the last ones for a variation). The
        #    scheduler's arithmetic stays on the CPU (its tables live there): indexing them
        #    with a CUDA timestep would cost a host-device sync at every step.
        scheduler = build_sampler(self.generator.train_scheduler_config, self.sampler_name,
                                  lambda_min_clipped=self.lambda_min_clipped)
        scheduler.set_timesteps(self.steps)
        timesteps = scheduler.timesteps
        if variation:
            begin = min(self.steps - 1, int(round(self.steps * (1.0 - self.strength))))
            timesteps = timesteps[begin:]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(begin)
            x0 = torch.zeros((rows, *shape))
            x0[:n] = torch.from_numpy(np.stack([
                normalize_image(r.source_image, self.native_size, self.native_color_mode)
                for r in requests])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            x = scheduler.add_noise(x0.to(device), noise, timesteps[:1].repeat(rows))
        else:
            x = noise * scheduler.init_noise_sigma
        # 3. Denoise: predict the noise or the velocity (guided; the sampler's config says
        #    which, as trained), then step back in time.
        with torch.inference_mode():
            for t, t_device in zip(timesteps, timesteps.to(device)):
                prediction = self.predictor(scheduler.scale_model_input(x, t), t_device, labels)
                x = scheduler.step(prediction, t, x).prev_sample
            pixels = ((x[:n].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def close(self) -> None:
        self.predictor.close()
        self.unet = None
        self.generator.unet = None
        super().close()


