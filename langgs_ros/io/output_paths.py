"""Output paths: checked before long work starts, written atomically, failures as clear errors.

Every file the package writes (maps, pictures, answers) goes through :func:`atomic_write`: the
bytes go to a hidden temporary file in the target's directory, are flushed to disk and renamed
over the target, so a crash, a full disk or a kill mid-write never replaces a good file with a
broken one, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from langgs_ros.errors import OutputError

__all__ = ["check_output_dir", "check_output_file", "check_not_an_input", "atomic_write", "remove_stale_temporaries",
           "os_reason"]


def os_reason(exc: OSError) -> str:
    """A short human reason for an OSError (ENOSPC -> 'no space left on the device', ...)."""
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOENT: "no such file or directory",
        errno.ENOTDIR: "a path component is not a directory",
        errno.EISDIR: "is a directory",
    }
    return reasons.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def check_output_dir(path: str | Path, what: str = "output directory", create: bool = True) -> Path:
    """Create ``path`` (and parents) if needed and prove a file can be created in it; with
    ``create=False`` nothing is created: the nearest existing ancestor is checked instead.

    Raises OutputError naming the path when it is a file, cannot be created, or is not writable
    (read-only file system, no permission, no space for even a small file).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, expected a directory")
    where = path
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {what} {path}: {os_reason(exc)}") from None
    else:
        while not where.exists():
            where = where.parent
        if not where.is_dir():
            raise OutputError(f"cannot create {what} {path}: {where} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".langgs-probe-", dir=where)
    except OSError as exc:
        raise OutputError(f"cannot write in {what} {path}: {os_reason(exc)}") from None
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(f"cannot write in {what} {path}: {os_reason(exc)}") from None
    finally:
        os.close(fd)
        Path(probe).unlink(missing_ok=True)
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Check that ``path`` can be written: its directory exists and is writable, it is not a
    directory. Raises OutputError naming the path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory, expected a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"cannot write {what} {path}: {parent} is not a directory")
    check_output_dir(parent, what=f"directory of the {what}")
    return path


def check_not_an_input(output: str | Path, inputs: list[str | Path | None], what: str) -> None:
    """Refuse (OutputError) an output path that is one of ``inputs`` (a map file, a bag, a config)
    or the directory of a bag among them, before any work: nothing is ever written over an input."""
    out = Path(output).resolve()
    for item in inputs:
        if item is None:
            continue
        path = Path(item).resolve()
        bag_dir = path if path.is_dir() else path.parent if path.suffix in (".mcap", ".db3") else None
        if out == path or (bag_dir is not None and out == bag_dir and (bag_dir / "metadata.yaml").exists()):
            raise OutputError(f"{what} {output} is an input ({item}): it would be written over; choose another path")
        if path.is_dir() and out.is_relative_to(path) and (path / "metadata.yaml").exists():
            raise OutputError(f"{what} {output} lies inside the bag {item}; choose a path outside it")


def remove_stale_temporaries(directory: Path, pattern: str) -> int:
    """Remove temporary files matching ``pattern`` left in ``directory`` by a killed writer;
    returns how many were removed."""
    removed = 0
    for tmp in directory.glob(pattern):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *, what: str = "file",
                 prefix: str = ".", suffix: str = ".tmp", mode: int = 0o644, sync: bool = True) -> Path:
    """Write ``path`` atomically with ``write(file)``; raises OutputError on any OS failure
    (the previous content of ``path``, if any, is kept and the temporary file removed).
    ``sync=False`` skips flushing to the disk (a file that only needs to survive the process, e.g.
    a map block paged out of RAM; it is flushed when a save first names it)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a directory")
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {path}: {os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {what} {path}: {os_reason(exc)}; "
                          f"{'the previous file is kept' if path.exists() else 'nothing was written'}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not sync:
        return path
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # the rename is done; a directory that cannot be fsynced (some FUSE mounts) is fine
    return path
