"""``genaug plan``, ``genaug fit-generator``, ``genaug distill-generator`` and
``genaug generate``."""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from pathlib import Path

import click

from genaug.cli._messages import cli_message
from genaug.cli._options import (
    RenamedOption,
    gate_options,
    gate_spec_from_options,
    parse_class_list,
)
from genaug.exceptions import ConfigError
from genaug.generation import DEFAULT_VARIATION_STRENGTH


def _echo_err(message: str) -> None:
    bold = message.startswith(("WARNING", "Error"))
    click.secho(cli_message(message), err=True, fg="red" if bold else None, bold=bold)


@click.command("plan")
@click.argument("data_dir", type=click.Path())
@click.option("--target-per-class", type=click.IntRange(min=1), required=True,
              help="Images (real + synthetic) every class should reach.")
@click.option("--min-threshold", type=click.IntRange(min=0),
              help="Smallest acceptable final class count (default: the target).")
@click.option("--classes", "class_names", callback=parse_class_list,
              help="Explicit class list a,b,c (may name classes with no real image yet).")
@click.option("--config", "config_path", type=click.Path(),
              help="JSON or YAML: prompt templates, variations, negative prompt, attributes.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Base of every per-image seed.")
@click.option("--variation-strength", type=click.FloatRange(0, 1, min_open=True),
              help="Make the images as variations of the class's real training images, noised "
                   "this far (0.3-0.7 stays near the data); default: sample from noise.")
@click.option("--variation-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True,
              help="Share of each class's images made as variations (the rest from noise).")
@click.option("--val-split", type=click.FloatRange(0, 1, max_open=True), default=0.1,
              show_default=True,
              help="With --variation-strength: `genaug train`'s validation split ...")
@click.option("--test-split", type=click.FloatRange(0, 1, max_open=True), default=0.2,
              show_default=True,
              help="... its test split (0: the test images live elsewhere) ...")
@click.option("--split-seed", type=int, default=0, show_default=True,
              help="... and its seed: variations are made of training images only.")
@click.option("--out", type=click.Path(), default="plan.json", show_default=True)
def plan(data_dir, target_per_class, min_threshold, class_names, config_path, seed,
         variation_strength, variation_fraction, val_split, test_split, split_seed, out):
    """Plan the images to generate: how many each class needs, with attribute quotas and a
    check that the final counts are balanced."""
    from genaug.generation import make_plan

    result = make_plan(data_dir, target_per_class=target_per_class,
                       min_threshold=min_threshold, class_names=class_names,
                       config=config_path, seed=seed, variation_strength=variation_strength,
                       variation_fraction=variation_fraction, val_split=val_split,
                       test_split=test_split, split_seed=split_seed)
    path = result.save(out)
    for line in result.summary_lines():
        click.echo(cli_message(line))
    if not result.balance["ok"]:
        _echo_err("WARNING: the plan does not balance the data (see above)")
    click.echo(f"plan written to {path}")


@click.command("fit-generator")
@click.argument("data_dir", type=click.Path())
@click.option("--out", "out_dir", type=click.Path(), default="models/generator",
              show_default=True,
              help="Generator directory (save_pretrained, safetensors).")
@click.option("--resolution", type=click.Choice(["16", "32", "64", "128"]), default="32",
              show_default=True, help="Training and sampling size (32 or 64 usually).")
@click.option("--max-steps", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this much training time (whichever comes first).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--model-size", type=click.Choice(["tiny", "small", "base"]), default="base",
              show_default=True, help="base: 25M-parameter UNet (64/128/256/256).")
@click.option("--color-mode", type=click.Choice(["auto", "grayscale", "rgb"]), default="auto",
              show_default=True)
@click.option("--classes", "class_names", callback=parse_class_list,
              help="Explicit class list a,b,c.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=2e-4,
              show_default=True)
@click.option("--label-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.1,
              show_default=True, help="Label dropout for classifier-free guidance.")
@click.option("--hflip/--no-hflip", default=True, show_default=True,
              help="Random horizontal flips (turn off when mirroring changes the class).")
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=0.9995,
              show_default=True)
@click.option("--prediction-type", type=click.Choice(["epsilon", "v_prediction"]),
              default="epsilon", show_default=True,
              help="What the UNet predicts: the noise or the velocity (sampling follows).")
