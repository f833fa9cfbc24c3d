"""``genaug report``: every image written and referenced by index.html, which a browser loads."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from genaug.cache import SyntheticCache
from genaug.cli import main
from genaug.data import DatasetIndex
from genaug.evidence import build_report
from genaug.evidence._report import split_counts

PNG = b"\x89PNG\r\n\x1a\n"


def _sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_split_counts_from_the_dataset_and_cache(tiny_data, tiny_cache):
    index = DatasetIndex.load(tiny_data)
    comp = split_counts(index, SyntheticCache(tiny_cache, class_names=index.class_names))
    assert comp.original.tolist() == [24, 10, 6]
    assert comp.synthetic.tolist() == [0, 8, 12]
    assert comp.share_of_images == pytest.approx([0.0, 8 / 18, 12 / 18])
    assert comp.share_of_draws is None  # only a training run knows its draws
    assert comp.splits["test"]["synthetic"].sum() == 0
    assert comp.source.startswith("the dataset and the synthetic cache")


def test_split_counts_from_manifest_splits(tiny_data, tmp_path):
    rows = ["path,label,split"]
    for i, path in enumerate(sorted(tiny_data.rglob("*.png"))):
        rows.append(f"{path},{path.parent.name},{['train', 'train', 'val', 'test'][i % 4]}")
    (tmp_path / "data.csv").write_text("\n".join(rows))
    comp = split_counts(DatasetIndex.load(tmp_path / "data.csv"))
    total = sum(comp.splits[s]["original"] for s in ("train", "validation", "test"))
    assert total.tolist() == [24, 10, 6]
    assert comp.original.tolist() == comp.splits["train"]["original"].tolist()


def test_split_counts_prefer_the_training_runs_status(tiny_data, tiny_cache):
    index = DatasetIndex.load(tiny_data)
    status = {"per_class": {"cat": {"original": 14, "synthetic": 0},
                            "dog": {"original": 6, "synthetic": 5},
                            "fox": {"original": 4, "synthetic": 11}},
              "per_split": {"train": {"original": {"cat": 14, "dog": 6, "fox": 4},
                                      "synthetic": {"dog": 5, "fox": 11}},
                            "test": {"original": {"cat": 5, "dog": 2, "fox": 1},
                                     "synthetic": {}}}}
    cache = SyntheticCache(tiny_cache, class_names=index.class_names)
    comp = split_counts(index, cache, status=status)
    assert comp.synthetic.tolist() == [0, 5, 11] and "status.json" in comp.source
    assert comp.splits["test"]["original"].tolist() == [5, 2, 1]
    # A status.json of other classes is not about this dataset.
    other = {"per_class": {"x": {"original": 1, "synthetic": 0}}}
    assert split_counts(index, cache, status=other).source.startswith("the dataset")
    # Nor is one of a run without synthetic data about a cache.
    real_only = {"per_class": {n: {"original": 3, "synthetic": 0} for n in ("cat", "dog", "fox")}}
    assert split_counts(index, cache, status=real_only).synthetic.tolist() == [0, 8, 12]
    assert split_counts(index, None, status=real_only).original.tolist() == [3, 3, 3]


def _outputs(tmp_path):
    """An outputs folder as train and compare leave it."""
    out = tmp_path / "outputs"
    for rel in ("confusion_matrix.png", "compare.png", "compare/plain/seed0/confusion_matrix.png",
                "compare/plain/seed1/confusion_matrix.png",
                "compare/balanced/seed0/confusion_matrix.png"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(out / rel)
    (out / "compare.json").write_text(json.dumps({"comparisons": [
        {"arm": "balanced", "reference": "plain", "verdict": "balanced sampling helped (x)"}],
        "warnings": ["only 2 seed(s)"]}))
    return out


def test_every_report_image_is_written_and_referenced(tiny_data, tiny_cache, tmp_path):
    index = DatasetIndex.load(tiny_data)
    cache = SyntheticCache(tiny_cache, class_names=index.class_names)
    written = build_report(index, out=tmp_path / "report", cache=cache,
                           output_dir=_outputs(tmp_path), thumbnails=4)
    names = sorted(p.name for p in written["images"])
    assert names == sorted([
        "counts.png", "synthetic_fraction.png", "split_heatmap.png", "balance_deviation.png",
        "thumbs_000_cat.png", "thumbs_001_dog.png", "thumbs_002_fox.png",
        "confusion_matrix.png", "confusion_plain_seed0.png", "confusion_balanced_seed0.png",
        "compare.png"])
    for path in written["images"]:
        assert path.read_bytes()[:8] == PNG
    page = written["html"].read_text()
    assert sorted(_sources(page)) == names
    assert "balanced sampling helped" in page
    # 4 real + 4 synthetic thumbnails of 64 px with a label column
    assert Image.open(tmp_path / "report" / "thumbs_001_dog.png").size == (80 + 4 * 68, 140)


def test_report_command_without_cache_or_outputs(tiny_data, tmp_path):
    result = CliRunner().invoke(main, ["report", str(tiny_data), "--out", str(tmp_path / "r"),
                                       "--output-dir", str(tmp_path / "nothing")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r" / "index.html").read_text()
    assert len(_sources(page)) == 7  # 4 charts + 3 thumbnail grids
    assert all((tmp_path / "r" / src).is_file() for src in _sources(page))


def _chromium_dom(page) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    profile = page.parent.parent / "chromium-profile"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_page_images_load_in_headless_chromium(tiny_data, tiny_cache, tmp_path):
    index = DatasetIndex.load(tiny_data)
    cache = SyntheticCache(tiny_cache, class_names=index.class_names)
    written = build_report(index, out=tmp_path / "report", cache=cache,
                           output_dir=_outputs(tmp_path))
    total = len(written["images"])
    dom = _chromium_dom(written["html"])
    assert f'data-images-loaded="{total}/{total}"' in dom
    assert dom.count('data-loaded="yes"') == total and 'data-loaded="no"' not in dom
    # The check is real: a missing file is reported by the page.
    (tmp_path / "report" / "counts.png").unlink()
    dom = _chromium_dom(written["html"])
    assert f'data-images-loaded="{total - 1}/{total}"' in dom
    assert "image failed to load: counts.png" in dom


def test_the_report_shows_both_synthetic_shares_and_which_cap_bounds_each(tiny_data, tiny_cache,
                                                                          tmp_path):
    """Under synthetic_cap 0.6 a class's draws stay at 60 % per epoch while
    it trains on more distinct synthetic images; the report names both figures."""
    index = DatasetIndex.load(tiny_data)
    out = tmp_path / "outputs"
    out.mkdir()
    status = {"synthetic_cap": 0.6, "synthetic_pool_cap": None, "per_class": {
        "cat": {"original": 14, "synthetic": 0, "synthetic_share_of_draws": 0.0},
        "dog": {"original": 7, "synthetic": 36, "synthetic_share_of_draws": 0.6},
        "fox": {"original": 4, "synthetic": 11, "synthetic_share_of_draws": 0.55}}}
    (out / "status.json").write_text(json.dumps(status))
    cache = SyntheticCache(tiny_cache, class_names=index.class_names)
    comp = split_counts(index, cache, status=status)
    assert comp.share_of_draws.tolist() == [0.0, 0.6, 0.55] and comp.synthetic_cap == 0.6
    assert comp.share_of_images[1] == pytest.approx(36 / 43)
    written = build_report(index, out=tmp_path / "report", cache=cache, output_dir=out,
                           thumbnails=2)
    page = written["html"].read_text()
    assert "synthetic share of draws (largest epoch)" in page and "60.0%" in page
    assert "synthetic_cap bounds the synthetic share of each epoch&#x27;s draws" in page
