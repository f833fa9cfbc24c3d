"""The class-conditional DDPM: model and scheduler construction, and the generator directory.

A generator directory (written by ``genaug fit-generator``)::

    generator/
      unet/config.json, unet/diffusion_pytorch_model.safetensors   (EMA weights)
      scheduler/scheduler_config.json    (the training noise schedule, cosine)
      class_map.json                     ({"class": label, ...}; label K is "no class" for CFG)
      train_config.json                  (every training parameter)
      genaug_generator.json              (format, resolution, colour mode, pixel statistics;
                                          for a distilled generator its default sampling)
      loss_log.csv
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from genaug.exceptions import ConfigError
from genaug.generation._utils import offline_hub, quiet_diffusers, weights_sha256
from genaug.io import atomic_directory

GENERATOR_FORMAT = "genaug-generator/1"
GENERATOR_META = "genaug_generator.json"
CLASS_MAP = "class_map.json"
TRAIN_CONFIG = "train_config.json"
LOSS_LOG = "loss_log.csv"

#: UNet presets. ``base`` is the 25M-parameter model measured on an H100 (64/128/256/256,
#: attention at 8x8); ``tiny`` is for tests and CPU smoke runs.
MODEL_SIZES = {
    "tiny": {"block_out_channels": (16, 32), "layers_per_block": 1},
    "small": {"block_out_channels": (32, 64, 128), "layers_per_block": 1},
    "base": {"block_out_channels": (64, 128, 256, 256), "layers_per_block": 2},
}
#: DPM-Solver++ on a cosine schedule needs the smallest log-SNR clipped, or it returns noise.
LAMBDA_MIN_CLIPPED = -5.1
#: ``dpm++``: DPM-Solver++ 2M; ``dpm++3m``: its third-order multistep form; ``unipc``: UniPC
#: (Zhao et al. 2023, also third order); ``ddim``: DDIM.
SAMPLERS = ("dpm++", "dpm++3m", "unipc", "ddim")
#: How a generator samples unless told otherwise; a distilled generator's metadata holds its
#: own (``sampling``: DDIM at its step count, guidance built in).
DEFAULT_SAMPLING = {"sampler": "dpm++", "steps": 20, "guidance_scale": 2.0}
#: What the UNet predicts: the noise, or the velocity ``sqrt(a) * noise - sqrt(1 - a) * x0``
#: (diffusers' names; the sampler reads it back from the saved scheduler config).
PREDICTION_TYPES = ("epsilon", "v_prediction")


def build_unet(*, num_classes: int, resolution: int, channels: int, model_size: str = "base",
               block_out_channels=None, layers_per_block=None, attention_resolution: int = 8):
    """A class-conditional ``UNet2DModel`` with ``num_classes + 1`` class embeddings.

    The extra label ``num_classes`` means "no class" (label dropout in training, the
    unconditional branch of classifier-free guidance). Attention is used in the block that
    works at ``attention_resolution`` pixels (8x8, as measured).
    """
    from diffusers import UNet2DModel

    if model_size not in MODEL_SIZES and block_out_channels is None:
        raise ConfigError(f"model size must be one of {', '.join(MODEL_SIZES)}, "
                          f"got {model_size!r}")
    preset = MODEL_SIZES.get(model_size, {})
    blocks = tuple(block_out_channels or preset["block_out_channels"])
    layers = int(layers_per_block or preset["layers_per_block"])
    factor = 2 ** (len(blocks) - 1)
    if resolution % factor or resolution < factor * 2:
        raise ConfigError(f"resolution {resolution} does not fit a {len(blocks)}-level UNet "
                          f"(needs a multiple of {factor}, at least {factor * 2})")
    down, up = [], []
    for level in range(len(blocks)):
        attention = resolution // 2 ** level == attention_resolution
        down.append("AttnDownBlock2D" if attention else "DownBlock2D")
    up = ["AttnUpBlock2D" if kind == "AttnDownBlock2D" else "UpBlock2D" for kind in reversed(down)]
    groups = 32
    for width in blocks:
        groups = math.gcd(groups, width)
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=blocks,
        layers_per_block=layers,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=groups,
        attention_head_dim=min(32, min(blocks)),
        num_class_embeds=num_classes + 1,
    )


def build_train_scheduler(num_train_timesteps: int = 1000, *,
                          prediction_type: str = "epsilon"):
    """The DDPM training schedule: cosine (``squaredcos_cap_v2``), predicting
    ``prediction_type`` (one of :data:`PREDICTION_TYPES`).

    The scheduler is saved with the generator, and :func:`build_sampler` builds the
    sampler from its config, so sampling interprets the UNet's output the way it was trained.
    """
    from diffusers import DDPMScheduler

    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(f"prediction type must be one of {', '.join(PREDICTION_TYPES)}, "
                          f"got {prediction_type!r}")
    return DDPMScheduler(num_train_timesteps=num_train_timesteps,
                         beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type,
                         clip_sample=True)


def build_sampler(train_config, sampler: str = "dpm++", *,
                  lambda_min_clipped: float = LAMBDA_MIN_CLIPPED):
    """A fast sampler built from the training schedule's config.

    ``dpm++`` / ``dpm++3m``: DPM-Solver++ (2nd / 3rd order, multistep) with
    ``lambda_min_clipped`` so a cosine schedule does not blow up at the first step.
    ``unipc``: UniPC (bh2, 3rd order), which has no ``lambda_min_clipped``: its predicted x0
    is clipped to [-1, 1] instead (thresholding with a maximum of 1), as DDIM's is.
    ``ddim``: DDIM with trailing timesteps (it starts from pure noise) and clipped x0.
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    if sampler in ("dpm++", "dpm++3m"):
        return DPMSolverMultistepScheduler.from_config(
            train_config, algorithm_type="dpmsolver++", solver_order=2 if sampler == "dpm++" else 3,
            lambda_min_clipped=lambda_min_clipped, final_sigmas_type="zero")
    if sampler == "unipc":
        return UniPCMultistepScheduler.from_config(
            train_config, solver_order=3, thresholding=True, sample_max_value=1.0,
            final_sigmas_type="zero")
    if sampler == "ddim":
        return DDIMScheduler.from_config(train_config, timestep_spacing="trailing",
                                         clip_sample=True, set_alpha_to_one=True)
    raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")


