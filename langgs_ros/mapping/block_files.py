"""Per-block files of a Gaussian map on disk: ``<map dir>/blocks/<key>-<token>-<serial>.npz``.

Every write makes a new, uniquely named file (the block's key, a token of the writing process and a
serial number), written to a temporary name, flushed and renamed: a file, once it has its name,
never changes. So the map's manifest (``map.npz``) names a consistent set of files, a crash mid-save
leaves the previous manifest and the files it names intact, and a reader that opened an older
manifest still finds its files until the writer removes what no manifest names any more (after its
next save). One ``.npz`` holds one block's per-Gaussian arrays, uncompressed (zip CRCs are checked).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import zipfile
from pathlib import Path

import numpy as np

from langgs_ros.errors import MapFileError
from langgs_ros.io.output_paths import atomic_write, remove_stale_temporaries

__all__ = ["BlockFiles", "BLOCKS_DIR"]

BLOCKS_DIR = "blocks"


class BlockFiles:
    """The ``blocks/`` directory of one map directory."""

    def __init__(self, map_dir: str | Path) -> None:
        self.map_dir = Path(map_dir)
        self.directory = self.map_dir / BLOCKS_DIR
        self._token = secrets.token_hex(4)
        self._serial = 0
        self.bytes_written = 0
        self.files_written = 0

    def ensure(self) -> None:
        """Create the directory (and remove temporaries a killed writer left)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.directory, ".block-*.tmp")

    def write(self, key: int, arrays: dict[str, np.ndarray], durable: bool = True) -> str:
        """Write one block's arrays atomically (``durable``: flushed to the disk); returns the new
        file's name (relative to ``blocks/``). Raises OutputError on a full or read-only disk
        (nothing is replaced)."""
        self.ensure()
        self._serial += 1
        name = f"{key & 0xFFFFFFFFFFFFFFFF:016x}-{self._token}-{self._serial:08x}.npz"
        path = atomic_write(self.directory / name, lambda fh: np.savez(fh, **arrays), what="map block",
                            prefix=".block-", suffix=".tmp", sync=durable)
        self.bytes_written += path.stat().st_size
        self.files_written += 1
        return name

    def sync(self, name: str) -> None:
        """Flush a file written with ``durable=False`` to the disk."""
        fd = os.open(self.directory / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def valid_name(name: object) -> bool:
        """Whether ``name`` is a block file name this class writes (never a path elsewhere)."""
        return isinstance(name, str) and re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{8}\.npz", name) is not None

    def read(self, name: str) -> dict[str, np.ndarray]:
        """A block's arrays; raises MapFileError if the file is missing, truncated or corrupt
        (FileNotFoundError is raised as is: a writer may have replaced it since the manifest was read)."""
        path = self.directory / name
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
            raise MapFileError(f"map block {path} is corrupt or truncated ({exc or type(exc).__name__})") from None

    def rows(self, name: str) -> int:
        """Gaussians a block file declares (from its id array's header, without reading the
        arrays); raises MapFileError if it is missing or not a block file, FileNotFoundError as is."""
        path = self.directory / name
        try:
            with zipfile.ZipFile(path) as zf, zf.open("uid.npy") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = read(fh)[0]
            return int(shape[0]) if len(shape) == 1 else -1
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
            raise MapFileError(f"map block {path} is corrupt or truncated ({exc or type(exc).__name__})") from None

    def copy_to(self, name: str, other: BlockFiles) -> None:
        """Put file ``name`` into ``other``'s directory (a hard link where possible)."""
        other.ensure()
        src, dst = self.directory / name, other.directory / name
        if dst.exists():
            return
        try:
            os.link(src, dst)
        except OSError:
            tmp = other.directory / f".block-{secrets.token_hex(4)}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)

    def remove_unlisted(self, keep: set[str]) -> int:
        """Delete block files not in ``keep`` (superseded versions); returns how many."""
        removed = 0
        if not self.directory.is_dir():
            return 0
        for path in self.directory.glob("*.npz"):
            if path.name not in keep:
                try:
                    path.unlink()
                    removed += 1
                except OSError:
                    pass
        return removed

    def remove_all(self) -> None:
        """Delete the directory (a temporary spill directory at shutdown)."""
        shutil.rmtree(self.directory, ignore_errors=True)
