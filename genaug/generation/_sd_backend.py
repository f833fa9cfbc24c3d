"""Stable Diffusion text-to-image and image-to-image from a local diffusers checkpoint."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genaug.exceptions import ConfigError
from genaug.generation._base import (
    DEFAULT_VARIATION_STRENGTH,
    GeneratedImage,
    GenerationRequest,
    GeneratorBackend,
)
from genaug.generation._plan import DEFAULT_TEMPLATE
from genaug.generation._utils import (
    normalize_image,
    offline_hub,
    quiet_diffusers,
    require_generation_extras,
    weights_sha256,
)


class StableDiffusionBackend(GeneratorBackend):
    """Text-to-image and image-to-image with a Stable Diffusion checkpoint on disk.

    Nothing is downloaded: the checkpoint is a diffusers directory (``model_index.json``,
    ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), loaded with
    ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``. The text-to-image pipeline holds
    the weights; the image-to-image pipeline shares them.

    Parameters
    ----------
    path : path-like
        The checkpoint directory.
    device : str, optional
        ``cuda`` when available (fp16/bf16 weights), else ``cpu`` (fp32).
    precision : {"auto", "fp32", "bf16", "fp16"}
    steps : int, default 30
    guidance_scale : float, default 7.5
    strength : float, default DEFAULT_VARIATION_STRENGTH
        Image-to-image: how far a variation may move from its real source image.
    height, width : int, optional
        Output size; defaults to the checkpoint's native size.
    batch_size : int, optional
        Images per pipeline call (default 8 on CUDA, 2 on CPU).
    default_prompt : str
        Template for requests without a prompt (``{class}`` and ``{class_text}`` allowed).
    lora : path-like, optional
        An adapter folder written by ``genaug fit-lora`` (or any diffusers LoRA folder), fused
        into the UNet; the SHA-256 of its weights goes into every record
        (``generator.lora_sha256``).
    """

    backend_name = "sd"
    marker = "model_index.json"
    marker_hint = "a diffusers checkpoint directory (no model_index.json)"
    uses_prompts = True
    supports_source_images = True

    def __init__(self, path, *, device=None, precision: str = "auto", steps: int = 30,
                 guidance_scale: float = 7.5, strength: float = DEFAULT_VARIATION_STRENGTH,
                 height: int | None = None, width: int | None = None,
                 batch_size: int | None = None,
                 default_prompt: str = DEFAULT_TEMPLATE, lora=None):
        require_generation_extras()
        offline_hub()
        quiet_diffusers()
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

        path = Path(path)
        if lora is not None:  # before the checkpoint loads, which takes a while
            from genaug.generation._lora import check_lora, load_lora_adapter

            check_lora(lora)
        if not (path / "model_index.json").is_file():
            raise ConfigError(f"{path} is not a local diffusers checkpoint directory "
                              "(no model_index.json); nothing is downloaded")
        self._init_sampling(device=device, precision=precision, steps=steps,
                            strength=strength)
        try:
            with warnings.catch_warnings():  # newer diffusers call torch_dtype "dtype"
                warnings.simplefilter("ignore", FutureWarning)
                pipe = StableDiffusionPipeline.from_pretrained(
                    path, local_files_only=True, torch_dtype=self.dtype)
        except Exception as error:  # diffusers/transformers raise many kinds
            raise ConfigError(f"cannot load Stable Diffusion from {path}: "
                              f"{error}".splitlines()[0]) from None
        pipe.to(self.device)
        model_hash = weights_sha256(path)
        adapter = {}
        if lora is not None:
            adapter = load_lora_adapter(pipe, lora, base_model_hash=model_hash)
        pipe.set_progress_bar_config(disable=True)
        self.txt2img = pipe
        self.img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
        self.img2img.set_progress_bar_config(disable=True)
        self.path = path.resolve()
        self.guidance_scale = float(guidance_scale)
        scale = getattr(pipe, "vae_scale_factor", 8)
        native = int(pipe.unet.config.sample_size) * scale
        self.height, self.width = int(height or native), int(width or native)
        self.native_size = (self.height, self.width)
        self.native_color_mode = "rgb"
        self.batch_size = int(batch_size or (8 if self.device.startswith("cuda") else 2))
        self.default_prompt = default_prompt
        self._info = {"backend": "sd", "model": str(self.path), "model_hash": model_hash,
                      "scheduler": type(pipe.scheduler).__name__, **adapter}

    def info(self) -> dict:
        return dict(self._info)

    def _prompt(self, request: GenerationRequest) -> str:
        if request.prompt:
            return request.prompt
        text = request.class_name.replace("_", " ").replace("-", " ")
        return self.default_prompt.format(**{"class": request.class_name, "class_text": text})

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedImage]:
        requests = list(requests)
        out: list[GeneratedImage | None] = [None] * len(requests)
        for part, variation in self._batches(requests):
            images, flagged = self._run([requests[i] for i in part], variation)
            for k, i in enumerate(part):
                out[i] = GeneratedImage(
                    image=images[k],
                    provenance=self._provenance(requests[i], variation, flagged[k]),
                    class_name=requests[i].class_name)
        return out

    def _run(self, requests: list[GenerationRequest], variation: bool):
        import torch
        from PIL import Image

        prompts = [self._prompt(r) for r in requests]
        negatives = [r.negative_prompt or "" for r in requests]
        generators = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
        common = dict(prompt=prompts, negative_prompt=negatives,
                      num_inference_steps=self.steps, guidance_scale=self.guidance_scale,
                      generator=generators, output_type="np")
        with torch.inference_mode():
            if variation:
                sources = [Image.fromarray(normalize_image(r.source_image, self.native_size,
                                                           "rgb")) for r in requests]
                result = self.img2img(image=sources, strength=self.strength, **common)
            else:
                result = self.txt2img(height=self.height, width=self.width, **common)
        images = np.clip(np.asarray(result.images, dtype=np.float32) * 255.0 + 0.5, 0, 255)
        flagged = getattr(result, "nsfw_content_detected", None) or [None] * len(requests)
        return images.astype(np.uint8), flagged

    def _provenance(self, request: GenerationRequest, variation: bool, flagged) -> dict:
        record = {
            "generator": self.info(),
            "prompt": self._prompt(request),
            "negative_prompt": request.negative_prompt,
            "attributes": dict(request.attributes),
            "seed": int(request.seed),
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "source_id": request.source_id if variation else None,
            "mode": "img2img" if variation else "txt2img",
            "strength": self.strength if variation else None,
        }
        if flagged is not None:
            record["nsfw_flagged"] = bool(flagged)
        return record

    def close(self) -> None:
        self.txt2img = self.img2img = None
        super().close()
