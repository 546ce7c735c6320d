"""The driver channel: a small actor through which rank 0 sends progress, metric history and results.

Ray Train's ``report`` carries checkpoints and their metrics; this carries what the driver shows
live (one progress bar for the whole job), what ``fit`` hands back (weights, metrics, paths), and
calls that must run on the driver (``call_once``: Tune reports of a trial that drives Ray Train).

The actor only holds plain numbers and pickled bytes: it never unpickles rank 0's results or calls, so
its process imports neither torch nor lightray and starts in a fraction of a second (one such process
per run, or per Tune trial).
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ray
from ray import cloudpickle

if TYPE_CHECKING:
    from lightray.callbacks.progress import Renderer


@ray.remote(num_cpus=0)
class DriverChannel:
    """Lives next to the driver; rank 0 writes, the driver reads."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.history: list[dict[str, Any]] = []
        self.final: bytes | None = None  # rank 0's results, pickled
        self.last_call_key = -1  # calls rank 0 asked for, and those the driver has run
        self.done_call_key = -1

    def progress(self, events: list[tuple]) -> None:
        self.events.extend(events)

    def log(self, rows: list[dict[str, Any]]) -> None:
        self.history.extend(rows)

    def restart_from(self, step: int) -> None:
        """A restarted worker group resumes at ``step``: forget history the lost attempt logged after it."""
        self.history = [row for row in self.history if row.get("step", 0) <= step]

    def call_once(self, key: int, call: bytes) -> None:
        """Have the driver run a pickled ``(fn, args)``, in order. Keys grow: a restarted worker group that
        repeats steps sends keys already seen, and those calls are dropped."""
        if key > self.last_call_key:
            self.last_call_key = key
            self.events.append(("call", key, call))

    def call_done(self, key: int) -> None:
        self.done_call_key = max(self.done_call_key, key)

    def calls_done(self) -> int:
        return self.done_call_key

    def finish(self, payload: bytes) -> None:
        self.final = payload

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events

    def result(self) -> tuple[bytes | None, list[dict[str, Any]]]:
        return self.final, self.history


class ChannelRenderer:
    """A progress renderer on rank 0 that forwards to the driver, batching calls to a few per second."""

    def __init__(self, channel: Any, interval: float = 0.2) -> None:
        self.channel = channel
        self.interval = interval
        self._buffer: list[tuple] = []
        self._sent = 0.0

    def _add(self, event: tuple, flush: bool) -> None:
        from lightray.ray_backend.output import sync_output

        self._buffer.append(event)
        now = time.monotonic()
        if flush or now - self._sent >= self.interval:
            sync_output()  # what rank 0 printed before this event shows before it
            self.channel.progress.remote(self._buffer)
            self._buffer, self._sent = [], now

    def start(self, stage: str, description: str, total: float) -> None:
        self._add(("start", stage, description, total), flush=True)

    def update(self, stage: str, n: int, metrics: dict[str, float]) -> None:
        if self._buffer and self._buffer[-1][:2] == ("update", stage):
            self._buffer.pop()  # only the newest position matters
        self._add(("update", stage, n, metrics), flush=False)

    def close(self, stage: str) -> None:
        self._add(("close", stage), flush=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"channel": self.channel, "interval": self.interval, "_buffer": [], "_sent": 0.0}


class ProgressRelay:
    """On the driver: a thread that replays rank 0's progress events on a local renderer, and runs the
    calls rank 0 asked the driver to make (the last ones on exit, in the driver's own thread)."""

    def __init__(self, channel: Any, renderer: Renderer, interval: float = 0.2) -> None:
        self.channel, self.renderer, self.interval = channel, renderer, interval
        self._stop = threading.Event()
        self._lock = threading.Lock()  # events run one batch at a time, in order, in either thread
        self._draining: Any = None  # a drain still in flight: its events are taken off the channel already
        self._thread = threading.Thread(target=self._run, name="lightray-progress", daemon=True)
        self.started = threading.Event()  # set when rank 0 says it started (see Watchdog)

    def __enter__(self) -> ProgressRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for _ in range(2):  # a drain left in flight, then whatever came after it
            self._replay(timeout=60)
        finish = getattr(self.renderer, "finish", None)  # a renderer with a live display ends it here
        if finish is not None:
            finish()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._replay()

    def _replay(self, timeout: float = 10) -> None:
        with self._lock:
            try:
                if self._draining is None:
                    self._draining = self.channel.drain.remote()
                ready, _ = ray.wait([self._draining], timeout=timeout)
                if not ready:  # a busy machine: keep waiting for the same drain next time, so nothing is lost
                    return
                events, self._draining = ray.get(self._draining), None
            except Exception:  # the channel is gone at shutdown
                self._draining = None
                return
            self._run_events(events)

    def _run_events(self, events: list[tuple]) -> None:
        for event in events:
            if event[0] == "call":
                _, key, call = event
                try:
                    fn, args = pickle.loads(call)
                    fn(*args)
                finally:  # also when Tune ends the trial inside the call: rank 0 stops waiting
                    self.channel.call_done.remote(key)
            elif event[0] == "started":  # rank 0's train function began
                self.started.set()
            elif event[0] == "print":  # rank 0's output, above the bar
                _, stream, text = event
                write = getattr(self.renderer, "write", None)
                if write is not None:
                    write(stream, text)
                else:
                    print(text, end="", file=getattr(sys, stream), flush=True)
            else:
                kind, stage, *args = event
                getattr(self.renderer, kind)(stage, *args)


_driver_channel: Any = None  # this worker's channel to the driver; set by the Ray Train worker function


def set_driver_channel(channel: Any) -> None:
    """Record the driver channel of the Ray Train run this worker process belongs to (worker)."""
    global _driver_channel
    _driver_channel = channel


def driver_channel() -> Any:
    """The channel to the driver on a Ray Train worker; None in a local (in-process) run."""
    return _driver_channel


def call_on_driver(key: int, fn: Callable[..., Any], *args: Any, poll: float = 0.05, gone_wait: float = 30.0) -> None:
    """On rank 0: have the driver run ``fn(*args)`` (once per ``key``, see ``call_once``) and wait until it has.

    If the driver is gone meanwhile (Tune stopped the trial: its channel and Ray Train controller end with it),
    Ray Train's clean-up removes this worker within seconds: wait for that quietly for ``gone_wait`` seconds
    rather than print a traceback for every trial a scheduler stops, then fail with a clear message.
    """
    channel = driver_channel()
    channel.call_once.remote(key, cloudpickle.dumps((fn, args)))
    try:
        while ray.get(channel.calls_done.remote()) < key:
            time.sleep(poll)
    except ray.exceptions.RayActorError:
        time.sleep(gone_wait)
        raise RuntimeError(
            "The process that drives this Ray Train run (a Tune trial, or the script that called fit) is gone, "
            "and Ray did not remove this worker: stopping."
        ) from None


def send_result(channel: Any, result: dict[str, Any]) -> None:
    """On rank 0: hand the stage's results (weights, metrics, output) to the driver, pickled."""
    channel.finish.remote(cloudpickle.dumps(result))


def receive_result(channel: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """On the driver: rank 0's results (None if it sent none) and the metric history."""
    final, history = ray.get(channel.result.remote())
    return (None if final is None else pickle.loads(final)), history
