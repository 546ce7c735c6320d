"""Where the output of Ray Train workers goes: each rank's to a log file, rank 0's also to the driver's display.

Without this, Ray forwards every worker's stdout and stderr to the driver whenever it gets to it: lines from all
ranks and from Ray's own processes break into the progress bar and keep arriving after the driver printed its
result. Instead, each worker's file descriptors 1 and 2 go into pipes for the length of the stage (so prints,
warnings, logging and C++ output are all caught); a thread writes every line to ``rank_<r>.log`` and, on rank 0,
sends it over the driver channel, where it prints above the bar, in order with the progress events and always
before the result.

``LIGHTRAY_RAY_OUTPUT=all`` turns this off: every worker prints through Ray as usual, and the driver shows Ray's
own logs too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

SHOW_ALL_ENV = "LIGHTRAY_RAY_OUTPUT"
_SYNC = b"\x00lightray-sync\x00\n"  # written by ``sync``; its arrival means every line before it was handled


def show_all() -> bool:
    """Whether the user asked for all of Ray's and every worker's output on the driver (``LIGHTRAY_RAY_OUTPUT=all``)."""
    return os.environ.get(SHOW_ALL_ENV, "").strip().lower() == "all"


def log_folder(run_dir: str) -> str | None:
    """The folder of the workers' log files: ``<run folder>/worker_logs`` when the run folder is a local path."""
    from lightray import storage

    return None if storage.is_remote(run_dir) else os.path.join(run_dir, "worker_logs")


class _Stream:
    """One redirected file descriptor: a pipe, and a thread that hands each complete line on."""

    def __init__(self, fd: int, name: str, sink: Any, channel: Any) -> None:
        self.fd, self.name, self.sink, self.channel = fd, name, sink, channel
        self.saved = os.dup(fd)
        read_end, self.write_end = os.pipe()
        self.reader = os.fdopen(read_end, "rb", buffering=0)
        self.synced = threading.Event()
        self.thread = threading.Thread(target=self._pump, name=f"lightray-{name}", daemon=True)
        self.thread.start()
        os.dup2(self.write_end, fd)

    def _pump(self) -> None:
        pending = b""
        while chunk := self.reader.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            self._hand_on([line + b"\n" for line in lines])  # the marker keeps its newline, so it ends a line
        self._hand_on([pending] if pending else [])

    def _hand_on(self, lines: list[bytes]) -> None:
        synced = False
        for i, line in enumerate(lines):
            if line.endswith(_SYNC):  # after a partial line (no newline yet), the marker ends it
                lines[i], synced = line[: -len(_SYNC)] + (b"\n" if len(line) > len(_SYNC) else b""), True
        text = b"".join(lines)
        if text:
            with contextlib.suppress(Exception):  # a full disk must not stop training: the lines are lost, not it
                self.sink.write(text)
                self.sink.flush()
            if self.channel is not None:
                with contextlib.suppress(Exception):
                    self.channel.progress.remote([("print", self.name, text.decode(errors="replace"))])
        if synced:
            self.synced.set()

    def sync(self, timeout: float) -> None:
        self.synced.clear()
        os.write(self.fd, _SYNC)
        self.synced.wait(timeout)

    def close(self) -> None:
        os.dup2(self.saved, self.fd)
        os.close(self.saved)
        os.close(self.write_end)
        self.thread.join(timeout=10)
        self.reader.close()


class WorkerOutput:
    """On a Ray Train worker, for the length of a stage: stdout and stderr to ``folder/rank_<rank>.log`` (or, with no
    local folder, to where they went before: Ray's worker log) and, when ``channel`` is given, to the driver."""

    def __init__(self, folder: str | None, rank: int, channel: Any = None) -> None:
        self.path = None if folder is None else os.path.join(folder, f"rank_{rank}.log")
        self.channel = channel
        self._streams: list[_Stream] = []
        self._sink: Any = None

    def __enter__(self) -> WorkerOutput:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if self.path is not None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._sink = open(self.path, "ab")  # a restarted worker group appends to the same file
            self._sink.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}: stage started ---\n".encode())
        else:
            self._sink = os.fdopen(os.dup(2), "wb")
        self._streams = [_Stream(1, "stdout", self._sink, self.channel), _Stream(2, "stderr", self._sink, self.channel)]
        return self

    def sync(self, timeout: float = 2.0) -> None:
        """Return once every line written so far was handed on (so what follows on the channel comes after it)."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for redirected in self._streams:
            redirected.sync(timeout)

    def __exit__(self, *exc: Any) -> None:
        self.sync()
        for redirected in self._streams:
            redirected.close()
        self._streams = []
        self._sink.close()


_current: WorkerOutput | None = None


@contextlib.contextmanager
def captured(folder: str | None, rank: int, channel: Any) -> Iterator[WorkerOutput | None]:
    """Capture this worker's output for the block (see the module's docstring); nothing when the user asked for all."""
    global _current
    if show_all():
        yield None
        return
    with WorkerOutput(folder, rank, channel) as output:
        _current = output
        try:
            yield output
        finally:
            _current = None


def sync_output() -> None:
    """On a worker: let the lines printed so far reach the driver before the next progress event (no-op elsewhere)."""
    if _current is not None:
        _current.sync()
