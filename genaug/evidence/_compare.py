"""``genaug compare``: run every arm at every seed and aggregate the results honestly."""

from __future__ import annotations

import json
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path

from genaug.evidence._arms import arm_config, parse_arms, parse_seeds
from genaug.evidence._compare_report import write_compare_outputs
from genaug.evidence._stats import DEFAULT_THRESHOLD
from genaug.evidence._summary import summarize
from genaug.exceptions import ConfigError, ConvergenceWarning
from genaug.io import to_jsonable, write_json


def run_compare(
    base_config,
    *,
    arms,
    seeds,
    output_dir,
    runner: Callable[[object], dict],
    synthetic_cache=None,
    variation_cache=None,
    progress: Callable[[str], None] | None = print,
    threshold: float = DEFAULT_THRESHOLD,
    resume: bool = False,
) -> dict:
    """Train every arm at every seed on the same test set; write ``compare.json/.md/.png``.

    Runs go seed by seed (all arms of seed 0, then seed 1, ...), so an interrupted comparison
    still holds complete pairs. ``compare.json`` is rewritten after every run. A run that raises
    is recorded as failed with its error and the others still run.

    Parameters
    ----------
    base_config : dataclass
        Options shared by all arms (model, epochs, image size, test set, ...): the training
        application's options record (``training.pipeline.TrainConfig`` for the CLI); each
        arm's run gets a copy with the arm's overrides (:func:`arm_config`).
    arms : str or sequence
        Arm names (see :data:`genaug.evidence.ARMS`).
    seeds : str or sequence of int
    output_dir : path-like
        ``compare.json`` goes here and each run's files to ``compare/<arm>/seed<k>/``.
    runner : callable
        ``runner(config) -> metrics dict``: one training run, evaluated on the held-out test
        set (the CLI hands ``training.pipeline.run_training``). The metrics hold at least
        ``balanced_accuracy``, ``macro_f1``, ``cohen_kappa``, ``per_class`` (with ``recall``
        and ``support``), ``train_counts`` and ``history``.
    synthetic_cache : path-like, optional
        Required by arms that train on synthetic data (``balanced_synthetic``).
    variation_cache : path-like, optional
        Required by arms that train on variations of real images (``balanced_variation``).
    progress : callable, optional
        Receives one line per run start and end.
    threshold : float
        Practical-significance threshold of the verdicts.
    resume : bool, default False
        Keep the runs that ``output_dir/compare.json`` already records as ``ok`` with the
        same effective options (each run stores its own; output paths and verbosity are not
        compared, see :data:`RESUME_IGNORED`) instead of training them again.

    Returns
    -------
    dict
        The content of ``compare.json`` (see :func:`summarize`).
    """
    arms = parse_arms(arms)
    seeds = parse_seeds(seeds)
    output_dir = Path(output_dir)
    caches = {"synthetic_cache": synthetic_cache, "variation_cache": variation_cache}
    configs = {(arm.name, seed): arm_config(base_config, arm, seed=seed, output_dir=output_dir,
                                           **caches)
               for seed in seeds for arm in arms}
    say = progress or (lambda line: None)
    done = _recorded_runs(output_dir / "compare.json") if resume else {}
    runs, result = [], None
    total = len(configs)
    started_all = datetime.now(timezone.utc).isoformat()
    for number, ((arm_name, seed), config) in enumerate(configs.items(), start=1):
        options = to_jsonable(asdict(config) if is_dataclass(config) else dict(vars(config)))
        kept = done.get((arm_name, seed))
        if kept is not None and _same_options(kept.get("config"), options):
            say(f"[{number}/{total}] {arm_name} seed={seed}: kept from compare.json")
            runs.append(kept)
            continue
        say(f"[{number}/{total}] {arm_name} seed={seed}: training ...")
        started = time.perf_counter()
        run = {"arm": arm_name, "seed": seed, "output_dir": str(config.output_dir),
               "config": options}
        try:
            with warnings.catch_warnings():  # reported once for all runs, in the summary
                warnings.simplefilter("ignore", ConvergenceWarning)
                metrics = runner(config)
            run.update(status="ok", metrics=to_jsonable(metrics))
        except KeyboardInterrupt:
            raise
        except Exception as error:  # a failed arm must not stop the others
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            run.update(status="failed", error=message, traceback=traceback.format_exc())
        run["seconds"] = round(time.perf_counter() - started, 1)
        runs.append(run)
        if run["status"] == "ok":
            m = run["metrics"]
            say(f"[{number}/{total}] {arm_name} seed={seed}: done in {run['seconds']:.0f}s, "
                f"balanced accuracy {_num(m.get('balanced_accuracy'))}, macro-F1 "
                f"{_num(m.get('macro_f1'))}, kappa {_num(m.get('cohen_kappa'))}")
        else:
            say(f"[{number}/{total}] {arm_name} seed={seed}: FAILED after "
                f"{run['seconds']:.0f}s: {run['error']}")
        result = _write_summary(runs, arms, seeds, threshold, base_config, caches,
                                started_all, output_dir)
    if result is None:  # every run was kept from compare.json
        result = _write_summary(runs, arms, seeds, threshold, base_config, caches,
                                started_all, output_dir)
    write_compare_outputs(result, output_dir)
    return result


