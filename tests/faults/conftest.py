"""Fixtures of the fault tests: a small shape dataset, a tiny generator, a tiny random Stable
Diffusion, and a plan."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "generation"))
from _gen_helpers import build_tiny_sd, write_shapes  # noqa: E402


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """16x16 grey shapes: disc 12, bar 6, ring 3."""
    return write_shapes(tmp_path_factory.mktemp("shapes"), {"disc": 12, "bar": 6, "ring": 3})


@pytest.fixture(scope="session")
def generator(shapes, tmp_path_factory) -> Path:
    """A tiny class-conditional DDPM trained for a few steps."""
    import torch

    from genaug.generation import fit_generator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("gen") / "generator"
    fit_generator(shapes, out_dir=out, resolution=16, model_size="tiny", max_steps=2,
                  batch_size=8, progress=False)
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def plan(shapes, tmp_path_factory) -> Path:
    """A plan for 80 images per class (229 to generate)."""
    from genaug.generation import make_plan

    return make_plan(shapes, target_per_class=80).save(tmp_path_factory.mktemp("plan")
                                                       / "plan.json")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")
