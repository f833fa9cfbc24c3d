"""LoRA training steps per second of ``genaug fit-lora``, against the diffusers example's step.

A Stable Diffusion checkpoint with random weights (throughput does not depend on them) is
written to a temporary folder: ``--model sd15`` has SD 1.5's shapes (860M-parameter UNet,
320/640/1280/1280 channels, cross-attention 768; the VAE and a 12-layer 768-wide CLIP text
encoder), ``--model tiny`` the test suite's tiny one. Then, in the same process:

* ``fit-lora``: :func:`genaug.generation.fit_lora` on 128 px images, the real code path; the
  rate is read from its ``loss_log.csv`` (a row, and a device sync, every ``--log-every``
  steps), leaving out the first row (warm-up).
* ``example``: the step of diffusers' ``train_text_to_image_lora.py``, the obvious
  alternative: the same LoRA layers and optimiser, but the VAE encodes the batch and the text
  encoder its prompts at every step.

    # GPU (bf16): SD 1.5 shapes, 128 px, batch 8, rank 16
    python benchmarks/lora_step_time.py --device cuda --model sd15
    # CPU smoke run (tiny model, 16 px)
    python benchmarks/lora_step_time.py --device cpu --model tiny --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "generation"))  # the tiny tokenizer and checkpoint

CLASSES = ("class0", "class1", "class2", "class3")


def make_sd15(path: Path) -> Path:
    """A random checkpoint with Stable Diffusion 1.5's shapes (fp16 on disk), a tiny
    character tokenizer (its vocabulary size does not change the step time)."""
    import torch
    from _gen_helpers import tiny_clip_tokenizer
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer(path.parent / "tokenizer-src", model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, cross_attention_dim=768, attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, hidden_size=768, intermediate_size=3072,
        num_attention_heads=12, num_hidden_layers=12, max_position_embeddings=77,
        vocab_size=len(tokenizer.get_vocab()), projection_dim=768))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(path)
    return path


def write_images(root: Path, *, per_class: int, size: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def fit_lora_rate(args, sd: Path, data: Path, out: Path) -> dict:
    import torch

    from genaug.generation import fit_lora

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = fit_lora(data, sd_model=sd, out_dir=out, resolution=args.resolution,
                      rank=args.rank, alpha=2.0 * args.rank, batch_size=args.batch_size,
                      max_steps=args.log_every * (args.rows + 1), device=args.device,
                      progress=False, log_every=args.log_every)
    with open(out / "loss_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    first, last = rows[0], rows[-1]
    steps = int(last["step"]) - int(first["step"])
    seconds = float(last["seconds"]) - float(first["seconds"])
    peak = (torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda")
            else None)
    return {"steps": steps, "seconds": round(seconds, 3),
            "steps_per_second": round(steps / seconds, 3),
            "trainable_parameters_m": round(result.trainable_parameters / 1e6, 3),
            "precision": result.precision,
            "peak_gib": None if peak is None else round(peak, 2)}


def example_rate(args, sd: Path, data: Path) -> dict:
    """diffusers' example step: encode images and prompts every step, then the same LoRA
    update (same layers, optimiser, dtype handling and clipping as fit-lora)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    from genaug.data import DatasetIndex
    from genaug.generation._ddpm_fit import load_training_images
    from genaug.generation._lora import TARGET_MODULES
    from genaug.generation._utils import resolve_dtype

    device, dtype = args.device, resolve_dtype(args.device)
    cuda = device.startswith("cuda")
    pipe = StableDiffusionPipeline.from_pretrained(sd, local_files_only=True, torch_dtype=dtype,
                                                   safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    pipe.to(device)
    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    index = DatasetIndex.load(data)
    images = torch.from_numpy(load_training_images(index, resolution=args.resolution,
                                                   color_mode="rgb")).to(device)
    labels = torch.tensor(index.labels, device=device)
    prompts = [f"a photo of a {name}" for name in index.class_names]
    torch.manual_seed(0)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=2.0 * args.rank,
                                init_lora_weights="gaussian", target_modules=list(TARGET_MODULES)))
    cast_training_params(unet, dtype=torch.float32)
    parameters = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=1e-2, fused=cuda)
    unet.train()

    def step():
        pick = torch.randint(0, len(images), (args.batch_size,), device=device)
        pixels = images[pick].permute(0, 3, 1, 2).to(dtype).div(127.5).sub(1.0)
        ids = pipe.tokenizer([prompts[int(i)] for i in labels[pick].tolist()],
                             padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample().float()
            latents = latents * vae.config.scaling_factor
            encoder_hidden_states = text_encoder(ids)[0]
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch_size,),
                          device=device)
        noisy = scheduler.add_noise(latents, noise, t)
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            prediction = unet(noisy, t, encoder_hidden_states).sample
        loss = F.mse_loss(prediction.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        return loss.detach()

    for _ in range(args.log_every):  # warm-up, as fit-lora's first row
        step()
    float(step())
    start = time.perf_counter()
    steps = args.log_every * args.rows
    losses = [step() for _ in range(steps)]
    float(torch.stack(losses).mean())  # one sync at the end
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": round(seconds, 3),
            "steps_per_second": round(steps / seconds, 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model", choices=["sd15", "tiny"], help="default: sd15 on CUDA, "
                        "tiny on CPU")
    parser.add_argument("--resolution", type=int, help="default: 128 (sd15), 16 (tiny)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--log-every", type=int, default=10, help="steps per timed row")
    parser.add_argument("--rows", type=int, default=5, help="timed rows after the warm-up")
    parser.add_argument("--images-per-class", type=int, default=16)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--skip-example", action="store_true",
                        help="time fit-lora only (no comparison)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # diffusers' torch_dtype rename

    import torch

    from genaug.generation._utils import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = resolve_device(args.device)
    cuda = args.device.startswith("cuda")
    args.model = args.model or ("sd15" if cuda else "tiny")
    args.resolution = args.resolution or (128 if args.model == "sd15" else 16)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clock = time.perf_counter()
        if args.model == "sd15":
            sd = make_sd15(tmp / "sd")
        else:
            from _gen_helpers import build_tiny_sd

            sd = build_tiny_sd(tmp / "sd")
        built = time.perf_counter() - clock
        data = write_images(tmp / "data", per_class=args.images_per_class,
                            size=args.resolution)
        ours = fit_lora_rate(args, sd, data, tmp / "lora")
        theirs = None if args.skip_example else example_rate(args, sd, data)
    device_name = (torch.cuda.get_device_name() if cuda
                   else f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)")
    result = {"device": device_name, "model": args.model, "resolution": args.resolution,
              "rank": args.rank, "batch_size": args.batch_size,
              "checkpoint_build_seconds": round(built, 1), "fit_lora": ours,
              "example": theirs,
              "speedup_vs_example": (None if theirs is None else
                                     round(ours["steps_per_second"]
                                           / theirs["steps_per_second"], 2)),
              "images_per_second": round(ours["steps_per_second"] * args.batch_size, 1)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
