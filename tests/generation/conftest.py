"""Fixtures for the generation tests: a small shape dataset, a tiny trained DDPM generator and
a tiny random Stable Diffusion checkpoint, all built locally on CPU (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _gen_helpers import build_tiny_sd, write_shapes


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest single-threaded (and do not fight other jobs for cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """Long-tailed 16x16 grey shapes: disc 12, bar 6, ring 3."""
    return write_shapes(tmp_path_factory.mktemp("shapes"), {"disc": 12, "bar": 6, "ring": 3})


@pytest.fixture(scope="session")
def tiny_generator(shapes_dir, tmp_path_factory) -> Path:
    """A tiny class-conditional DDPM trained for a few steps (saved with save_pretrained)."""
    from genaug.generation import fit_generator

    out = tmp_path_factory.mktemp("gen") / "generator"
    fit_generator(shapes_dir, out_dir=out, resolution=16, model_size="tiny", max_steps=3,
                  batch_size=8, progress=False, log_every=1)
    return out


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")
