"""Files at a local path or a URI (``file://``, ``s3://``, ``gs://``, ...), through pyarrow's filesystems.

Writes are atomic: a reader sees the old file or the new one, never a part. Locally that is a
temporary file, flushed and fsynced, then renamed over the target (and the folder fsynced). Object
stores publish an object only when its upload completes, so there a write goes straight to the key.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

_LOCAL_SCHEMES = ("", "file")
# A temporary file of an interrupted save older than this is swept when the next save in its folder starts
STALE_TMP_SECONDS = 600.0
_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")  # tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")
_pending: set[str] = set()  # this process's temporary files not yet renamed or removed


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # what open() would give: files follow the umask, as Lightning's do


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URI of a non-local filesystem."""
    return _scheme(path) not in _LOCAL_SCHEMES


def _scheme(path: str) -> str:
    head, sep, _ = str(path).partition("://")
    return head.lower() if sep and head.isalnum() else ""


def local_path(path: str) -> str:
    """A local filesystem path for ``path`` (``file://`` stripped)."""
    path = os.fspath(path)
    return path[len("file://") :] if path.startswith("file://") else path


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


def _filesystem(path: str) -> tuple[Any, str]:
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(path)


def makedirs(path: str) -> None:
    if is_remote(path):
        fs, p = _filesystem(path)
        fs.create_dir(p, recursive=True)
    else:
        os.makedirs(local_path(path), exist_ok=True)


def exists(path: str) -> bool:
    wait_for_writes(path)
    if is_remote(path):
        import pyarrow.fs

        fs, p = _filesystem(path)
        return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound
    return os.path.exists(local_path(path))


def isdir(path: str) -> bool:
    if is_remote(path):
        import pyarrow.fs

        fs, p = _filesystem(path)
        return fs.get_file_info(p).type == pyarrow.fs.FileType.Directory
    return os.path.isdir(local_path(path))


def remove(path: str) -> None:
    """Remove a file; queued behind pending background writes, so an old checkpoint never goes first."""
    if is_remote(path):
        wait_for_writes()
        fs, p = _filesystem(path)
        fs.delete_file(p)
    elif _committer.busy():
        _committer.submit(local_path(path), lambda: _remove_quietly(local_path(path)))
    else:
        _remove_quietly(local_path(path))


def listdir(path: str) -> list[str]:
    """File names (not paths) in folder ``path``; empty when it does not exist."""
    wait_for_writes(path)
    if is_remote(path):
        import pyarrow.fs

        fs, p = _filesystem(path)
        infos = fs.get_file_info(pyarrow.fs.FileSelector(p, allow_not_found=True))
        return [info.base_name for info in infos]
    folder = local_path(path)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def check_writable(folder: str) -> None:
    """Raise a clear error now if files cannot be written into ``folder`` (instead of after an epoch)."""
    try:
        makedirs(folder)
        if not is_remote(folder):
            with tempfile.NamedTemporaryFile(dir=local_path(folder), prefix=".lightray-write-test-"):
                pass
    except OSError as err:
        raise PermissionError(
            f"Cannot write checkpoints to {folder!r}: {err.strerror or err}. Choose a writable `dirpath` "
            "(or `default_root_dir`), or fix the folder's permissions."
        ) from err


def write_atomic(path: str, write: Callable[[IO[bytes] | str], None], background: bool = False) -> None:
    """Write ``path`` with ``write(target)`` so that a failure leaves any previous file untouched.

    ``target`` is a local temporary path (C++ writers such as ``torch.save`` are fastest on a path) or,
    for remote storage, an in-memory buffer that is uploaded in one piece. With ``background=True``
    a local write returns once the data is written, and the fsync and rename finish on a background
    thread, in order; :func:`wait_for_writes` (called by every read, listing and removal here, and at
    the end of each stage) waits for them and re-raises their errors.
    """
    if is_remote(path):
        buffer = io.BytesIO()
        write(buffer)
        fs, p = _filesystem(path)
        parent = p.rsplit("/", 1)[0]
        if parent:
            fs.create_dir(parent, recursive=True)
        with fs.open_output_stream(p) as out:
            out.write(buffer.getbuffer())
        return
    target = local_path(path)
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    sweep_stale_temporaries(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)  # mkstemp makes it 0600
    os.close(fd)
    _pending.add(tmp)
    try:
        write(tmp)
    except BaseException:
        _remove_quietly(tmp)
        raise
    if background:
        _committer.submit(target, lambda: _commit(tmp, target, folder), cleanup=lambda: _remove_quietly(tmp))
    else:
        wait_for_writes()  # keep the order of earlier background commits to the same names
        _commit(tmp, target, folder)


def sweep_stale_temporaries(folder: str) -> list[str]:
    """Remove temporary files that interrupted saves left in ``folder`` (older than ``STALE_TMP_SECONDS``, and
    not this process's own pending ones); returns their names."""
    swept = []
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if not _TMP_NAME.match(name) or path in _pending:
            continue
        try:
            if now - os.path.getmtime(path) > STALE_TMP_SECONDS:
                os.remove(path)
                swept.append(name)
        except OSError:  # gone already, or not ours to remove
            continue
    return swept


def _commit(tmp: str, target: str, folder: str) -> None:
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _pending.discard(tmp)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(folder)


def _remove_quietly(path: str) -> None:
    _pending.discard(path)
    if os.path.exists(path):
        os.remove(path)


class _Committer:
    """One background thread that finishes local atomic writes (and removals after them) in order."""

    def __init__(self) -> None:
        self._executor: Any = None
        self._pending: list[tuple[str, Any]] = []  # (target path, future)
        self._failed: BaseException | None = None
        self._lock = threading.Lock()

    def submit(self, target: str, task: Callable[[], None], cleanup: Callable[[], None] | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        def run() -> None:
            # after a failed write nothing later runs: above all, no removal of the last good checkpoint
            if self._failed is not None:
                if cleanup is not None:
                    cleanup()
                raise RuntimeError(f"not done because an earlier checkpoint write failed: {self._failed}")
            try:
                task()
            except BaseException as err:
                self._failed = err
                if cleanup is not None:
                    cleanup()
                raise

        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lightray-commit")
            self._pending.append((os.path.abspath(target), self._executor.submit(run)))

    def busy(self, prefix: str | None = None) -> bool:
        """Whether a task is pending (for ``prefix``: on that path, or inside that folder)."""
        with self._lock:
            self._pending = [(t, f) for t, f in self._pending if not f.done() or f.exception() is not None]
            if prefix is None:
                return bool(self._pending)
            prefix = os.path.abspath(prefix)
            return any(t == prefix or t.startswith(prefix + os.sep) for t, _ in self._pending)

    def wait(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        errors = [f.exception() for _, f in pending]  # waits for every task, failed or not
        self._failed = None
        for error in errors:
            if error is not None:
                raise error  # the first failure, re-raised in the training process


_committer = _Committer()


def wait_for_writes(path: str | None = None) -> None:
    """Block until background writes (those touching ``path``, or all) are in place; raise the first failure."""
    if path is None or (not is_remote(path) and _committer.busy(local_path(path))):
        _committer.wait()


def _fsync_dir(folder: str) -> None:
    # Makes the rename itself durable; some filesystems refuse to open a folder, which is harmless.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_for_read(path: str) -> IO[bytes]:
    """A readable binary file for ``path`` (remote files are read into memory)."""
    wait_for_writes(path)
    if is_remote(path):
        fs, p = _filesystem(path)
        with fs.open_input_file(p) as f:
            return io.BytesIO(f.read())
    return open(local_path(path), "rb")
