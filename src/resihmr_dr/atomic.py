"""Atomic outputs: a crash never leaves a half-written file or a folder that looks complete.

Every JSON file the package writes goes through :func:`atomic_write_json` (values made
JSON-safe by :func:`json_value`: numpy arrays and scalars as lists and numbers, non-finite
floats as ``null``, paths as strings).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_directory(final: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename.

    On an exception the temporary folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists (pass overwrite=True to replace it)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the final folder private
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make the file private
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_value(value: Any, *, digits: int | None = None) -> Any:
    """``value`` with numpy arrays / scalars as lists / numbers, tuples as lists, non-finite
    floats as ``None`` and paths as strings; floats rounded to ``digits`` decimals if given."""
    if isinstance(value, dict):
        return {k: json_value(v, digits=digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v, digits=digits) for v in value]
    if isinstance(value, np.ndarray):
        return json_value(value.tolist(), digits=digits)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return None
        return value if digits is None else round(value, digits)
    if isinstance(value, Path):
        return str(value)
    return value


def json_text(data: Any, *, indent: int | None = 2, digits: int | None = None, sort_keys: bool = False) -> str:
    """The JSON text of ``data`` made JSON-safe by :func:`json_value` (other objects as ``str``)."""
    return json.dumps(json_value(data, digits=digits), indent=indent, sort_keys=sort_keys, default=str)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2, digits: int | None = None) -> None:
    """Write ``data`` as JSON (:func:`json_text`) to ``path`` through a temporary sibling and one rename."""
    atomic_write_text(path, json_text(data, indent=indent, digits=digits))


# Hidden leftovers of ``atomic_directory``/``atomic_write_text`` killed before their rename.
_STALE = re.compile(r"^\..+\.(partial|old)-[^/]*$")


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Remove the hidden ``.<name>.partial-*`` / ``.<name>.old-*`` leftovers of a killed writer
    in ``folder`` (call it only while holding :func:`exclusive_lock` on ``folder``); returns them."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        if not _STALE.match(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


class FolderBusyError(RuntimeError):
    """Another process holds the lock of an output folder."""


@contextlib.contextmanager
def exclusive_lock(folder: str | Path, *, name: str = ".lock") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``folder/name`` for the ``with`` block.

    The kernel drops the lock when the process dies (SIGKILL included), so a stale lock file
    never blocks a rerun. Raises FolderBusyError if another live process holds it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusyError(
                    f"{folder} is being written by another run (lock {path}); wait for it to finish"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock
