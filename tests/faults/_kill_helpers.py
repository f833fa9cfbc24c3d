"""The kill -9 harness: run a real ``genaug`` command in a subprocess and SIGKILL it when a
condition polled on the file system first holds (so the kill lands where the command really
is, not where a mock would stop it), then let the test check what it left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLI = "from genaug.cli import main; main()"


@dataclass
class Outcome:
    """How a run ended: ``killed`` (by the harness) or its ``returncode``, and its stderr."""

    killed: bool
    returncode: int
    stderr: str


def genaug_env() -> dict:
    """The environment of a child ``genaug``: this checkout first on its path, one thread."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               KERAS_BACKEND=env.get("KERAS_BACKEND", "tensorflow"))
    return env


def run_genaug(args, *, cwd, kill_when=None, timeout: float = 180.0) -> Outcome:
    """Run ``genaug *args``; SIGKILL it as soon as ``kill_when()`` is true (polled every
    millisecond or so), or let it finish. A run that neither finishes nor meets the condition
    within ``timeout`` seconds is killed and fails the test."""
    log = Path(cwd) / f".stderr-{time.monotonic_ns()}.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", CLI, *map(str, args)], cwd=cwd,
                                   env=genaug_env(), stdout=subprocess.DEVNULL, stderr=stderr)
    killed = False
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None:
            if kill_when is not None and kill_when():
                process.send_signal(signal.SIGKILL)
                killed = True
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"genaug {' '.join(map(str, args))} ran past {timeout} s")
            time.sleep(0.001)
    finally:
        if process.poll() is None and not killed:
            process.kill()
        process.wait(timeout=60)
    text = log.read_text()
    log.unlink()
    return Outcome(killed=killed, returncode=process.returncode, stderr=text)


def count_files(root: Path, pattern: str = "*") -> int:
    """Files under ``root`` whose name matches ``pattern`` (0 while ``root`` is absent)."""
    try:
        return sum(1 for path in root.rglob(pattern) if path.is_file())
    except OSError:  # a folder renamed or removed while it was walked
        return 0


def files_with_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative posix path -> content)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def siblings(path: Path) -> list[str]:
    """Names beside ``path`` that a writer of ``path`` left (``.<name>.*``)."""
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*"))
