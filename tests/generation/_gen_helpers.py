"""Helpers shared by the generation tests (a module name unique across the test tree)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image


def coin(image, class_name):
    """A deterministic user gate's score that rejects about half the images (by content)."""
    return float(hashlib.sha256(image.tobytes()).digest()[0] % 2)


def coin_gate():
    """The coin as a gate (``--gate _gen_helpers:coin_gate`` on the command line)."""
    from genaug.generation import FunctionGate

    return FunctionGate("coin", coin, threshold=1.0)


def shape_image(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A smooth grey image of a disc, a bar or a ring (sharp edges, little noise)."""
    yy, xx = np.mgrid[:size, :size]
    cx, cy = rng.uniform(size * 0.35, size * 0.65, 2)
    r = np.hypot(xx - cx, yy - cy)
    if kind == "disc":
        mask = r < rng.uniform(size * 0.2, size * 0.35)
    elif kind == "ring":
        mask = (r > size * 0.2) & (r < size * 0.35)
    else:
        mask = np.abs(xx - cx) < size * 0.12
    image = 30 + 190 * mask + rng.normal(0, 6, mask.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_shapes(root: Path, counts: dict[str, int], *, size: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(shape_image(name, rng, size)).save(root / name / f"{name}_{i:02d}.png")
    return root


def tiny_clip_tokenizer(directory: Path, *, model_max_length: int = 32):
    """A CLIP BPE tokenizer over single characters, written as vocab.json + merges.txt."""
    import inspect

    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz0123456789,.-_'":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    if "vocab_file" in inspect.signature(CLIPTokenizer.__init__).parameters:  # transformers 4
        return CLIPTokenizer(vocab_file=str(directory / "vocab.json"),
                             merges_file=str(directory / "merges.txt"),
                             model_max_length=model_max_length)
    return CLIPTokenizer(vocab=vocab, merges=[],  # transformers 5
                         model_max_length=model_max_length)


def build_tiny_sd(path: Path) -> Path:
    """Save a tiny random Stable Diffusion pipeline (UNet2DConditionModel, AutoencoderKL,
    CLIPTextModel from small configs) to ``path``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer(path.parent / f"{path.name}-tokenizer-src")
    assert len(tokenizer) > 40
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
        norm_num_groups=4, attention_head_dim=4)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, hidden_size=16, intermediate_size=32,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=len(tokenizer.get_vocab()),
        max_position_embeddings=32, projection_dim=16))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


class FakeBackend:
    """A stand-in generator: a smooth shape per class from each seed, after ``seconds`` of
    'sampling' per call (a sleep, so it leaves the CPU to the other stages)."""

    backend_name = "fake"
    uses_prompts = False
    supports_source_images = False
    device = "cpu"
    native_size = (16, 16)
    native_color_mode = "grayscale"
    class_names = None

    def __init__(self, seconds: float = 0.0, batch_size: int = 4):
        self.seconds, self.batch_size, self.calls = seconds, batch_size, 0

    def can_generate(self, class_name):
        return True

    def info(self):
        return {"backend": "fake", "model": "fake", "model_hash": "0" * 64}

    def generate_batch(self, requests):
        import time

        from genaug.generation import GeneratedImage

        self.calls += 1
        time.sleep(self.seconds)
        return [GeneratedImage(
            image=shape_image(r.class_name, np.random.default_rng(r.seed))[:, :, None],
            provenance={"generator": self.info(), "seed": r.seed, "steps": 1},
            class_name=r.class_name) for r in requests]


class MeanFeature:
    """A stand-in for ``genaug.classifier.FeatureExtractor``: the feature is the mean pixel."""

    color_mode, dimension, source = "grayscale", 1, "mean pixel"

    def __init__(self, image_size=(4, 4)):
        self.image_size = tuple(image_size)

    def __call__(self, images):
        return np.asarray(images, dtype=np.float64).reshape(len(images), -1).mean(
            axis=1, keepdims=True)

    def describe(self):
        return {"source": self.source}


class PlacedBackend(FakeBackend):
    """A stand-in generator whose every image of a class is the same, given by ``looks``."""

    backend_name = "placed"

    def __init__(self, looks):
        super().__init__()
        self.looks = looks

    def info(self):
        return {"backend": "placed", "model": "placed", "model_hash": "1" * 64}

    def generate_batch(self, requests):
        from genaug.generation import GeneratedImage

        return [GeneratedImage(image=self.looks[r.class_name].copy(),
                               provenance={"generator": self.info(), "seed": r.seed},
                               class_name=r.class_name) for r in requests]
