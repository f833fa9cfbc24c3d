"""Generation on Ray: a local cluster of 2 CPUs and the tiny DDPM.

One cluster and one backend of 2 workers serve the whole module: starting a Ray worker that
imports torch is the slow part. The cluster listens on the loopback interface only.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import _gen_helpers
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from genaug.cache import ENV_REPORT, GENERATION_SUMMARY, REJECTIONS_LOG, SyntheticCache
from genaug.cli import main
from genaug.exceptions import ConfigError
from genaug.generation import GateSpec, generate_cache, load_backend, make_plan, summary_lines

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="pip install 'genaug[ray]'")
BACKEND = dict(device="cpu", steps=2, pixel_check=False)
OPTIONS = dict(gates=GateSpec(structure_min=None, blur_min=10, phash_max=20,
                             extra_gates=[_gen_helpers.coin_gate()]),
               max_retries=2, progress=False)
#: the same run on the command line
COMMAND = ["--device", "cpu", "--steps", "2", "--no-pixel-check", "--structure-min", "0",
           "--blur-min", "10", "--phash-max", "20", "--max-retries", "2",
           "--gate", "_gen_helpers:coin_gate", "--quiet"]


@pytest.fixture(scope="module")
def plan(shapes_dir):
    return make_plan(shapes_dir, target_per_class=30)  # disc 18, bar 24, ring 27


@pytest.fixture(scope="module")
def reference(tiny_generator, plan, tmp_path_factory):
    """The plan's cache made in this process, in jobs of 3 (sampled at the batch size, 4)."""
    cache = tmp_path_factory.mktemp("reference") / "cache"
    generate_cache(plan, backend=load_backend(tiny_generator, batch_size=4, **BACKEND),
                   cache_dir=cache, batch_size=3, **OPTIONS)
    return cache


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as patch:
        # Ray binds a node to its outward address on Linux unless told it is a one-machine
        # cluster; read when ray is imported, and inherited by the processes it starts.
        patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False)
        ray.cloudpickle.register_pickle_by_value(_gen_helpers)  # the test gate, for workers
        yield ray
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_backend(cluster, tiny_generator):
    """Two workers, each with its own copy of the generator, sampling jobs of 4."""
    backend = load_backend(tiny_generator, ray=True, ray_workers=2, batch_size=4, **BACKEND)
    yield backend
    backend.close()


def assert_same_cache(made, expected):
    """Same ids, same record fields (but the time of writing), same PNG bytes and pixels,
    the same rejections and the same per-class summary."""
    ours = {r["id"]: r for r in SyntheticCache(made).records}
    theirs = {r["id"]: r for r in SyntheticCache(expected).records}
    assert sorted(ours) == sorted(theirs)
    for record_id, record in ours.items():
        other = theirs[record_id]
        assert {k: v for k, v in record.items() if k != "created"} == {
            k: v for k, v in other.items() if k != "created"}
        assert (made / record["path"]).read_bytes() == (expected / other["path"]).read_bytes()
        with Image.open(made / record["path"]) as a, Image.open(expected / other["path"]) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))

    def rejections(cache):  # a resumed run logs again what it decides again: one each
        return sorted(set((cache / REJECTIONS_LOG).read_text().splitlines()))

    assert rejections(made) == rejections(expected)
    summaries = [json.loads((c / GENERATION_SUMMARY).read_text()) for c in (made, expected)]
    assert summaries[0]["classes"] == summaries[1]["classes"]


@needs_ray
def test_the_cache_made_on_ray_equals_the_single_process_cache(ray_backend, plan, reference,
                                                               tmp_path):
    summary = generate_cache(plan, backend=ray_backend, cache_dir=tmp_path / "c", **OPTIONS)
    assert summary["complete"] and summary["integrity"]["ok"]
    assert_same_cache(tmp_path / "c", reference)
    assert summary["totals"]["accepted"] == len(SyntheticCache(reference)) > 0
    # the summary covers the cluster: both workers made jobs, and every image made was decided
    cluster = summary["cluster"]
    assert cluster["ray_workers"] == 2 and cluster["ray_address"].startswith("127.0.0.1:")
    workers = cluster["workers"]
    assert [w["worker"] for w in workers] == [0, 1]
    assert all(w["jobs"] > 0 and w["images_per_second"] > 0 and w["restarts"] == 0
               and w["device"] == "cpu" for w in workers)
    candidates = sum(c["candidates"] for c in summary["classes"].values())
    assert sum(w["images"] for w in workers) == candidates > 69  # retries: more than planned
    lines = summary_lines(summary)
    assert lines[-2].startswith("Ray worker 0 on 127.0.0.1 (cpu): ")
    env = json.loads((tmp_path / "c" / ENV_REPORT).read_text())
    assert env["device"]["device"] == "cpu" and env["generator"]["backend"] == "ddpm"
    assert [w["worker"] for w in env["cluster"]["workers"]] == [0, 1]
    assert env["cluster"]["workers"][1]["versions"]["genaug"]