@click.option("--snr-gamma", type=click.FloatRange(min=0, min_open=True),
              help="Min-SNR-gamma loss weighting (5.0 in the paper); default: plain MSE.")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant",
              show_default=True,
              help="After the warm-up: hold the learning rate, or decay it to zero at "
                   "--max-steps along a cosine.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              default="auto", show_default=True, help="auto: bf16/fp16 on CUDA, fp32 on CPU.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fit_generator(data_dir, out_dir, resolution, max_steps, max_seconds, batch_size, model_size,
                  color_mode, class_names, learning_rate, label_dropout, hflip, ema_decay,
                  prediction_type, snr_gamma, lr_schedule, seed, device, precision, quiet):
    """Train a class-conditional diffusion generator (DDPM) on DATA_DIR."""
    from genaug.generation import fit_generator as fit

    result = fit(data_dir, out_dir=out_dir, class_names=class_names, resolution=int(resolution),
                 color_mode=color_mode, model_size=model_size, max_steps=max_steps,
                 max_seconds=max_seconds, batch_size=batch_size, learning_rate=learning_rate,
                 label_dropout=label_dropout, hflip=hflip, ema_decay=ema_decay,
                 prediction_type=prediction_type, snr_gamma=snr_gamma, lr_schedule=lr_schedule,
                 seed=seed, device=device, precision=precision, progress=not quiet)
    click.echo(result.describe())
    click.echo(f"loss log: {Path(result.path) / 'loss_log.csv'}")


@click.command("distill-generator")
@click.argument("generator", type=click.Path())
@click.option("--out", "out_dir", type=click.Path(), required=True,
              help="Distilled generator directory (same format; replaced atomically).")
@click.option("--steps", type=click.IntRange(min=1), required=True,
              help="Sampling steps of the result, a power of two (2, 4 or 8 usually).")
@click.option("--teacher-steps", type=click.IntRange(min=2),
              help="DDIM steps of the teacher the first round halves (default 64; a "
                   "distilled teacher's own).")
@click.option("--data", "data_dir", type=click.Path(),
              help="The teacher's training images (default: the folder it was fitted on).")
@click.option("--guidance-scale", type=click.FloatRange(min=0),
              help="Guidance of the teacher to distil (default: its own, 2.0).")
@click.option("--max-steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Optimisation steps per round.")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Time for all rounds together (whichever comes first).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-4,
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              default="auto", show_default=True, help="auto: bf16/fp16 on CUDA, fp32 on CPU.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def distill_generator(generator, out_dir, steps, teacher_steps, data_dir, guidance_scale,
                      max_steps, max_seconds, batch_size, learning_rate, seed, device,
                      precision, quiet):
    """Distil GENERATOR into a few-step sampler (progressive distillation), which `genaug
    generate` then uses at its step count."""
    from genaug.generation import distill_generator as distill

    result = distill(generator, out_dir=out_dir, steps=steps, teacher_steps=teacher_steps,
                     data=data_dir, guidance_scale=guidance_scale, max_steps=max_steps,
                     max_seconds=max_seconds, batch_size=batch_size,
                     learning_rate=learning_rate, seed=seed, device=device,
                     precision=precision, progress=not quiet)
    click.echo(result.describe())
    if result.interrupted:
        _echo_err(f"interrupted: saved at {result.sampling_steps} steps; distil {result.path} "
                  "again to go on halving")
    click.echo(f"loss log: {Path(result.path) / 'loss_log.csv'}")


def _load_gate(spec: str):
    """``package.module:factory`` -> a QualityGate (the factory is called without arguments
    when it is not a gate instance already)."""
    from genaug.generation import QualityGate

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"--gate must look like package.module:factory, got {spec!r}")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"cannot load gate {spec!r}: {error}") from None
    gate = target if isinstance(target, QualityGate) else target()
    if not isinstance(gate, QualityGate):
        raise ConfigError(f"{spec} did not give a genaug.generation.QualityGate")
    return gate


def _nothing_accepted(summary: dict, cache_dir) -> str:
    """The one line for a run that ends with no image in the cache."""
    from genaug.cache import GENERATION_SUMMARY

    by_gate: Counter = Counter()
    for entry in summary["classes"].values():
        by_gate.update(entry["rejected_by_gate"])
    reasons = ", ".join(f"{gate} {n}" for gate, n in by_gate.most_common()) or "none"
    return (f"none of the {summary['totals']['requested']} planned images was accepted "
            f"(rejections by gate: {reasons}); lower the gates' thresholds or improve the "
            f"generator (details: {Path(cache_dir) / GENERATION_SUMMARY})")


