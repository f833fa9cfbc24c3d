"""Same seed, same batches and same status.json as the recorded reference, on the embedded
digits with a synthetic cache: a refactoring that changes what a run trains on fails here.

The reference, tests/pinned/behaviour.json, was recorded before the sampling and cache layers
moved into genaug.cache and genaug.sampling. A deliberate change of the sampled streams
re-records it::

    python tests/test_pinned_behaviour.py --record

and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

PINNED = Path(__file__).parent / "pinned" / "behaviour.json"

#: Loader settings pinned, each through both loaders. Together they reach every lever of the
#: mixer: a ratio range with a ramp, a cap per class, the pool cap, the fill threshold, label
#: smoothing, mixup, a synthetic weight and class weights.
LOADER_CASES = {
    "ratio_ramp_smoothing": dict(balance="oversample", synthetic_ratio=(0.2, 0.5),
                                 synthetic_label_smoothing=0.1, synthetic_weight=0.5,
                                 class_weight="balanced"),
    "cap_mixup_pool": dict(balance="balanced_batches", synthetic_cap={"1": 0.9, "7": 0.3},
                           synthetic_pool_cap=0.5, mixup=True),
    "fill_to_mean": dict(balance="oversample", synthetic_fill_to="mean",
                         synthetic_classes=("3", "5", "8", "9")),
}
EPOCHS = 2
IMAGE_SIZE = (16, 16)


def _digest(array) -> str:
    array = np.ascontiguousarray(np.asarray(array))
    header = str((array.dtype, array.shape)).encode()
    return hashlib.sha256(array.tobytes() + header).hexdigest()[:12]


def _synthetic_cache(train_dir: Path, root: Path) -> Path:
    """A cache of negated digits (stand-ins for generated images; their pixels differ from
    every real image's) for the minority classes, recorded as derived from real images."""
    from PIL import Image

    from genaug.cache import CacheWriter

    with CacheWriter(root) as writer:
        for class_dir in sorted(train_dir.iterdir()):
            if int(class_dir.name) < 4:
                continue
            for i, path in enumerate(sorted(class_dir.glob("*.png"))[:6]):
                pixels = 255 - np.asarray(Image.open(path).convert("L"))
                writer.add(np.repeat(pixels[..., None], 3, axis=2), class_name=class_dir.name,
                           record_id=f"{class_dir.name}-{i}", source_id=path.stem,
                           generator={"backend": "ddpm", "model": "pinned", "model_hash": "0"})
    return root


def _schedule():
    from genaug.sampling import RampSchedule

    return RampSchedule(epochs=EPOCHS, ramp_fraction=0.5)


def _batches(loader_kind: str, train_dir: Path, cache: Path, settings: dict) -> list:
    common = dict(color_mode="grayscale", image_size=IMAGE_SIZE, batch_size=16, seed=3,
                  synthetic_cache=str(cache), schedule=_schedule(), **settings)
    out = []
    if loader_kind == "pydataset":
        from genaug import BalancedBatchGenerator

        loader = BalancedBatchGenerator(str(train_dir), **common)
        for epoch in range(EPOCHS):
            loader.set_epoch(epoch)
            out.append([[_digest(part) for part in loader[i]] for i in range(len(loader))])
        return out
    from genaug import image_dataset_from_directory

    dataset = image_dataset_from_directory(str(train_dir), **common)
    for epoch in range(EPOCHS):
        dataset.sampler.set_epoch(epoch)
        out.append([[_digest(part) for part in batch] for batch in dataset.as_numpy_iterator()])
    return out


#: status.json keys that name this machine's paths or clocks, not what was trained on.
_VOLATILE = ("cache", "path", "created", "seconds", "timings", "versions")


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _status(train_dir: Path, test_dir: Path, cache: Path, work: Path) -> dict:
    from click.testing import CliRunner

    from genaug.cli import main

    result = CliRunner().invoke(main, [
        "train", str(train_dir), "--test-dir", str(test_dir), "--balanced",
        "--synthetic-cache", str(cache), "--synthetic-ratio", "0.3", "--warmup-epochs", "1",
        "--epochs", "3", "--image-size", "16", "--model-width", "4", "--batch-size", "64",
        "--color-mode", "grayscale", "--seed", "5", "--quiet",
        "--output-dir", str(work / "out"), "--model-dir", str(work / "models")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    status = json.loads((work / "out" / "status.json").read_text())
    metrics = json.loads((work / "out" / "metrics.json").read_text())
    return {"status": _stable(status),
            "metrics": _stable({key: metrics[key] for key in (
                "composition", "synthetic_shares", "sampling", "synthetic_schedule",
                "train_counts", "synthetic_coverage")})}


def record(work: Path) -> dict:
    from genaug.data import digits_longtail

    train_dir, test_dir = digits_longtail(work / "digits")
    cache = _synthetic_cache(train_dir, work / "cache")
    batches = {f"{kind}/{name}": _batches(kind, train_dir, cache, settings)
               for name, settings in LOADER_CASES.items()
               for kind in ("pydataset", "tfdata")}
    return {"batches": batches, "training": _status(train_dir, test_dir, cache, work)}


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    return record(tmp_path_factory.mktemp("pinned"))


@pytest.fixture(scope="module")
def pinned():
    return json.loads(PINNED.read_text())


@pytest.mark.parametrize("case", [f"{kind}/{name}" for name in LOADER_CASES
                                  for kind in ("pydataset", "tfdata")])
def test_same_seed_same_batches_as_recorded(observed, pinned, case):
    got, want = observed["batches"][case], pinned["batches"][case]
    assert [len(epoch) for epoch in got] == [len(epoch) for epoch in want]
    for epoch, (got_epoch, want_epoch) in enumerate(zip(got, want)):
        first = next((i for i, (g, w) in enumerate(zip(got_epoch, want_epoch)) if g != w), None)
        assert first is None, f"{case}: epoch {epoch} differs from batch {first} on"


def test_same_status_and_accounting_as_recorded(observed, pinned):
    got, want = observed["training"], pinned["training"]
    assert got["metrics"] == want["metrics"]
    assert got["status"] == want["status"]


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        PINNED.parent.mkdir(exist_ok=True)
        PINNED.write_text(json.dumps(record(Path(work)), indent=1, sort_keys=True) + "\n")
    print(f"recorded {PINNED}")
