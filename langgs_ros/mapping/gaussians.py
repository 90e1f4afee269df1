"""Storage of a Gaussian map as a structure of arrays with compact dtypes.

Every per-Gaussian array has the Gaussian index as its first axis; fields can be added (the semantic
field registers its own) and all fields grow, shrink and are pruned together.
Units: means in metres in the fixed frame; scales are standard deviations in metres along the
Gaussian's local axes (local z = surface normal); quaternions (w, x, y, z) rotate local to fixed frame.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GaussianMap", "BASE_FIELDS", "check_gaussians"]

# name -> (dtype, per-Gaussian shape)
BASE_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "means": (np.dtype(np.float32), (3,)),
    "scales": (np.dtype(np.float16), (3,)),
    "quats": (np.dtype(np.float16), (4,)),
    "opacity": (np.dtype(np.uint8), ()),  # 0..255 -> 0..1
    "colors": (np.dtype(np.uint8), (3,)),  # RGB
    "confidence": (np.dtype(np.uint8), ()),  # times confirmed by a keyframe (up to 16), less what saw past it
    "last_seen": (np.dtype(np.int32), ()),  # keyframe index of the last confirmation
}


class GaussianMap:
    """Growable per-Gaussian arrays; ``map[name]`` is a view of the live rows."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._fill: dict[str, float] = {}
        self._size = 0
        self.revision = 0  # bumped whenever Gaussians are added or removed (for caches)
        self._next_uid = 0
        for name, (dtype, shape) in BASE_FIELDS.items():
            self.add_field(name, dtype, shape)

    def add_field(self, name: str, dtype: np.dtype | type, shape: tuple[int, ...], fill: float = 0) -> None:
        """Register a per-Gaussian field; existing Gaussians get ``fill``.

        Registering a field that exists (e.g. after loading) only sets its fill value, after
        checking its dtype and shape.
        """
        if name in self._arrays:
            arr = self._arrays[name]
            if arr.dtype != np.dtype(dtype) or arr.shape[1:] != shape:
                raise ValueError(f"field '{name}' is {arr.dtype}{list(arr.shape[1:])}, expected {np.dtype(dtype)}{list(shape)}")
            self._fill[name] = fill
            return
        cap = len(next(iter(self._arrays.values()))) if self._arrays else 0
        self._arrays[name] = np.full((cap, *shape), fill, dtype=dtype)
        self._fill[name] = fill

    def drop_field(self, name: str) -> None:
        """Forget a per-Gaussian field (a base field cannot be dropped)."""
        if name in BASE_FIELDS:
            raise ValueError(f"'{name}' is a base field")
        self._arrays.pop(name, None)
        self._fill.pop(name, None)

    @property
    def fields(self) -> list[str]:
        """Names of all per-Gaussian fields."""
        return list(self._arrays)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name][: self._size]

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def _reserve(self, n: int) -> None:
        cap = len(self._arrays["means"])
        if n <= cap:
            return
        new_cap = max(n, int(cap * 1.25) + 256)  # a map block's spare rows count against the RAM budget
        for name, arr in self._arrays.items():
            grown = np.zeros((new_cap, *arr.shape[1:]), dtype=arr.dtype)
            grown[: self._size] = arr[: self._size]
            self._arrays[name] = grown

    def append(self, **values: np.ndarray) -> np.ndarray:
        """Append Gaussians; fields not given get their fill value. Returns the new indices."""
        n = len(values["means"])
        start = self._size
        self._reserve(start + n)
        for name, arr in values.items():
            if name not in self._arrays:
                raise KeyError(f"unknown Gaussian field '{name}'")
            self._arrays[name][start : start + n] = arr
        for name in self._arrays.keys() - values.keys():
            self._arrays[name][start : start + n] = self._fill[name]
        if "uid" in self._arrays and "uid" not in values:
            self._arrays["uid"][start : start + n] = np.arange(self._next_uid, self._next_uid + n)
            self._next_uid += n
        self._size = start + n
        self.revision += 1
        return np.arange(start, start + n)

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the Gaussians where ``mask`` (bool [N]) is true, in order."""
        idx = np.flatnonzero(mask)
        for name, arr in self._arrays.items():
            arr[: idx.size] = arr[idx]
        self._size = idx.size
        self.revision += 1

    def enable_uids(self) -> None:
        """Give every Gaussian a stable id (field ``uid``, uint32, increasing in creation order),
        so work that refers to Gaussians outlives pruning, which compacts the rows (a keyframe
        waiting for its semantics). Ids of a loaded map are kept if they increase; else renumbered."""
        if "uid" not in self._arrays:
            self.add_field("uid", np.uint32, ())
        uid = self["uid"]
        if uid.size and not np.all(np.diff(uid.astype(np.int64)) > 0):
            uid[:] = np.arange(uid.size)
        self._next_uid = int(uid[-1]) + 1 if uid.size else 0

    def reserve_uids(self, next_uid: int) -> None:
        """Give appended Gaussians ids from ``next_uid`` on (a copy of part of a larger map)."""
        self._next_uid = max(self._next_uid, int(next_uid))

    @property
    def next_uid(self) -> int:
        """The id the next appended Gaussian gets (with :meth:`enable_uids`)."""
        return self._next_uid

    def rows_of(self, uids: np.ndarray) -> np.ndarray:
        """Current row of each id in ``uids`` (int64, -1 for Gaussians removed since); needs
        :meth:`enable_uids`."""
        live = self["uid"]
        rows = np.searchsorted(live, uids)
        found = rows < live.size
        found[found] = live[rows[found]] == uids[found]
        return np.where(found, rows, -1)

    def field_fill(self, name: str) -> float:
        """Value a field takes for Gaussians appended without it."""
        return self._fill[name]

    def nbytes(self) -> int:
        """Bytes the arrays hold, spare capacity included."""
        return int(sum(arr.nbytes for arr in self._arrays.values()))

    def bytes_per_gaussian(self) -> int:
        """Bytes one Gaussian occupies across all fields."""
        return int(sum(arr[:1].nbytes if len(arr) else np.zeros((1, *arr.shape[1:]), arr.dtype).nbytes
                       for arr in self._arrays.values()))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Live rows of every field (copies), for saving."""
        return {name: self[name].copy() for name in self._arrays}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Put back the rows saved by :meth:`to_arrays` (same fields), e.g. to undo a change."""
        if set(arrays) != set(self._arrays):
            raise ValueError("restore needs the fields the map has")
        for name, arr in arrays.items():
            self._arrays[name] = arr.copy()
        self._size = len(next(iter(arrays.values()))) if arrays else 0
        self.revision += 1

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> GaussianMap:
        """Rebuild from :meth:`to_arrays`; raises ValueError on inconsistent arrays."""
        gmap = cls()
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) > 1:
            raise ValueError(f"per-Gaussian arrays have different lengths {sorted(sizes)}")
        for name, (dtype, shape) in BASE_FIELDS.items():
            arr = arrays.get(name)
            if arr is None or arr.dtype != dtype or arr.shape[1:] != shape:
                raise ValueError(f"field '{name}' missing or not {dtype}{list(shape)}")
        for name, arr in arrays.items():
            gmap._arrays[name] = arr.copy()
            gmap._fill[name] = 0
        gmap._size = sizes.pop() if sizes else 0
        return gmap


def check_gaussians(gmap: GaussianMap) -> None:
    """Raise ValueError if positions, sizes or rotations are not finite or sizes negative (a map
    file of garbage)."""
    if not len(gmap):
        return
    for name in ("means", "scales", "quats"):
        bad = int(np.count_nonzero(~np.isfinite(gmap[name]).all(axis=1)))
        if bad:
            raise ValueError(f"{bad} Gaussians have non-finite {name}")
    if np.any(gmap["scales"] < 0):
        raise ValueError("negative Gaussian scales")