@click.command("generate")
@click.option("--plan", "plan_path", type=click.Path(), required=True,
              help="plan.json written by `genaug plan`.")
@click.option("--generator", type=click.Path(),
              help="Generator directory written by `genaug fit-generator` (ddpm backend).")
@click.option("--sd-model", type=click.Path(),
              help="Local Stable Diffusion checkpoint directory (sd backend; no download).")
@click.option("--lora", type=click.Path(),
              help="LoRA adapter folder written by `genaug fit-lora` (with --sd-model).")
@click.option("--synthetic-cache", "--cache", "cache_dir", cls=RenamedOption,
              type=click.Path(), required=True,
              help="Synthetic cache directory (an existing one is resumed).")
@gate_options
@click.option("--max-retries", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--gate", "gate_specs", multiple=True,
              help="Extra gate, package.module:factory returning a QualityGate (repeatable).")
@click.option("--image-size", type=click.IntRange(8, 4096),
              help="Output N x N (default: the real images' most common size).")
@click.option("--color-mode", type=click.Choice(["grayscale", "rgb"]),
              help="Output colour mode (default: the real images').")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Images per generator call (default: 256 ddpm / 8 sd on CUDA, less on CPU).")
@click.option("--steps", type=click.IntRange(min=1),
              help="Sampling steps (default: the generator's, 20 ddpm, a distilled one's "
                   "own; 30 sd).")
@click.option("--guidance-scale", type=click.FloatRange(min=0),
              help="Classifier-free guidance (default: 2.0 ddpm, built in for a distilled "
                   "one; 7.5 sd; 1 turns it off).")
@click.option("--sampler", type=click.Choice(["dpm++", "dpm++3m", "unipc", "ddim"]),
              help="ddpm backend sampler (default: the generator's, dpm++, or ddim for a "
                   "generator made by `genaug distill-generator`).")
@click.option("--img2img-fraction", type=click.FloatRange(0, 1), default=0.0,
              show_default=True,
              help="Share of each class's images made as variations of its real images.")
@click.option("--strength", type=click.FloatRange(0, 1, min_open=True),
              help="How far a variation may move from its real image (default: the plan's "
                   f"--variation-strength, else {DEFAULT_VARIATION_STRENGTH}).")
@click.option("--pixel-check/--no-pixel-check", default=True, show_default=True,
              help="ddpm: refuse to write when the first batch looks like noise.")
@click.option("--cuda-graph/--no-cuda-graph", default=None,
              help="ddpm: replay each denoising step as a CUDA graph (default: on with CUDA, "
                   "unless --compile).")
@click.option("--compile", "compile", type=click.Choice(["off", "default",
                                                              "reduce-overhead"]),
              default="off", show_default=True,
              help="ddpm: torch.compile the UNet (kernels cached across runs).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Start no new batch after this many seconds; every class is then partly "
                   "filled, and the same command continues later.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Threads that gate and hash a batch while the next samples (default: up "
                   "to 4).")
@click.option("--ray", "ray", is_flag=False, flag_value="", default=None,
              metavar="[ADDRESS]",
              help="Generate on a Ray cluster (pip install 'genaug[ray]'): without ADDRESS, "
                   "join the Ray instance this machine runs or start a local one; else auto "
                   "or the head node's host:6379. Model and cache paths must be the same on "
                   "every node.")
@click.option("--ray-workers", type=click.IntRange(min=1),
              help="Ray workers, each loading the model once (default: as many as the "
                   "cluster holds).")
@click.option("--ray-gpus-per-worker", type=click.FloatRange(min=0),
              help="GPUs per Ray worker (default: 1 when the cluster has GPUs, else 0).")
