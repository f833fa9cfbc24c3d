"""The live producer in a child process: images, errors and shutdown cross the boundary."""

import functools
import os
import subprocess
import sys
import time

import pytest
from _live_helpers import fit_with_live

from genaug.cache import SyntheticCache
from genaug.exceptions import ConfigError
from genaug.generation import GateSpec, GenerationError
from genaug.live import LiveSource, RemoteTraceback, SubprocessWorker, build_worker

CLASSES = ["cat", "dog", "snake"]


def factory(generator, cache=None, **backend_options):
    """The tiny generator is undertrained: its noise passes only with the pixel check, blur
    and structure gates off (the near-duplicate gate stays)."""
    return functools.partial(
        build_worker, str(generator), device="cpu", class_names=CLASSES, image_size=(8, 8),
        color_mode="rgb", cache_dir=None if cache is None else str(cache),
        backend_options={"steps": 2, "pixel_check": False, **backend_options},
        gates=GateSpec(blur_min=None, structure_min=None))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes: it holds nothing but its exit status
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def wait_gone(pid, seconds=15.0):
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


def test_fit_consumes_images_made_in_a_child_and_the_child_exits(live_data, tmp_path):
    data, generator = live_data
    worker = SubprocessWorker(factory(generator, tmp_path / "cache"))
    assert worker.producible() == [True, True, True] and worker.pid != os.getpid()
    live = LiveSource(worker, class_names=CLASSES, timeout=2.0, batch_size=4).start()
    assert live.take(1, deadline=time.perf_counter() + 60) is not None  # it produces
    fit_with_live(data, live, epochs=1)
    stats = live.statistics()
    assert stats["generated"] > 0 and stats["producer_error"] is None
    assert stats["consumed"] > 0
    assert wait_gone(worker.pid)
    cache = SyntheticCache(tmp_path / "cache")
    assert len(cache) == stats["accepted"] and not cache.problems
    assert all(r["generator"]["backend"] == "ddpm" for r in cache.records)


def test_a_generator_that_cannot_load_raises_its_own_error_in_the_parent(tmp_path):
    with pytest.raises(ConfigError, match="generator not found") as caught:
        SubprocessWorker(factory(tmp_path / "missing"))
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "build_worker" in str(caught.value.__cause__)  # the child's traceback


def test_a_failing_child_is_reported_and_the_producer_stops(live_data):
    _, generator = live_data
    # the undertrained generator fails its pixel check in the child
    worker = SubprocessWorker(factory(generator, pixel_check=True))
    live = LiveSource(worker, class_names=CLASSES, batch_size=4)
    with pytest.warns(UserWarning, match="live generator stopped: GenerationError"):
        live.start()
        live._thread.join(60)
    assert "does not look like the real data" in live.statistics()["producer_error"]
    assert wait_gone(worker.pid)
    live.close()


def test_the_child_exits_when_the_training_process_is_killed(live_data, tmp_path):
    _, generator = live_data
    script = (
        "import functools, os, signal, sys\n"
        "from genaug.live import SubprocessWorker, build_worker\n"
        "if __name__ == '__main__':\n"
        f"    worker = SubprocessWorker(functools.partial(build_worker, {str(generator)!r}, "
        "device='cpu', class_names=['cat', 'dog', 'snake'], image_size=(8, 8), "
        "color_mode='rgb', backend_options={'pixel_check': False}))\n"
        "    print(worker.pid, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    path = tmp_path / "killed.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr
    assert wait_gone(int(done.stdout.split()[0]))


def test_a_child_that_dies_is_an_error_not_a_hang(live_data):
    _, generator = live_data
    worker = SubprocessWorker(factory(generator))
    os.kill(worker.pid, 9)
    with pytest.raises(GenerationError, match="exited unexpectedly"):
        worker.run(0, [])
    worker.close()


def test_ctrl_c_stops_training_and_child_and_leaves_a_consistent_cache(live_data, tmp_path):
    """A real SIGINT to the whole process group, as a terminal's Ctrl-C sends it."""
    import signal

    data, generator = live_data
    cache = tmp_path / "cache"
    script = (
        "import functools, signal, sys, time\n"
        "from genaug.generation import GateSpec\n"
        "from genaug.live import LiveSource, SubprocessWorker, build_worker\n"
        "if __name__ == '__main__':\n"
        # A background job (the suite run with `&`, CI) starts with SIGINT ignored and Python
        # then installs no KeyboardInterrupt handler: restore what a terminal's process has.
        "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"    worker = SubprocessWorker(functools.partial(build_worker, {str(generator)!r}, "
        "device='cpu', class_names=['cat', 'dog', 'snake'], image_size=(8, 8), "
        f"color_mode='rgb', cache_dir={str(cache)!r}, "
        "backend_options={'steps': 2, 'pixel_check': False}, "
        "gates=GateSpec(blur_min=None, structure_min=None)))\n"
        "    print(worker.pid, flush=True)\n"
        "    try:\n"
        "        with LiveSource(worker, class_names=['cat', 'dog', 'snake'], batch_size=4):\n"
        "            print('training', flush=True)\n"
        "            time.sleep(120)\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted', flush=True)\n"
        "        sys.exit(130)\n")
    path = tmp_path / "ctrl_c.py"
    path.write_text(script)
    process = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    child = int(process.stdout.readline())
    assert process.stdout.readline().strip() == "training"
    deadline = time.monotonic() + 60
    while not list(cache.glob("*/*.png")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the child is writing into the cache
    os.killpg(process.pid, signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 130 and out.strip() == "interrupted"
    assert wait_gone(child)
    written = SyntheticCache(cache)
    assert len(written) > 0 and not written.problems
    assert not [p for p in cache.rglob(".*") if p.is_file() and p.suffix != ".lock"]


def test_a_child_stopped_before_it_takes_a_batch_is_a_clean_stop(live_data):
    _, generator = live_data
    worker = SubprocessWorker(factory(generator))
    worker._stop.set()  # the child leaves its loop without taking the next job
    assert wait_gone(worker.pid)
    assert worker.run(0, []) == ([], 0)
    worker.close()


def test_a_job_crosses_to_the_child_and_back_as_arrays(live_data):
    import numpy as np

    from genaug.live import LiveBatch, LiveJob

    _, generator = live_data
    worker = SubprocessWorker(factory(generator))
    try:
        worker.submit(LiveJob(np.array([0, 2, 2, 1, 0]), np.arange(5)))
        worker.submit(LiveJob(np.array([1, 1]), np.arange(5, 7)))  # sampled while gating
        batches = []
        deadline = time.monotonic() + 60
        while len(batches) < 2 and time.monotonic() < deadline:
            batches += worker.collect(timeout=0.5)
    finally:
        worker.close()
    assert [type(b) for b in batches] == [LiveBatch, LiveBatch]
    first = batches[0]
    assert first.images.dtype == np.uint8 and first.images.shape[1:] == (8, 8, 3)
    assert len(first.images) == len(first.labels) and first.generated.tolist() == [2, 1, 2]
    assert batches[1].generated.tolist() == [0, 2, 0]
