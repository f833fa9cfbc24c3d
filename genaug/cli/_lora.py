"""``genaug fit-lora``."""

from __future__ import annotations

import click


@click.command("fit-lora")
@click.argument("data_dir", type=click.Path())
@click.option("--sd-model", type=click.Path(), required=True,
              help="Local Stable Diffusion 1.x/2.x checkpoint folder (diffusers; no download).")
@click.option("--out", type=click.Path(), required=True,
              help="Adapter folder to write (pytorch_lora_weights.safetensors, "
                   "genaug_lora.json, loss_log.csv).")
@click.option("--resolution", type=click.IntRange(min=8), default=128, show_default=True,
              help="Training size (a multiple of 64 for Stable Diffusion).")
@click.option("--rank", type=click.IntRange(min=1), default=16, show_default=True,
              help="LoRA rank.")
@click.option("--alpha", type=click.FloatRange(min=0, min_open=True), default=32.0,
              show_default=True, help="LoRA scale: the update is multiplied by alpha / rank.")
@click.option("--max-steps", type=click.IntRange(min=1),
              help="Training steps (default 1000 when --max-seconds is not given either).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this much training time (whichever comes first).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-4,
              show_default=True)
@click.option("--prompt-template",
              help="Each class's prompt, with {class} and {class_text} "
                   "(default: 'a photo of a {class_text}', as genaug plan).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              default="auto", show_default=True, help="auto: bf16/fp16 on CUDA, fp32 on CPU.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fit_lora(data_dir, sd_model, out, resolution, rank, alpha, max_steps, max_seconds,
             learning_rate, prompt_template, batch_size, seed, device, precision, quiet):
    """Train a LoRA adapter of a local Stable Diffusion on DATA_DIR's classes.

    Use it with `genaug generate --sd-model SD --lora OUT` or `genaug train
    --live-generator SD --live-lora OUT`.
    """
    from genaug.generation import fit_lora as fit

    if max_steps is None and max_seconds is None:
        max_steps = 1000
    result = fit(data_dir, sd_model=sd_model, out_dir=out, resolution=resolution, rank=rank,
                 alpha=alpha, max_steps=max_steps, max_seconds=max_seconds,
                 learning_rate=learning_rate, prompt_template=prompt_template,
                 batch_size=batch_size, seed=seed, device=device, precision=precision,
                 progress=not quiet)
    click.echo(result.describe())
    click.echo(f"use it: genaug generate --sd-model {sd_model} --lora {out} ...")