@dataclass
class LoadedGenerator:
    """A generator directory loaded on a device."""

    path: Path
    unet: object
    train_scheduler_config: dict
    meta: dict
    class_map: dict
    train_config: dict
    model_hash: str

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.class_map, key=self.class_map.get))

    @property
    def null_label(self) -> int:
        return int(self.meta["null_label"])

    @property
    def sampling(self) -> dict:
        """The sampler, steps and guidance this generator samples with by default."""
        return {**DEFAULT_SAMPLING, **self.meta.get("sampling", {})}


def save_generator(directory, *, unet, scheduler, class_names, meta: dict, train_config: dict,
                   loss_log: str | None = None) -> Path:
    """Write a generator directory atomically (a temporary sibling renamed into place)."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        scheduler.save_pretrained(tmp / "scheduler")
        class_map = {name: i for i, name in enumerate(class_names)}
        (tmp / CLASS_MAP).write_text(json.dumps(class_map, indent=2) + "\n")
        (tmp / TRAIN_CONFIG).write_text(json.dumps(train_config, indent=2, default=str) + "\n")
        full_meta = {"format": GENERATOR_FORMAT, "backend": "ddpm",
                     "null_label": len(class_names), **meta}
        (tmp / GENERATOR_META).write_text(json.dumps(full_meta, indent=2, default=str) + "\n")
        if loss_log is not None:
            (tmp / LOSS_LOG).write_text(loss_log)
    return directory


def load_generator(directory, *, device: str = "cpu", dtype=None) -> LoadedGenerator:
    """Load a generator directory offline (``local_files_only``, ``HF_HUB_OFFLINE=1``)."""
    offline_hub()
    quiet_diffusers()
    from diffusers import UNet2DModel

    directory = Path(directory)
    meta_path = directory / GENERATOR_META
    if not meta_path.is_file():
        raise ConfigError(f"{directory} is not a genaug generator (no {GENERATOR_META}); "
                          "train one with `genaug fit-generator`")
    try:
        meta = json.loads(meta_path.read_text())
        class_map = json.loads((directory / CLASS_MAP).read_text())
        train_config = json.loads((directory / TRAIN_CONFIG).read_text())
        scheduler_config = json.loads(
            (directory / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"generator {directory} is incomplete or damaged: {error}") from None
    if meta.get("format") != GENERATOR_FORMAT:
        raise ConfigError(f"{meta_path}: unsupported format {meta.get('format')!r}")
    try:
        unet = UNet2DModel.from_pretrained(directory / "unet", local_files_only=True,
                                           use_safetensors=True)
    except Exception as error:  # diffusers raises several types for a bad directory
        raise ConfigError(f"cannot load the UNet from {directory / 'unet'}: "
                          f"{error}".splitlines()[0]) from None
    unet.eval().requires_grad_(False)
    unet.to(device=device, dtype=dtype) if dtype is not None else unet.to(device)
    return LoadedGenerator(path=directory.resolve(), unet=unet,
                           train_scheduler_config=scheduler_config, meta=meta,
                           class_map=class_map, train_config=train_config,
                           model_hash=weights_sha256(directory / "unet"))