def _write_summary(runs, arms, seeds, threshold, base_config, caches, started_all,
                   output_dir) -> dict:
    result = summarize(runs, arms=[a.name for a in arms], seeds=seeds, threshold=threshold)
    result["setup"] = _setup(base_config, arms, caches, started_all, runs)
    write_json(output_dir / "compare.json", result)
    return result


#: Options a resumed comparison does not compare: where files go and how much is printed.
RESUME_IGNORED = ("output_dir", "model_dir", "model_name", "verbose")


def _recorded_runs(path: Path) -> dict:
    """The ``ok`` runs of an earlier ``compare.json``, by ``(arm, seed)``; none if absent."""
    if not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text(encoding="utf-8")).get("runs", [])
    except (OSError, ValueError, AttributeError) as error:
        raise ConfigError(f"cannot resume from {path}: {error}") from None
    return {(r["arm"], r["seed"]): r for r in runs
            if isinstance(r, dict) and r.get("status") == "ok" and "arm" in r and "seed" in r}


def _same_options(recorded, options) -> bool:
    if not isinstance(recorded, dict):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in RESUME_IGNORED}  # noqa: E731
    return strip(recorded) == strip(options)


def _setup(config, arms, caches, started, runs) -> dict:
    fields = asdict(config) if is_dataclass(config) else dict(vars(config))
    shared = {k: v for k, v in fields.items()
              if k not in ("seed", "output_dir", "model_name", "balanced", "class_weights",
                           "synthetic_cache")}
    return {
        "data_dir": (str(fields["data_dir"]) if fields.get("data_dir")
                     else "the embedded long-tailed digits"),
        "test_set": _test_set(fields, runs),
        **{key: None if path is None else str(path) for key, path in caches.items()},
        "shared_config": to_jsonable(shared),
        "started": started,
        "arm_definitions": {arm.name: to_jsonable(arm.describe()) for arm in arms},
    }


def _test_set(fields, runs) -> str:
    """The test set in words, as the runs reported it (``metrics["test_set"]``)."""
    reported = sorted({r["metrics"]["test_set"] for r in runs
                       if r.get("status") == "ok" and r["metrics"].get("test_set")})
    if len(reported) == 1 and "seed" not in reported[0]:
        return f"{reported[0]} (the same for every run)"
    if fields.get("test_dir"):
        return f"--test-dir {fields['test_dir']} (the same for every run)"
    return (f"a held-out stratified {fields.get('test_split')} split of the real images (or the "
            "manifest's test split), drawn with the run's seed only: the same for every arm at "
            "a seed")


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"
