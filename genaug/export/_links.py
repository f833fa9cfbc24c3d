"""Putting a file into the exported dataset: a hard link, a copy or a symbolic link."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from genaug.exceptions import OutputError

#: How exported images refer to their originals.
LINK_MODES = ("hard", "copy", "symlink")

#: ``os.link`` errors after which a copy does what the link would have (same bytes, a file of
#: its own): another filesystem, one without hard links, or too many links to one file.
_NO_HARD_LINK = {errno.EXDEV: "on another filesystem", errno.EMLINK: "too many links",
                 errno.EPERM: "hard links not permitted there",
                 errno.ENOTSUP: "hard links not supported there",
                 errno.EOPNOTSUPP: "hard links not supported there"}


class FileLinker:
    """Place files in ``mode`` and count what was done.

    In ``"hard"`` mode a file that cannot be hard-linked (:data:`_NO_HARD_LINK`, e.g. the
    source is on another filesystem: ``EXDEV``) is copied instead; :attr:`copied_instead`
    counts those and :attr:`fallback_reason` says why.

    Parameters
    ----------
    mode : {"hard", "copy", "symlink"}
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.placed = 0
        self.copied_instead = 0
        self.fallback_reason: str | None = None

    def place(self, source: str, destination: Path) -> None:
        """Make ``destination`` (a new path) refer to, or hold a copy of, ``source``."""
        try:
            if self.mode == "hard":
                try:
                    os.link(source, destination)
                except OSError as error:
                    if error.errno not in _NO_HARD_LINK:
                        raise
                    self.fallback_reason = self.fallback_reason or _NO_HARD_LINK[error.errno]
                    self.copied_instead += 1
                    shutil.copy2(source, destination)
            elif self.mode == "symlink":
                os.symlink(os.path.abspath(source), destination)
            else:
                shutil.copy2(source, destination)
        except OSError as error:
            raise OutputError(f"cannot place {source} at {destination}: "
                              f"{error.strerror or error}") from None
        self.placed += 1

    def summary(self) -> dict:
        """What ``status.json`` records: the mode asked for and what was done."""
        return {"mode": self.mode, "files": self.placed,
                "copied_instead_of_hard_link": self.copied_instead,
                "fallback_reason": self.fallback_reason}

    def fallback_message(self) -> str | None:
        """The one line that says hard links fell back to copies, or None."""
        if not self.copied_instead:
            return None
        return (f"{self.copied_instead} of {self.placed} file(s) copied instead of hard-linked "
                f"({self.fallback_reason}); they take their own disk space")
