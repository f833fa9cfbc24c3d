"""The public surface: what ``import genaug`` offers a ``model.fit`` user, what IDEs
see of it, and where error and warning classes live."""

from __future__ import annotations

import ast
from pathlib import Path

import genaug

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_exports_what_a_fit_user_needs():
    needed = {"BalancedBatchGenerator", "image_dataset_from_directory", "compute_class_weights",
              "RampSchedule", "SyntheticCache", "LiveSource", "DatasetIndex", "analyze_dataset",
              "GenaugError", "DatasetError", "CacheError", "ConfigError", "OutputError",
              "GenaugWarning", "ConvergenceWarning"}
    assert needed <= set(genaug.__all__)
    for name in genaug.__all__:
        assert getattr(genaug, name).__name__ == name
    assert not [m for m in genaug._EXPORTS.values() if any(p.startswith("_")
                                                           for p in m.split("."))]


def test_ides_see_every_lazy_export_in_the_type_checking_block():
    tree = ast.parse((ROOT / "genaug" / "__init__.py").read_text())
    (block,) = [node for node in tree.body if isinstance(node, ast.If)
                and getattr(node.test, "id", None) == "TYPE_CHECKING"]
    seen = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}
    assert seen == genaug._EXPORTS


def test_evidence_exports_its_user_facing_pieces_only():
    import genaug.evidence as evidence

    assert len(evidence.__all__) <= 22
    helpers = {"write_json", "write_text", "save_figure", "HELPED", "HURT", "UNCLEAR", "METRICS",
               "COMPARISONS", "describe", "thumbnail_grid", "polynomial_kernel"}
    assert not helpers & set(evidence.__all__)
    for name in ("run_compare", "register_arm", "ARMS", "measure_quality", "build_report",
                 "convergence", "paired_difference", "train_feature_extractor",
                 "classification_metrics"):
        assert name in evidence.__all__


def test_every_error_and_warning_class_of_the_application_lives_in_exceptions():
    misplaced = []
    for top in ("genaug/evidence", "genaug/cli", "genaug/classifier", "training"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Warning")):
                    misplaced.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not misplaced
