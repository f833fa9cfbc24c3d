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
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from genaug.exceptions import ConfigError, DatasetError, OutputError
from genaug.generation._ddpm_fit import load_training_images
from genaug.generation._ddpm_model import LOSS_LOG
from genaug.generation._plan import DEFAULT_TEMPLATE
from genaug.generation._utils import (
    device_report,
    offline_hub,
    package_versions,
    progress_bar,
    quiet_diffusers,
    require_generation_extras,
    resolve_device,
    resolve_dtype,
    weights_sha256,
)

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
class LoraFitResult:
    """What :func:`fit_lora` did."""

    path: Path
    steps: int
    seconds: float
    final_loss: float
    device: str
    precision: str
    trainable_parameters: int
    interrupted: bool
    adapter_sha256: str

    def describe(self) -> str:
        stop = " (interrupted)" if self.interrupted else ""
        return (f"trained {self.trainable_parameters / 1e6:.2f}M LoRA parameters for "
                f"{self.steps} steps in {self.seconds:.0f} s on {self.device} "
                f"({self.precision}){stop}; final loss {self.final_loss:.4f}; adapter "
                f"{self.adapter_sha256[:12]} saved to {self.path}")


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
    # 1. Check everything that is cheap to check, before a model is loaded.
    require_generation_extras()
    require_peft()
    offline_hub()
    quiet_diffusers()
    from genaug.data import DatasetIndex

    if max_steps is None and max_seconds is None:
        raise ConfigError("give --max-steps or --max-seconds (or both)")
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"--max-steps must be at least 1, got {max_steps}")
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError(f"--max-seconds must be positive, got {max_seconds}")
    if rank < 1:
        raise ConfigError(f"--rank must be at least 1, got {rank}")
    if not alpha > 0:
        raise ConfigError(f"--alpha must be positive, got {alpha}")
    if not learning_rate > 0:
        raise ConfigError(f"--learning-rate must be positive, got {learning_rate}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if resolution < 8:
        raise ConfigError(f"--resolution must be at least 8, got {resolution}")
    template = DEFAULT_TEMPLATE if prompt_template is None else prompt_template
    sd_model = check_sd_checkpoint(sd_model)
    out_dir = _check_out_dir(out_dir)
    index = data if isinstance(data, DatasetIndex) else DatasetIndex.load(data, validate=True)
    counts = {name: int(n) for name, n in zip(index.class_names, index.counts())}
    classes = [name for name, n in counts.items() if n > 0]
    if not classes:
        raise DatasetError(f"no usable images in {index.root or data} to train the LoRA on")
    prompts = {name: class_prompt(template, name) for name in classes}
    device = resolve_device(device)
    dtype = resolve_dtype(device, precision)

    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from diffusers.training_utils import cast_training_params
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from genaug._io import atomic_directory

    precision_name = {torch.float32: "fp32", torch.bfloat16: "bf16",
                      torch.float16: "fp16"}[dtype]
    cuda = device.startswith("cuda")

    # 2. Load the frozen checkpoint, offline.
    try:
        with warnings.catch_warnings():  # newer diffusers call torch_dtype "dtype"
            warnings.simplefilter("ignore", FutureWarning)
            pipe = StableDiffusionPipeline.from_pretrained(
                sd_model, local_files_only=True, torch_dtype=dtype, safety_checker=None,
                feature_extractor=None, requires_safety_checker=False)
    except Exception as error:  # diffusers/transformers raise many kinds
        raise ConfigError(f"cannot load Stable Diffusion from {sd_model}: "
                          f"{error}".splitlines()[0]) from None
    base_model_hash = weights_sha256(sd_model)
    unet, vae = pipe.unet, pipe.vae
    stride = pipe.vae_scale_factor * 2 ** (len(unet.config.block_out_channels) - 1)
    if resolution % stride:
        raise ConfigError(f"--resolution must be a multiple of {stride} for this checkpoint, "
                          f"got {resolution}")
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ConfigError(f"--sd-model {sd_model}: unsupported prediction type "
                          f"{prediction_type!r}")
    for module in (unet, vae, pipe.text_encoder):
        module.requires_grad_(False)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # 3. Encode the images and the class prompts once (both encoders are frozen).
    images = load_training_images(index, resolution=resolution, color_mode="rgb")
    class_of = {name: i for i, name in enumerate(classes)}
    labels = torch.tensor([class_of[index.class_names[label]] for label in index.labels],
                          device=device)
    vae.to(device)
    pipe.text_encoder.to(device)
    means, stds = [], []
    encode_batch = 64 if cuda else 16
    with torch.no_grad():
        for start in range(0, len(images), encode_batch):
            pixels = torch.from_numpy(images[start:start + encode_batch]).to(device)
            pixels = pixels.permute(0, 3, 1, 2).to(dtype).div(127.5).sub(1.0)
            posterior = vae.encode(pixels).latent_dist
            means.append(posterior.mean.float())
            stds.append(posterior.std.float())
        tokens = pipe.tokenizer([prompts[name] for name in classes], padding="max_length",
                                max_length=pipe.tokenizer.model_max_length, truncation=True,
                                return_tensors="pt").input_ids.to(device)
        prompt_embeds = pipe.text_encoder(tokens)[0].to(dtype)
    means, stds = torch.cat(means), torch.cat(stds)
    scaling = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    del images
    pipe.vae = pipe.text_encoder = vae = None
    if cuda:
        torch.cuda.empty_cache()

    # 4. Add the LoRA layers; only they train, in fp32.
    torch.manual_seed(seed)
    unet.to(device)
    lora_config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                             target_modules=list(TARGET_MODULES))
    unet.add_adapter(lora_config)
    cast_training_params(unet, dtype=torch.float32)
    parameters = [p for p in unet.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in parameters)
    unet.train()
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=WEIGHT_DECAY,
                                  fused=cuda)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    amp = dtype != torch.float32

    # Class-balanced batches, drawn on the device: a class, then one of its images.
    per_class = torch.bincount(labels, minlength=len(classes))
    first = torch.cumsum(per_class, 0) - per_class
    by_class = torch.argsort(labels, stable=True)
    generator = torch.Generator(device=device).manual_seed(seed)
    timesteps_total = noise_scheduler.config.num_train_timesteps

    log = io.StringIO()
    log.write("step,loss,lr,seconds,images_seen\n")
    step, losses, last_loss = 0, [], float("nan")
    interrupted = False
    start = time.perf_counter()
    bar = progress_bar(total=max_steps, desc="fit-lora", unit="step", enabled=progress)

    def log_row():
        log.write(f"{step},{last_loss:.6f},{learning_rate:.3e},"
                  f"{time.perf_counter() - start:.2f},{step * batch_size}\n")

    try:
        while max_steps is None or step < max_steps:
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            label = torch.randint(0, len(classes), (batch_size,), generator=generator,
                                  device=device)
            offset = (torch.rand(batch_size, generator=generator, device=device)
                      * per_class[label]).long()
            pick = by_class[first[label] + offset]
            mean = means[pick]
            sample = torch.randn(mean.shape, generator=generator, device=device)
            latents = (mean + stds[pick] * sample - shift) * scaling
            noise = torch.randn(latents.shape, generator=generator, device=device)
            t = torch.randint(0, timesteps_total, (batch_size,), generator=generator,
                              device=device)
            noisy = noise_scheduler.add_noise(latents, noise, t)
            target = (noise if prediction_type == "epsilon"
                      else noise_scheduler.get_velocity(latents, noise, t))
            with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=amp):
                prediction = unet(noisy, t, encoder_hidden_states=prompt_embeds[label]).sample
            loss = F.mse_loss(prediction.float(), target.float())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            losses.append(loss.detach())
            if step % log_every == 0 or step == max_steps:
                last_loss = float(torch.stack(losses).mean())  # the step's only host sync
                losses = []
                if not math.isfinite(last_loss):
                    raise ConfigError(f"training diverged before step {step} (loss "
                                      f"{last_loss}); lower --learning-rate")
                log_row()
                bar.set_postfix(loss=f"{last_loss:.4f}")
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if losses:
        last_loss = float(torch.stack(losses).mean())
        log_row()
    seconds = time.perf_counter() - start
    if step == 0:
        raise ConfigError("training stopped before the first step; nothing was saved")

    # 5. Save the adapter in diffusers' LoRA format, with genaug's config, atomically.
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    config = {
        "format": LORA_FORMAT,
        "base_model": str(sd_model.resolve()),
        "base_model_hash": base_model_hash,
        "classes": classes,
        "class_counts": {name: counts[name] for name in classes},
        "prompt_template": template,
        "prompts": prompts,
        "rank": rank,
        "alpha": alpha,
        "target_modules": list(TARGET_MODULES),
        "resolution": resolution,
        "learning_rate": learning_rate,
        "weight_decay": WEIGHT_DECAY,
        "max_grad_norm": MAX_GRAD_NORM,
        "batch_size": batch_size,
        "sampling": "class-balanced",
        "max_steps": max_steps,
        "max_seconds": max_seconds,
        "steps": step,
        "seed": seed,
        "prediction_type": prediction_type,
        "seconds": round(seconds, 2),
        "final_loss": last_loss if math.isfinite(last_loss) else None,
        "interrupted": interrupted,
        "trainable_parameters": trainable,
        "device": device,
        "precision": precision_name,
        "trained_on": device_report(device),
        "versions": package_versions(),
    }
    metadata = unet.peft_config["default"].to_dict()  # alpha travels with the weights
    metadata["target_modules"] = sorted(metadata["target_modules"])  # a set: fix its order
    with atomic_directory(out_dir) as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=state, weight_name=LORA_WEIGHTS, safe_serialization=True,
            unet_lora_adapter_metadata=metadata)
        config["adapter_sha256"] = adapter_sha256(tmp / LORA_WEIGHTS)
        (tmp / LORA_CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n")
        (tmp / LOSS_LOG).write_text(log.getvalue())
    return LoraFitResult(path=Path(out_dir), steps=step, seconds=seconds,
                         final_loss=last_loss if math.isfinite(last_loss) else float("nan"),
                         device=device, precision=precision_name,
                         trainable_parameters=trainable, interrupted=interrupted,
                         adapter_sha256=config["adapter_sha256"])
