"""Generation engine: fit a class-conditional generator, plan the images, make a verified cache.

Three steps, each a CLI command and a function:

* :func:`make_plan` (``genaug plan``): per class, the current count, the target, how many
  images to generate, exact attribute quotas and the balance check.
* :func:`fit_generator` (``genaug fit-generator``): train a class-conditional DDPM (diffusers
  ``UNet2DModel``) on the user's images, no pretrained weights needed.
* :func:`distill_generator` (``genaug distill-generator``): distil a fitted DDPM into a
  few-step DDIM sampler (progressive distillation), saved as a generator of the same format
  that samples at its step count by default.
* :func:`fit_lora` (``genaug fit-lora``): or, with a local Stable Diffusion checkpoint, train
  a LoRA adapter of its UNet on the user's classes (``load_backend(sd, lora=adapter)``).
* :func:`generate_cache` (``genaug generate``): run a backend over the plan, pass every image
  through the quality gates, retry rejections with new deterministic seeds, and write a
  resumable cache with full provenance, a summary and ``env_report.json``.

Reusing the pieces (e.g. a live producer in a background thread)
----------------------------------------------------------------
Load a backend (``ddpm`` from a ``fit-generator`` directory or ``sd`` from a local
Stable Diffusion checkpoint; never downloads)::

    backend = load_backend(path, device="cuda", steps=20, guidance_scale=2.0)

Generate a batch for any classes and seeds (each image comes with its provenance: the
``generator``, ``prompt``, ``negative_prompt``, ``attributes``, ``seed``, ``steps``,
``guidance_scale`` and ``source_id`` record fields)::

    made = backend.generate_batch([GenerationRequest(class_name="cat", seed=7),
                                   GenerationRequest(class_name="dog", seed=8)])
    made[0].image        # uint8 (H, W, C) at the backend's native size
    made[0].provenance   # dict

Build the standard gate chain and run it on one image (normalise it to the output size and
colour mode first, with :func:`normalize_image`)::

    spec = GateSpec(blur_min=60, phash_max=4, verify_model="ref.keras", verify_threshold=0.6)
    gates = spec.build(class_names=index.class_names,
                       reference_images=lambda c: real_images_of(c))
    image = normalize_image(made[0].image, (64, 64), "rgb")
    passed, quality = gates.check(image, "cat")     # quality goes into the record

``check`` remembers accepted images for the near-duplicate gate; ``gates.acceptance_rates()``
and ``gates.collapsed()`` report per-class acceptance (``gates.new_collapse_messages()``: the
warnings not given yet); ``gates.collapse_message(item)`` says
whether a verifier collapse (below 20 %) comes from the verifier (it rejects the class's real
images too: it learned the imbalance) or from the generator (noise, or images the verifier
does not recognise). For batches, ``gates.prepare(images, classes)`` does the
order-independent part (stateless gates, hashes; any thread) and ``gates.finish(image, class,
prepared)`` decides each image in order, from one thread. A backend is used from one thread.
Seeds for retries: ``PlanItem.seed_for(attempt)``. New backends register in ``BACKENDS``.

On several GPUs or machines (``pip install 'genaug[ray]'``), load the generator on the
workers of a Ray cluster instead; ``generate_cache`` then sends its jobs there and writes the
same cache as it would alone::

    backend = load_backend(path, ray=True, ray_workers=4, ray_gpus_per_worker=1)
    generate_cache(plan, backend=backend, cache_dir="/shared/synthetic")
    backend.close()                                   # stops the workers
"""

from genaug.exceptions import GateAcceptanceWarning, GenerationError
from genaug.generation._backends import BACKENDS, backend_kind, load_backend
from genaug.generation._base import (
    DEFAULT_VARIATION_STRENGTH,
    GeneratedImage,
    GenerationRequest,
    GeneratorBackend,
)
from genaug.generation._ddpm_backend import DDPMBackend
from genaug.generation._ddpm_distill import DistillResult, distill_generator
from genaug.generation._ddpm_fit import FitResult, fit_generator
from genaug.generation._gates import (
    DEFAULT_VERIFY_THRESHOLD,
    BlurGate,
    ClassMarginGate,
    FeatureDistanceGate,
    FunctionGate,
    GateChain,
    GateFlag,
    GateResult,
    GateSpec,
    PHashGate,
    PixelStatisticsGate,
    QualityGate,
    StructureGate,
    VerifierGate,
    build_gate_chain,
    real_image_loader,
)
from genaug.generation._generate import generate_cache
from genaug.generation._lora import LoraFitResult, check_lora, fit_lora
from genaug.generation._plan import GenerationConfig, GenerationPlan, PlanItem, make_plan
from genaug.generation._ray import RayBackend  # registers load_backend(ray=...); no Ray import
from genaug.generation._sd_backend import StableDiffusionBackend
from genaug.generation._summary import summary_lines
from genaug.generation._utils import normalize_image

__all__ = [
    "BACKENDS",
    "DEFAULT_VARIATION_STRENGTH",
    "DEFAULT_VERIFY_THRESHOLD",
    "BlurGate",
    "ClassMarginGate",
    "DDPMBackend",
    "DistillResult",
    "FeatureDistanceGate",
    "FitResult",
    "FunctionGate",
    "GateAcceptanceWarning",
    "GateChain",
    "GateFlag",
    "GateResult",
    "GateSpec",
    "GeneratedImage",
    "GenerationConfig",
    "GenerationError",
    "GenerationPlan",
    "GenerationRequest",
    "GeneratorBackend",
    "LoraFitResult",
    "PHashGate",
    "PixelStatisticsGate",
    "PlanItem",
    "QualityGate",
    "RayBackend",
    "StableDiffusionBackend",
    "StructureGate",
    "VerifierGate",
    "check_lora",
    "backend_kind",
    "build_gate_chain",
    "distill_generator",
    "fit_generator",
    "fit_lora",
    "generate_cache",
    "load_backend",
    "make_plan",
    "normalize_image",
    "real_image_loader",
    "summary_lines",
]
