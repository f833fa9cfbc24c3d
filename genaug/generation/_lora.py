"""LoRA fine-tuning of a local Stable Diffusion checkpoint on the user's classes, and the
adapter folder it writes.

Training follows diffusers' own LoRA example (``examples/text_to_image``): the checkpoint is
frozen, ``peft`` LoRA layers are added to the UNet's attention projections with
``unet.add_adapter``, only they are trained (in fp32, under bf16 autocast on CUDA) on the
usual noise-prediction loss, and they are saved with ``get_peft_model_state_dict`` ->
``convert_state_dict_to_diffusers`` -> ``StableDiffusionPipeline.save_lora_weights``, so
``pipeline.load_lora_weights(folder)`` reads them. Two things differ, both for speed: the
frozen VAE and text encoder run once before training (each image's latent distribution and
each class prompt's embedding are kept on the device; a step samples a latent from its
image's distribution, as the example does), and batches are drawn class-balanced, so a class
with ten images is learned as well as one with a thousand.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from genaug.exceptions import ConfigError, DatasetError, OutputError
from genaug.generation._ddpm_fit import load_training_images
from genaug.generation._ddpm_model import LOSS_LOG
from genaug.generation._plan import DEFAULT_TEMPLATE
from genaug.generation._train_loop import TrainingResult, check_budget, train_steps
from genaug.generation._utils import (
    device_report,
    offline_hub,
    precision_name,
    quiet_diffusers,
    require_generation_extras,
    resolve_device,
    resolve_dtype,
    weights_sha256,
)
from genaug.io import package_versions

#: diffusers' file name for LoRA weights in safetensors (``LORA_WEIGHT_NAME_SAFE``)
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
#: genaug's description of the adapter: base model, classes, prompts, training settings
LORA_CONFIG = "genaug_lora.json"
LORA_FORMAT = "genaug-lora/1"
#: the UNet attention projections that get LoRA layers (diffusers' example's choice)
TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 1e-2


def require_peft() -> None:
    """Raise a one-line error when ``peft`` (the ``lora`` extra) is not installed."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ConfigError("peft is not installed, and LoRA needs it; install the extra: "
                          "pip install 'genaug[lora]'") from None


