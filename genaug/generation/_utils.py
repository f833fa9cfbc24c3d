"""Small helpers shared by the generation modules: seeds, hashes, devices, image normalisation."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.data import channels_of, convert_mode, resize_array
from genaug.exceptions import ConfigError, GenerationError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def derive_seed(*parts) -> int:
    """A 31-bit seed that depends only on ``parts`` (stable across runs, machines and Pythons)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def canonical_sha256(value) -> str:
    """SHA-256 of the canonical JSON text of ``value``."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def file_sha256(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(directory) -> str:
    """One SHA-256 over every weights file under ``directory`` (relative path + content)."""
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file()
                   and p.suffix in (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
                   and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    if not files:
        raise ConfigError(f"no weights files (.safetensors, .bin) found under {directory}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def offline_hub() -> None:
    """Make sure nothing in this process reaches the Hugging Face Hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def resolve_device(device=None) -> str:
    """``None``/``"auto"``: ``"cuda"`` when available, else ``"cpu"``; checks explicit ones."""
    import torch

    if device is None or str(device) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here")
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise ConfigError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return device


def resolve_dtype(device: str, precision: str = "auto"):
    """Inference/training dtype: bf16 (or fp16 without bf16 support) on CUDA, fp32 on CPU."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def precision_name(dtype) -> str:
    """``fp32``, ``bf16`` or ``fp16``: how a dtype of :func:`resolve_dtype` is recorded."""
    import torch

    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def quiet_diffusers() -> None:
    """Silence diffusers/transformers info logging and per-call progress bars."""
    try:
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
    except ImportError:  # pragma: no cover - diffusers missing is reported elsewhere
        pass
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def require_generation_extras() -> None:
    """Raise a one-line error when torch/diffusers are not installed."""
    missing = []
    for module in ("torch", "diffusers"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not installed; "
                          "install the extra: pip install 'genaug[generation]'")


def to_uint8_hwc(image) -> np.ndarray:
    """PIL image or array (HxW, HxWxC, uint8) -> uint8 HxWxC."""
    if isinstance(image, Image.Image):
        image = np.asarray(image)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise GenerationError(f"generated images must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise GenerationError(f"generated image has an unexpected shape {array.shape}")
    return array


def normalize_image(image, image_size=None, color_mode: str | None = None) -> np.ndarray:
    """Bring an image to ``image_size`` (h, w) and ``color_mode``; returns uint8 HxWxC."""
    array = to_uint8_hwc(image)
    if color_mode is not None:
        want = channels_of(color_mode)
        if array.shape[2] != want:
            source = array[:, :, 0] if array.shape[2] == 1 else array
            array = np.asarray(convert_mode(Image.fromarray(source), color_mode))
            if array.ndim == 2:
                array = array[:, :, None]
    if image_size is not None:
        array = resize_array(array, tuple(image_size), "bicubic" if
                             max(image_size) > max(array.shape[:2]) else "area")
    return np.ascontiguousarray(array)


def device_report(device: str | None = None) -> dict:
    """The device in words, for ``env_report.json``."""
    report = {"device": device, "cpu_count": os.cpu_count()}
    try:
        import torch

        report["cuda_available"] = torch.cuda.is_available()
        report["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            index = (torch.device(device).index or 0) if str(device).startswith("cuda") else 0
            report["gpu"] = torch.cuda.get_device_name(index)
            report["bf16_supported"] = torch.cuda.is_bf16_supported()
        report["torch_threads"] = torch.get_num_threads()
    except ImportError:
        report["cuda_available"] = False
    return report


def progress_bar(*, total=None, desc=None, initial=0, unit="img", enabled=True):
    """A tqdm bar (or a silent stand-in when tqdm is missing or disabled)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        enabled = False
    if not enabled:
        return _NullBar()
    return tqdm(total=total, desc=desc, initial=initial, unit=unit, dynamic_ncols=True,
                leave=True, file=sys.stderr)


class _NullBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def set_postfix_str(self, *args, **kwargs):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