@click.option("--ray-cpus-per-worker", type=click.FloatRange(min=0),
              help="CPUs per Ray worker (default 1; a CPU worker's torch threads).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              default="auto", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def generate(plan_path, generator, sd_model, lora, cache_dir, max_retries, gate_specs,
             image_size, color_mode, batch_size, steps, guidance_scale, sampler,
             img2img_fraction, strength, pixel_check, cuda_graph, compile, max_seconds, workers,
             ray, ray_workers, ray_gpus_per_worker, ray_cpus_per_worker, device, precision,
             quiet, **gate_flags):
    """Generate the plan's images into a verified, resumable synthetic cache."""
    from genaug.cache import ENV_REPORT, GENERATION_SUMMARY, lock_cache
    from genaug.generation import GenerationPlan, generate_cache, load_backend, summary_lines

    if bool(generator) == bool(sd_model):
        raise ConfigError("give exactly one of --generator (ddpm) or --sd-model (sd)")
    if lora and not sd_model:
        raise ConfigError("--lora adapts a Stable Diffusion checkpoint: give it with --sd-model")
    select, select_model = gate_flags["select_method"], gate_flags["select_model"]
    if select and not select_model:
        raise ConfigError(f"--synthetic-select {select} and --select-model go together")
    if select_model and not select:
        raise ConfigError("--select-model needs --synthetic-select feature-distance or "
                          "class-margin")
    if select_model and not Path(select_model).is_file():
        raise ConfigError(f"model not found: {select_model}")
    parameters = dict(plan=plan_path, generator=generator, sd_model=sd_model, lora=lora,
                      cache=cache_dir, **gate_flags, max_retries=max_retries,
                      gates=list(gate_specs), image_size=image_size, color_mode=color_mode,
                      batch_size=batch_size, steps=steps, guidance_scale=guidance_scale,
                      sampler=sampler, img2img_fraction=img2img_fraction, strength=strength,
                      pixel_check=pixel_check, cuda_graph=cuda_graph, compile=compile,
                      max_seconds=max_seconds, workers=workers, ray=ray,
                      ray_workers=ray_workers, ray_gpus_per_worker=ray_gpus_per_worker,
                      ray_cpus_per_worker=ray_cpus_per_worker,
                      device=device, precision=precision, argv=sys.argv[1:])
    plan_obj = GenerationPlan.load(plan_path)
    if Path(cache_dir).is_dir():  # refuse before loading the generator, not after
        lock_cache(Path(cache_dir)).close()
    if strength is None:
        strength = (plan_obj.variation["strength"] if plan_obj.variation
                    else DEFAULT_VARIATION_STRENGTH)
    parameters["strength"] = strength
    gates = gate_spec_from_options(gate_flags,
                                   extra_gates=[_load_gate(spec) for spec in gate_specs])
    options = {"strength": strength, "batch_size": batch_size,
               "ray": True if ray == "" else ray, "ray_workers": ray_workers,
               "ray_gpus_per_worker": ray_gpus_per_worker,
               "ray_cpus_per_worker": ray_cpus_per_worker}
    if steps is not None:
        options["steps"] = steps
    if guidance_scale is not None:
        options["guidance_scale"] = guidance_scale
    if generator:
        options.update(sampler=sampler, pixel_check=pixel_check, cuda_graph=cuda_graph,
                       compile=False if compile == "off" else compile)
        backend = load_backend(generator, kind="ddpm", device=device, precision=precision,
                               **options)
    else:
        backend = load_backend(sd_model, kind="sd", device=device, precision=precision,
                               lora=lora, **options)
    where = backend.device
    if ray is not None:
        nodes = len({w["node"] for w in backend.workers})
        where = (f"{backend.ray_workers} Ray worker(s) on {nodes} node(s), "
                 f"{backend.device} ({backend.address})")
    click.echo(f"backend {backend.backend_name} on {where}; "
               f"{plan_obj.total_to_generate} images planned", err=True)
    try:
        summary = generate_cache(
            plan_obj, backend=backend, cache_dir=cache_dir, gates=gates,
            max_retries=max_retries, image_size=image_size, color_mode=color_mode,
            batch_size=batch_size, img2img_fraction=img2img_fraction, max_seconds=max_seconds,
            workers=workers,
            progress=not quiet, parameters=parameters, echo=_echo_err)
    except KeyboardInterrupt:
        _echo_err(f"interrupted: {cache_dir} is consistent; run the same command again to "
                  "continue where it stopped")
        sys.exit(130)
    finally:
        backend.close()
    for line in summary_lines(summary):
        click.echo(line)
    for message in summary["warnings"]:
        _echo_err("WARNING: " + message)
    if not summary["integrity"]["ok"]:
        _echo_err("WARNING: integrity problems: " + "; ".join(summary["integrity"]["problems"][:5]))
    if summary["stopped_by"] == "max_seconds":
        _echo_err(f"stopped after --max-seconds {max_seconds:g}: {summary['totals']['pending']} "
                  "images pending; run the same command again to continue")
    totals = summary["totals"]
    if totals["requested"] and not totals["accepted"]:
        _echo_err(f"Error: {_nothing_accepted(summary, cache_dir)}")
        sys.exit(1)
    click.echo(f"cache: {cache_dir} (summary: {GENERATION_SUMMARY}, {ENV_REPORT})")