def check_sd_checkpoint(path) -> Path:
    """``path`` as a local Stable Diffusion 1.x/2.x diffusers folder, or :class:`ConfigError`."""
    path = Path(path)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "not found"
        raise ConfigError(f"--sd-model {path} {what} (a local diffusers checkpoint folder is "
                          "required; nothing is downloaded)")
    try:
        index = json.loads((path / "model_index.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"--sd-model {path} is not a diffusers checkpoint folder (no "
                          "model_index.json)") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"--sd-model {path}: unreadable model_index.json ({error})") from None
    if (not isinstance(index, dict) or any(c not in index for c in SD_COMPONENTS)
            or "text_encoder_2" in index):
        kind = index.get("_class_name") if isinstance(index, dict) else None
        raise ConfigError(f"--sd-model {path} holds a {kind or 'diffusers model'}, not a Stable "
                          f"Diffusion 1.x/2.x checkpoint ({', '.join(SD_COMPONENTS)})")
    return path


def class_prompt(template: str, class_name: str) -> str:
    """``template`` with ``{class}`` and ``{class_text}`` (``_``/``-`` as spaces) filled in."""
    text = class_name.replace("_", " ").replace("-", " ")
    try:
        return template.format(**{"class": class_name, "class_text": text})
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(f"--prompt-template {template!r} is not a template with only "
                          f"{{class}} and {{class_text}} ({type(error).__name__}: "
                          f"{error})") from None


def check_lora(path, *, option: str = "--lora") -> dict:
    """Check that an adapter folder can be loaded (``peft`` installed, weights present),
    without loading torch, and return its ``genaug_lora.json`` (an empty dict for a diffusers
    LoRA folder trained elsewhere). ``option`` names the folder in error messages."""
    require_peft()
    path = Path(path)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "not found"
        raise ConfigError(f"{option} {path} {what} (give a folder written by `genaug fit-lora`)")
    if not (path / LORA_WEIGHTS).is_file():
        raise ConfigError(f"{option} {path} holds no {LORA_WEIGHTS}; train an adapter with "
                          "`genaug fit-lora`")
    config_path = path / LORA_CONFIG
    if not config_path.is_file():
        return {}
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{option} {path}: unreadable {LORA_CONFIG} ({error})") from None
    if not isinstance(config, dict) or config.get("format") != LORA_FORMAT:
        raise ConfigError(f"{option} {path}: {LORA_CONFIG} is not a {LORA_FORMAT} file")
    return config


def adapter_sha256(path) -> str:
    """SHA-256 of an adapter's content: its metadata and its tensors (name, dtype, shape,
    bytes) in name order. Not of the file: safetensors writes the header's metadata in no
    fixed order, so the same weights saved twice differ as files."""
    import torch
    from safetensors import SafetensorError, safe_open

    digest = hashlib.sha256()
    try:
        with safe_open(str(path), framework="pt") as weights:
            digest.update(json.dumps(weights.metadata() or {}, sort_keys=True).encode())
            for name in sorted(weights.keys()):
                tensor = weights.get_tensor(name).contiguous()
                digest.update(json.dumps([name, str(tensor.dtype).replace("torch.", ""),
                                          list(tensor.shape)]).encode())
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    except (OSError, SafetensorError) as error:
        raise ConfigError(f"cannot read the LoRA weights {path}: {error}") from None
    return digest.hexdigest()


def load_lora_adapter(pipe, path, *, base_model_hash: str) -> dict:
    """Load an adapter folder into a Stable Diffusion pipeline and fuse it into the UNet.

    Fusing makes sampling as fast as without the adapter (no extra LoRA matmuls); the
    pipeline's UNet is changed in place, so pipelines sharing it (image-to-image) use it too.

    Returns
    -------
    dict
        ``{"lora": absolute path, "lora_sha256": :func:`adapter_sha256`}``: the fields the
        ``generator`` record gains.
    """
    path = Path(path)
    config = check_lora(path)
    sha256 = adapter_sha256(path / LORA_WEIGHTS)
    if config:
        if config.get("base_model_hash") != base_model_hash:
            raise ConfigError(
                f"--lora {path} was trained on another base model (weights sha256 "
                f"{str(config.get('base_model_hash'))[:12]}..., this --sd-model has "
                f"{base_model_hash[:12]}...); train an adapter on this checkpoint")
        if config.get("adapter_sha256") != sha256:
            raise ConfigError(f"--lora {path}: {LORA_WEIGHTS} is not the file "
                              f"{LORA_CONFIG} describes (damaged or replaced)")
    try:
        pipe.load_lora_weights(path, weight_name=LORA_WEIGHTS, local_files_only=True)
        pipe.fuse_lora()
        pipe.unload_lora_weights()  # keeps the fused weights, drops the LoRA layers
    except Exception as error:  # diffusers/peft raise many kinds for a bad adapter
        raise ConfigError(f"cannot load the LoRA adapter {path}: "
                          f"{error}".splitlines()[0]) from None
    return {"lora": str(path.resolve()), "lora_sha256": sha256}


@dataclass
class LoraFitResult(TrainingResult):
    """What :func:`fit_lora` did."""

    trainable_parameters: int
    adapter_sha256: str

    def describe(self) -> str:
        return (f"trained {self.trainable_parameters / 1e6:.2f}M LoRA parameters "
                f"{self._run_text()}; adapter {self.adapter_sha256[:12]} saved to {self.path}")


def _check_out_dir(path) -> Path:
    """Refuse, before any training, an ``--out`` that cannot be written or that holds
    something other than an adapter (which the rename at the end would replace)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputError(f"cannot write to {path}: it exists and is not a folder")
        if any(path.iterdir()) and not (path / LORA_CONFIG).is_file():
            raise OutputError(f"--out {path} is a folder holding something other than a LoRA "
                              "adapter; give a new folder")
        return path
    ancestor = next(p for p in path.absolute().parents if p.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {path}: {ancestor} is not a writable folder")
    return path


def fit_lora(
    data,
    *,
    sd_model,
    out_dir,
    resolution: int = 128,
    rank: int = 16,
    alpha: float = 32.0,
    max_steps: int | None = 1000,
    max_seconds: float | None = None,
    learning_rate: float = 1e-4,
    prompt_template: str | None = None,
    batch_size: int = 8,
    seed: int = 0,
    device=None,
    precision: str = "auto",
    progress: bool = True,
    log_every: int = 25,
) -> LoraFitResult:
    """Train a LoRA adapter of a local Stable Diffusion checkpoint on ``data``'s classes.

    Parameters
    ----------
    data : path-like or DatasetIndex
        Real images (class folders or a CSV manifest); each class is trained with its prompt.
    sd_model : path-like
        A local Stable Diffusion 1.x/2.x diffusers folder (loaded with
        ``local_files_only=True``; nothing is downloaded).
    out_dir : path-like
        The adapter folder: ``pytorch_lora_weights.safetensors`` (diffusers' LoRA format),
        ``genaug_lora.json`` and ``loss_log.csv``, written to a temporary folder and renamed
        into place (an existing adapter there is replaced).
    resolution : int, default 128
        Training size (square); a multiple of the checkpoint's latent stride (64 for SD).
    rank, alpha : default 16 and 32
        LoRA rank and scale (the update is multiplied by ``alpha / rank``).
    max_steps, max_seconds : optional
        Stop at whichever comes first (at least one is required).
    learning_rate : float, default 1e-4
        AdamW (weight decay 0.01), constant, gradients clipped to norm 1.
    prompt_template : str, optional
        Each class's prompt, with ``{class}`` and ``{class_text}``; default
        ``"a photo of a {class_text}"`` (the same default as ``genaug plan``).
    batch_size : int, default 8
    seed : int, default 0
        Fixes the LoRA initialisation, the batches and the noise.
    device : str, optional
        ``cuda`` when available (frozen weights in bf16, or fp16 with loss scaling), else
        ``cpu`` (fp32).
    precision : {"auto", "fp32", "bf16", "fp16"}
    progress : bool
        Show a progress bar with the running loss.
    log_every : int, default 25
        Steps per ``loss_log.csv`` row (and per host synchronisation).

    Returns
    -------
    LoraFitResult

    Ctrl-C during training stops it and saves what was learned (``interrupted`` in the
    config); an interrupt before the first step or while saving leaves nothing behind.
    """
    run = _LoraRun(data, sd_model=sd_model, out_dir=out_dir, resolution=resolution, rank=rank,
                   alpha=alpha, max_steps=max_steps, max_seconds=max_seconds,
                   learning_rate=learning_rate, prompt_template=prompt_template,
                   batch_size=batch_size, seed=seed, device=device, precision=precision,
                   progress=progress, log_every=log_every)
    return run()


class _LoraRun:
    """One :func:`fit_lora` call; :meth:`__call__` lists its steps and :meth:`_step` is one
    optimisation step."""

    def __init__(self, data, *, sd_model, out_dir, resolution: int, rank: int, alpha: float,
                 max_steps, max_seconds, learning_rate: float, prompt_template, batch_size: int,
                 seed: int, device, precision: str, progress: bool, log_every: int):
        require_generation_extras()
        require_peft()
        check_budget(max_steps, max_seconds)
        if rank < 1:
            raise ConfigError(f"`rank` must be at least 1, got {rank}")
        if not alpha > 0:
            raise ConfigError(f"`alpha` must be positive, got {alpha}")
        if not learning_rate > 0:
            raise ConfigError(f"`learning_rate` must be positive, got {learning_rate}")
        if batch_size < 1:
            raise ConfigError(f"`batch_size` must be at least 1, got {batch_size}")
        if resolution < 8:
            raise ConfigError(f"`resolution` must be at least 8, got {resolution}")
        self.data, self.resolution, self.rank, self.alpha = data, resolution, rank, alpha
        self.max_steps, self.max_seconds = max_steps, max_seconds
        self.learning_rate, self.batch_size, self.seed = learning_rate, batch_size, seed
        self.progress, self.log_every = progress, log_every
        self.template = DEFAULT_TEMPLATE if prompt_template is None else prompt_template
        self.sd_model = check_sd_checkpoint(sd_model)
        self.out_dir = _check_out_dir(out_dir)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, precision)
        self.cuda = self.device.startswith("cuda")

    def __call__(self) -> LoraFitResult:
        offline_hub()
        quiet_diffusers()
        # 1. Index the classes and their prompts (cheap checks before a model is loaded).
        self._read_classes()
        # 2. Load the frozen checkpoint, offline.
        self._load_checkpoint()
        # 3. Encode the images and the class prompts once (both encoders are frozen).
        self._encode()
        # 4. Add the LoRA layers; only they train, in fp32.
        self._add_lora()
        # 5. Train until max_steps, max_seconds or Ctrl-C, logging the loss.
        self._train()
        # 6. Save the adapter in diffusers' LoRA format, with genaug's config, atomically.
        return self._save()

    # -- 1. classes ----------------------------------------------------------------------------
    def _read_classes(self) -> None:
        from genaug.data import DatasetIndex

        data = self.data
        self.index = (data if isinstance(data, DatasetIndex)
                      else DatasetIndex.load(data, validate=True))
        self.counts = {name: int(n)
                       for name, n in zip(self.index.class_names, self.index.counts())}
        self.classes = [name for name, n in self.counts.items() if n > 0]
        if not self.classes:
            raise DatasetError(f"no usable images in {self.index.root or data} to train the "
                               "LoRA on")
        self.prompts = {name: class_prompt(self.template, name) for name in self.classes}

    # -- 2. checkpoint ---------------------------------------------------------------------------
    def _load_checkpoint(self) -> None:
        import torch
        from diffusers import DDPMScheduler, StableDiffusionPipeline

        try:
            with warnings.catch_warnings():  # newer diffusers call torch_dtype "dtype"
                warnings.simplefilter("ignore", FutureWarning)
                self.pipe = StableDiffusionPipeline.from_pretrained(
                    self.sd_model, local_files_only=True, torch_dtype=self.dtype,
                    safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        except Exception as error:  # diffusers/transformers raise many kinds
            raise ConfigError(f"cannot load Stable Diffusion from {self.sd_model}: "
                              f"{error}".splitlines()[0]) from None
        self.base_model_hash = weights_sha256(self.sd_model)
        pipe = self.pipe
        stride = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
        if self.resolution % stride:
            raise ConfigError(f"`resolution` must be a multiple of {stride} for this "
                              f"checkpoint, got {self.resolution}")
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"`sd_model` {self.sd_model}: unsupported prediction type "
                              f"{self.prediction_type!r}")
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    # -- 3. encoding -----------------------------------------------------------------------------
    def _encode(self) -> None:
        import torch

        pipe, device, dtype = self.pipe, self.device, self.dtype
        images = load_training_images(self.index, resolution=self.resolution, color_mode="rgb")
        class_of = {name: i for i, name in enumerate(self.classes)}
        self.labels = torch.tensor([class_of[self.index.class_names[label]]
                                    for label in self.index.labels], device=device)
        pipe.vae.to(device)
        pipe.text_encoder.to(device)
        means, stds = [], []
        encode_batch = 64 if self.cuda else 16
        with torch.no_grad():
            for start in range(0, len(images), encode_batch):
                pixels = torch.from_numpy(images[start:start + encode_batch]).to(device)
                pixels = pixels.permute(0, 3, 1, 2).to(dtype).div(127.5).sub(1.0)
                posterior = pipe.vae.encode(pixels).latent_dist
                means.append(posterior.mean.float())
                stds.append(posterior.std.float())
            tokens = pipe.tokenizer([self.prompts[name] for name in self.classes],
                                    padding="max_length",
                                    max_length=pipe.tokenizer.model_max_length,
                                    truncation=True, return_tensors="pt").input_ids.to(device)
            self.prompt_embeds = pipe.text_encoder(tokens)[0].to(dtype)
        self.means, self.stds = torch.cat(means), torch.cat(stds)
        self.scaling = float(pipe.vae.config.scaling_factor)
        self.shift = float(getattr(pipe.vae.config, "shift_factor", None) or 0.0)
        pipe.vae = pipe.text_encoder = None
        if self.cuda:
            torch.cuda.empty_cache()

    # -- 4. LoRA layers --------------------------------------------------------------------------
    def _add_lora(self) -> None:
        import torch
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        torch.manual_seed(self.seed)
        device, unet = self.device, self.pipe.unet
        unet.to(device)
        unet.add_adapter(LoraConfig(r=self.rank, lora_alpha=self.alpha,
                                    init_lora_weights="gaussian",
                                    target_modules=list(TARGET_MODULES)))
        cast_training_params(unet, dtype=torch.float32)
        self.parameters = [p for p in unet.parameters() if p.requires_grad]
        self.trainable = sum(p.numel() for p in self.parameters)
        unet.train()
        self.optimizer = torch.optim.AdamW(self.parameters, lr=self.learning_rate,
                                           weight_decay=WEIGHT_DECAY, fused=self.cuda)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        # Class-balanced batches, drawn on the device: a class, then one of its images.
        self.per_class = torch.bincount(self.labels, minlength=len(self.classes))
        self.first = torch.cumsum(self.per_class, 0) - self.per_class
        self.by_class = torch.argsort(self.labels, stable=True)
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        self.timesteps_total = self.noise_scheduler.config.num_train_timesteps

    # -- 5. training -----------------------------------------------------------------------------
    def _train(self) -> None:
        self.loop = train_steps(self._step, max_steps=self.max_steps,
                                max_seconds=self.max_seconds, batch_size=self.batch_size,
                                learning_rate=lambda: self.learning_rate,
                                log_every=self.log_every, desc="fit-lora",
                                progress=self.progress)

    def _step(self):
        """One optimisation step; returns the loss as a device tensor."""
        import torch
        import torch.nn.functional as F

        device, batch, generator = self.device, self.batch_size, self.generator
        # 1. Draw a class-balanced batch and sample its latents from the encoded images.
        label = torch.randint(0, len(self.classes), (batch,), generator=generator,
                              device=device)
        offset = (torch.rand(batch, generator=generator, device=device)
                  * self.per_class[label]).long()
        pick = self.by_class[self.first[label] + offset]
        mean = self.means[pick]
        sample = torch.randn(mean.shape, generator=generator, device=device)
        latents = (mean + self.stds[pick] * sample - self.shift) * self.scaling
        # 2. Noise them at random timesteps and predict the noise (or velocity).
        noise = torch.randn(latents.shape, generator=generator, device=device)
        t = torch.randint(0, self.timesteps_total, (batch,), generator=generator,
                          device=device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        target = (noise if self.prediction_type == "epsilon"
                  else self.noise_scheduler.get_velocity(latents, noise, t))
        with torch.autocast(device_type=device.split(":")[0], dtype=self.dtype,
                            enabled=self.dtype != torch.float32):
            prediction = self.pipe.unet(noisy, t,
                                        encoder_hidden_states=self.prompt_embeds[label]).sample
        loss = F.mse_loss(prediction.float(), target.float())
        # 3. Update the LoRA weights (clipped gradients, loss scaling for fp16).
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.parameters, MAX_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    # -- 6. save ---------------------------------------------------------------------------------
    def _save(self) -> LoraFitResult:
        import torch
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        from genaug.io import atomic_directory

        unet, loop = self.pipe.unet, self.loop
        precision = precision_name(self.dtype)
        state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
        config = {
            "format": LORA_FORMAT,
            "base_model": str(self.sd_model.resolve()),
            "base_model_hash": self.base_model_hash,
            "classes": self.classes,
            "class_counts": {name: self.counts[name] for name in self.classes},
            "prompt_template": self.template,
            "prompts": self.prompts,
            "rank": self.rank,
            "alpha": self.alpha,
            "target_modules": list(TARGET_MODULES),
            "resolution": self.resolution,
            "learning_rate": self.learning_rate,
            "weight_decay": WEIGHT_DECAY,
            "max_grad_norm": MAX_GRAD_NORM,
            "batch_size": self.batch_size,
            "sampling": "class-balanced",
            "max_steps": self.max_steps,
            "max_seconds": self.max_seconds,
            "steps": loop.steps,
            "seed": self.seed,
            "prediction_type": self.prediction_type,
            "seconds": round(loop.seconds, 2),
            "final_loss": loop.final_loss,
            "interrupted": loop.interrupted,
            "trainable_parameters": self.trainable,
            "device": self.device,
            "precision": precision,
            "trained_on": device_report(self.device),
            "versions": package_versions(),
        }
        metadata = unet.peft_config["default"].to_dict()  # alpha travels with the weights
        metadata["target_modules"] = sorted(metadata["target_modules"])  # a set: fix its order
        with atomic_directory(self.out_dir) as tmp:
            StableDiffusionPipeline.save_lora_weights(
                tmp, unet_lora_layers=state, weight_name=LORA_WEIGHTS, safe_serialization=True,
                unet_lora_adapter_metadata=metadata)
            config["adapter_sha256"] = adapter_sha256(tmp / LORA_WEIGHTS)
            (tmp / LORA_CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n")
            (tmp / LOSS_LOG).write_text(loop.loss_log)
        return LoraFitResult(path=Path(self.out_dir), steps=loop.steps, seconds=loop.seconds,
                             final_loss=loop.last_loss, device=self.device,
                             precision=precision, trainable_parameters=self.trainable,
                             interrupted=loop.interrupted,
                             adapter_sha256=config["adapter_sha256"])