@needs_ray
def test_a_worker_killed_mid_batch_is_retried_without_duplicate_or_lost_records(
        ray_backend, plan, reference, tmp_path, monkeypatch):
    from genaug.generation import _ray

    switch = tmp_path / "kill-one-worker"
    switch.touch()
    monkeypatch.setattr(_ray, "KILL_SWITCH", str(switch))
    summary = generate_cache(plan, backend=ray_backend, cache_dir=tmp_path / "c", **OPTIONS)
    assert not switch.exists()  # a worker took it, and exited after sampling a job
    assert sum(w["restarts"] for w in summary["cluster"]["workers"]) == 1
    assert summary["complete"]
    assert_same_cache(tmp_path / "c", reference)
    lines = (tmp_path / "c" / "synthetic_meta.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(line)["id"] for line in lines}) == len(
        SyntheticCache(reference))


#: ``genaug`` in a driver process of its own that joins the module's cluster, with the
#: test gate sent to the workers by value and Ctrl-C raising KeyboardInterrupt (as in a
#: terminal, even when the suite runs as a background job, which ignores SIGINT)
CTRL_C_DRIVER = """
import signal, sys
import ray
import _gen_helpers
from genaug.cli import main
signal.signal(signal.SIGINT, signal.default_int_handler)
ray.init(address=sys.argv[1])
ray.cloudpickle.register_pickle_by_value(_gen_helpers)
main(sys.argv[2:])
"""


def _wait_for_records(cache, process, *, records: int = 2, seconds: float = 300.0) -> None:
    """Until ``records`` images are in the cache (or the process ended, or ``seconds``)."""
    meta, deadline = cache / "synthetic_meta.jsonl", time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if meta.is_file() and meta.read_bytes().count(b"\n") >= records:
            return
        time.sleep(0.01)


@needs_ray
def test_ctrl_c_leaves_a_consistent_cache_that_the_same_command_resumes(
        cluster, ray_backend, tiny_generator, plan, reference, tmp_path):
    plan_path = plan.save(tmp_path / "plan.json")
    cache = tmp_path / "c"
    command = ["generate", "--plan", str(plan_path), "--generator", str(tiny_generator),
               "--synthetic-cache", str(cache), "--batch-size", "4", *COMMAND]
    # one more worker; the module's two hold both CPUs of the cluster
    on_ray = [*command, "--ray", "--ray-workers", "1", "--ray-cpus-per-worker", "0"]
    helpers = os.path.dirname(_gen_helpers.__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [helpers, *filter(None, [os.environ.get("PYTHONPATH")])])}
    address = cluster.get_runtime_context().gcs_address
    # Only the driver is interrupted: a real SIGINT to its process, not to the test's.
    driver = subprocess.Popen([sys.executable, "-c", CTRL_C_DRIVER, address, *on_ray],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        _wait_for_records(cache, driver)
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 130, stderr
    assert "1 Ray worker(s) on 1 node(s), cpu (127.0.0.1:" in stderr
    assert "is consistent; run the same command again" in stderr
    partial = SyntheticCache(cache)
    assert not partial.problems and 2 <= len(partial) < len(SyntheticCache(reference))
    stopped = json.loads((cache / GENERATION_SUMMARY).read_text())
    assert stopped["interrupted"] and not stopped["complete"]
    assert not list(cache.rglob(".*.tmp"))
    # the same command resumes it without Ray, and (a copy of it) on Ray
    shutil.copytree(cache, tmp_path / "copy")
    resumed = CliRunner().invoke(main, command)
    assert resumed.exit_code == 0, resumed.output
    assert "Ray worker" not in resumed.output
    assert_same_cache(cache, reference)
    summary = generate_cache(plan, backend=ray_backend, cache_dir=tmp_path / "copy", **OPTIONS)
    assert summary["complete"]
    assert_same_cache(tmp_path / "copy", reference)


@needs_ray
def test_workers_that_do_not_fit_the_cluster_are_refused(cluster, tiny_generator):
    with pytest.raises(ConfigError, match=r"2 CPU\(s\) and 0 GPU\(s\): 3 worker\(s\)"):
        load_backend(tiny_generator, ray=True, ray_workers=3, **BACKEND)


def test_without_ray_one_line_names_the_extra(tiny_generator, plan, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    plan_path = plan.save(tmp_path / "plan.json")
    command = ["generate", "--plan", str(plan_path), "--generator", str(tiny_generator),
               "--synthetic-cache", str(tmp_path / "c"), *COMMAND]
    for extra, message in ((["--ray"], "ray is not installed; install the extra: "
                                       'pip install "genaug[ray]"'),
                           (["--ray-workers", "2"], "--ray-workers apply to generation on "
                                                    "Ray: give --ray too")):
        result = CliRunner().invoke(main, [*command, *extra])
        assert result.exit_code == 2, (result.output, result.exception)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert errors == [f"Error: {message}"], result.stderr
    assert not (tmp_path / "c").exists()


def test_ray_is_imported_only_when_asked_for():
    script = ("import sys\n"
              "from click.testing import CliRunner\n"
              "import genaug.generation\n"
              "from genaug.cli import main\n"
              "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
              "assert '--ray-workers' in CliRunner().invoke(main, ['generate', '--help']).output\n"
              "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
