"""Files at a local path or a URI (``file://``, ``s3://``, ``gs://``, ...), through pyarrow's filesystems.

Writes are atomic: a reader sees the old file or the new one, never a part. Locally that is a
temporary file, flushed and fsynced, then renamed over the target (and the folder fsynced). Object
stores publish an object only when its upload completes, so there a write goes straight to the key.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

_LOCAL_SCHEMES = ("", "file")


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
    if is_remote(path):
        import pyarrow.fs

        fs, p = _filesystem(path)
        return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound
    return os.path.exists(local_path(path))


def remove(path: str) -> None:
    if is_remote(path):
        fs, p = _filesystem(path)
        fs.delete_file(p)
    elif os.path.exists(local_path(path)):
        os.remove(local_path(path))


def listdir(path: str) -> list[str]:
    """File names (not paths) in folder ``path``; empty when it does not exist."""
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


def write_atomic(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` with ``write(file)`` so that a failure leaves any previous file untouched."""
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
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


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
    if is_remote(path):
        fs, p = _filesystem(path)
        with fs.open_input_file(p) as f:
            return io.BytesIO(f.read())
    return open(local_path(path), "rb")
