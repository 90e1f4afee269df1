"""The Gaussian map as a hash of fixed-size spatial blocks, held in RAM up to a budget and on disk
beyond it.

A Gaussian lives in the block its mean fell in when it was created (key: the integer block
coordinates ``floor(mean / block_size_m)``); each block is its own
:class:`~langgs_ros.mapping.gaussians.GaussianMap` (structure of arrays, rows in increasing id
order) with a bounding box of its means. A keyframe selects the blocks whose box meets its view
frustum up to its farthest depth before touching any Gaussian (:meth:`BlockStore.frustum_keys`,
a vectorised test over the block table, which is a few thousand entries for a building), and works
on those blocks' rows only (:class:`BlockView`), so its cost follows what the camera sees, not the
map's size. Semantics that arrive later find their Gaussians by id in the blocks recorded with them
(:meth:`BlockStore.locate`).

Blocks are 2 m by default: a 640x480 keyframe (62 degree field of view, 6 m range) meets about 30
to 60 of them indoors, few enough for per-block Python work to vanish next to the numpy work, and
fine enough that the frustum test leaves out what lies behind the camera and, with the far plane at
the keyframe's farthest observed depth, what lies beyond the walls it sees.

Memory: the resident blocks' arrays are kept within ``ram_budget_mb``; beyond it the blocks used
longest ago that the current view does not need are written to per-block files
(:class:`~langgs_ros.mapping.block_files.BlockFiles`) in the map directory (a temporary one
without) and dropped from RAM; a view, fusion or query that needs one loads it back. Nothing is
deleted for want of space: only evidence (a surface seen through, an object gone) removes Gaussians.
Units: metres, fixed frame (REP-105).
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from langgs_ros.errors import MapFileError
from langgs_ros.geometry import invert_transform
from langgs_ros.mapping.block_files import BlockFiles
from langgs_ros.mapping.gaussians import BASE_FIELDS, GaussianMap, check_gaussians
from langgs_ros.types import CameraIntrinsics

__all__ = ["BlockStore", "BlockView", "Block", "Handles", "Region", "block_keys", "key_coords", "DEFAULT_BLOCK_SIZE_M"]

DEFAULT_BLOCK_SIZE_M = 2.0
_BITS = 21
_OFFSET = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1
_UID_LIMIT = np.iinfo(np.uint32).max
_PREVIEW_POINTS = 2048


def _arrays_in(value: object) -> list[np.ndarray]:
    """The numpy arrays in a derived value (an array, or tuples / lists / dicts / dataclasses of them)."""
    if isinstance(value, np.ndarray):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = vars(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays_in(v)]
    return []


def block_keys(points: np.ndarray, size: float) -> np.ndarray:
    """int64 key of the block holding each of ``points`` [N, 3] (m); blocks are ``size`` m cubes."""
    ijk = np.floor(np.asarray(points, np.float64) / size).astype(np.int64) + _OFFSET
    if ijk.size and (ijk.min() < 0 or ijk.max() > _MASK):
        raise ValueError(f"points farther than {_OFFSET * size:.0f} m from the origin cannot be mapped")
    return (ijk[:, 0] << (2 * _BITS)) | (ijk[:, 1] << _BITS) | ijk[:, 2]


def key_coords(keys: np.ndarray) -> np.ndarray:
    """[N, 3] integer block coordinates of int64 ``keys``."""
    keys = np.asarray(keys, np.int64)
    return np.stack([(keys >> (2 * _BITS)) & _MASK, (keys >> _BITS) & _MASK, keys & _MASK], axis=1) - _OFFSET


_BLOCK_VERSIONS = itertools.count(1)


@dataclass
class Block:
    """One block: its Gaussians (None while on disk), their count, box and ids, and what the map
    needs to know of it without loading it."""

    key: int
    gaussians: GaussianMap | None
    count: int = 0
    lo: np.ndarray = field(default_factory=lambda: np.full(3, np.inf, np.float32))
    hi: np.ndarray = field(default_factory=lambda: np.full(3, -np.inf, np.float32))
    uid_lo: int = -1
    uid_hi: int = -1
    anchors: set[int] = field(default_factory=set)
    """Keyframes whose created Gaussians are (or were) in this block (a pose correction's reach)."""
    file: str | None = None
    """Its newest file under ``blocks/`` (None: never written)."""
    dirty: bool = True
    """The resident arrays differ from ``file``."""
    durable: bool = False
    """``file`` was flushed to the disk (saved), not only written to page the block out."""
    last_used: int = 0
    summary: dict[str, np.ndarray] | None = None
    """What the semantic field says of its Gaussians (for queries); None: to be recomputed."""
    preview: tuple[np.ndarray, np.ndarray] | None = None
    """(means, colors) of a few of its Gaussians, kept while it is on disk (the map cloud)."""
    version: int = 0
    """Changed by every change of its Gaussians, to a number no block of this process had before
    (keys of derived caches: a block emptied and made again never repeats a version)."""
    cache: dict[str, tuple[int, object]] = field(default_factory=dict)
    """Derived data (name -> (version it was made at, value)): query indexes, navigation columns."""

    def touch(self, semantics: bool = True) -> None:
        """Note a change: to be written, derived data stale (``semantics``: its query summary too)."""
        self.dirty = True
        self.version = next(_BLOCK_VERSIONS)
        if semantics:
            self.summary = None

    @property
    def resident(self) -> bool:
        return self.gaussians is not None

    def nbytes(self) -> int:
        """Bytes its arrays and derived data hold in RAM (0 on disk)."""
        if self.gaussians is None:
            return 0
        derived = sum(a.nbytes for _, value in self.cache.values() for a in _arrays_in(value))
        return self.gaussians.nbytes() + derived

    def refresh_bounds(self) -> None:
        """Recompute box and id range from the resident rows."""
        assert self.gaussians is not None
        g = self.gaussians
        self.count = len(g)
        if self.count:
            means = g["means"]
            self.lo, self.hi = means.min(axis=0), means.max(axis=0)
            uid = g["uid"]
            self.uid_lo, self.uid_hi = int(uid[0]), int(uid[-1])
        else:
            self.lo, self.hi = np.full(3, np.inf, np.float32), np.full(3, -np.inf, np.float32)
            self.uid_lo = self.uid_hi = -1


@dataclass
class Region:
    """Where an extracted copy came from: its ids and their blocks (extraction order), the store's
    revision then, and the first id the copy's new rows would have taken."""

    uids: np.ndarray
    keys: np.ndarray
    revision: int
    next_uid: int


@dataclass
class Handles:
    """Where some of the Gaussians asked for are right now, grouped by block: entries
    ``bounds[g]:bounds[g + 1]`` lie in ``blocks[g]`` at ``rows``; ``index`` is each entry's position
    among the ``asked`` ids. Valid until a block gains or loses rows."""

    asked: int
    blocks: list[Block]
    bounds: np.ndarray
    rows: np.ndarray
    index: np.ndarray

    @property
    def found(self) -> np.ndarray:
        """bool [asked]: the id was found."""
        out = np.zeros(self.asked, bool)
        out[self.index] = True
        return out

    def __len__(self) -> int:
        return int(self.rows.size)

    @classmethod
    def of_block(cls, blk: Block) -> Handles:
        """Every row of a resident block."""
        rows = np.arange(blk.count)
        return cls(rows.size, [blk], np.array([0, rows.size]), rows, rows)

    def subset(self, entries: np.ndarray) -> Handles:
        """The handles of some of these entries (sorted positions among them)."""
        entries = np.asarray(entries, np.int64)
        bounds = np.searchsorted(entries, self.bounds)
        return Handles(self.asked, self.blocks, bounds, self.rows[entries], self.index[entries])

    def groups(self) -> Iterator[tuple[Block, slice, np.ndarray]]:
        """(block, its entries, their rows in the block) per block."""
        for g, blk in enumerate(self.blocks):
            a, b = int(self.bounds[g]), int(self.bounds[g + 1])
            if b > a:
                yield blk, slice(a, b), self.rows[a:b]


class BlockStore:
    """Gaussians in spatial blocks (see module docstring). ``schema``: per-Gaussian fields."""

    def __init__(self, block_size_m: float = DEFAULT_BLOCK_SIZE_M, ram_budget_mb: float = 0.0,
                 directory: str | Path | None = None) -> None:
        if not (np.isfinite(block_size_m) and block_size_m > 0):
            raise ValueError(f"block size {block_size_m} m is not positive")
        self.block_size = float(block_size_m)
        self.ram_budget_bytes = int(ram_budget_mb * 2**20) if ram_budget_mb > 0 else 0
        """0: no budget (every block stays in RAM)."""
        self._schema: dict[str, tuple[np.dtype, tuple[int, ...], float]] = {
            name: (dtype, shape, 0) for name, (dtype, shape) in BASE_FIELDS.items()}
        self._schema["uid"] = (np.dtype(np.uint32), (), 0)
        self._blocks: dict[int, Block] = {}
        self._next_uid = 0
        self.revision = 0
        """Bumped whenever Gaussians are added, removed or moved (caches keyed on geometry)."""
        self.version = 0
        """Bumped on every change, semantics included (snapshots)."""
        self._tick = 0
        self._table: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.files: BlockFiles | None = BlockFiles(directory) if directory is not None else None
        self._temporary: tempfile.TemporaryDirectory | None = None
        self.anchor_of: Callable[[np.ndarray], np.ndarray] | None = None
        """Keyframe that created each Gaussian id (the mapper's keyframe log); None: none known."""
        self.summarize: Callable[[GaussianMap], dict[str, np.ndarray]] | None = None
        """The semantic field's per-block summary for queries (None: no semantics)."""
        self.summary_fields: frozenset[str] = frozenset()
        """Fields whose change makes a block's summary stale."""
        self.check: Callable[[GaussianMap], None] | None = None
        """Raises ValueError for a block read from disk that does not fit the map (its semantics)."""
        self.paged_out = 0
        self.paged_in = 0
        self._snapshot: tuple[int, GaussianMap] | None = None

    # -- schema -----------------------------------------------------------------------------
    def add_field(self, name: str, dtype: np.dtype | type, shape: tuple[int, ...], fill: float = 0) -> None:
        """Register a per-Gaussian field in every block (existing Gaussians get ``fill``); as
        :meth:`GaussianMap.add_field`."""
        dtype = np.dtype(dtype)
        if name in self._schema:
            have, have_shape, _ = self._schema[name]
            if have != dtype or have_shape != shape:
                raise ValueError(f"field '{name}' is {have}{list(have_shape)}, expected {dtype}{list(shape)}")
        self._schema[name] = (dtype, tuple(shape), fill)
        for blk in self._blocks.values():
            if blk.gaussians is not None:
                blk.gaussians.add_field(name, dtype, shape, fill)
                blk.touch()
        self.version += 1

    def drop_field(self, name: str) -> None:
        """Forget a per-Gaussian field in every block (blocks on disk drop it when read)."""
        self._schema.pop(name, None)
        for blk in self._blocks.values():
            if blk.gaussians is not None and name in blk.gaussians:
                blk.gaussians.drop_field(name)
                blk.touch()
        self.version += 1

    @property
    def fields(self) -> list[str]:
        return list(self._schema)

    def __contains__(self, name: str) -> bool:
        return name in self._schema

    def field_fill(self, name: str) -> float:
        return self._schema[name][2]

    def field_shape(self, name: str) -> tuple[int, ...]:
        """Per-Gaussian shape of a field."""
        return self._schema[name][1]

    def _new_gaussians(self) -> GaussianMap:
        g = GaussianMap()
        for name, (dtype, shape, fill) in self._schema.items():
            g.add_field(name, dtype, shape, fill)
        return g

    # -- size ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return sum(b.count for b in self._blocks.values())

    @property
    def next_uid(self) -> int:
        """The id the next appended Gaussian gets."""
        return self._next_uid

    @property
    def blocks(self) -> list[Block]:
        """Every block, resident or on disk."""
        return list(self._blocks.values())

    def block(self, key: int) -> Block | None:
        return self._blocks.get(int(key))

    def resident_bytes(self) -> int:
        """Bytes of the resident blocks' arrays."""
        return sum(b.nbytes() for b in self._blocks.values())

    def bytes_per_gaussian(self) -> int:
        """Bytes one Gaussian occupies across all fields."""
        return int(sum(np.dtype(d).itemsize * int(np.prod(s, dtype=np.int64)) for d, s, _ in self._schema.values()))

    # -- adding -------------------------------------------------------------------------------
    def append(self, **values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Add Gaussians (fields not given get their fill value; ids are assigned in order) to the
        blocks their means fall in. Returns (uint32 ids [M], int64 block key [M], row in the block [M])."""
        n = len(values["means"])
        if self._next_uid + n > _UID_LIMIT:
            raise OverflowError("the map has used up its 2^32 Gaussian ids")
        uids = np.arange(self._next_uid, self._next_uid + n, dtype=np.uint32)
        self._next_uid += n
        keys = block_keys(values["means"], self.block_size)
        rows = self._insert(keys, {**values, "uid": uids})
        return uids, keys, rows

    def _insert(self, keys: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
        """Put rows (with ids) into the blocks of ``keys``, keeping each block in id order; returns
        the row each got (-1 where a block had to be re-sorted)."""
        rows = np.full(keys.size, -1, np.int64)
        if not keys.size:
            return rows
        order = np.argsort(keys, kind="stable")
        uniq, starts = np.unique(keys[order], return_index=True)
        bounds = np.append(starts, keys.size)
        anchors = self.anchor_of(values["uid"]) if self.anchor_of is not None else None
        for i, key in enumerate(uniq.tolist()):
            sel = order[bounds[i]:bounds[i + 1]]
            blk = self._blocks.get(key)
            if blk is None:
                blk = self._blocks[key] = Block(key=key, gaussians=self._new_gaussians())
                self._table = None
            self._resident(blk)
            g = blk.gaussians
            assert g is not None
            uid = values["uid"][sel]
            in_order = not len(g) or int(uid.min()) > int(g["uid"][-1])
            rows[sel] = g.append(**{name: arr[sel] for name, arr in values.items()})
            if not in_order:  # rows moved in from another block: keep ids increasing
                g.restore({name: arr[np.argsort(g["uid"], kind="stable")] for name, arr in g.to_arrays().items()})
                rows[sel] = -1
            if anchors is not None:
                blk.anchors.update(np.unique(anchors[sel]).tolist())
            self._grow_bounds(blk, values["means"][sel])
            blk.touch()
        self._changed(geometry=True)
        return rows

    def _grow_bounds(self, blk: Block, means: np.ndarray) -> None:
        assert blk.gaussians is not None
        blk.count = len(blk.gaussians)
        blk.lo = np.minimum(blk.lo, means.min(axis=0))
        blk.hi = np.maximum(blk.hi, means.max(axis=0))
        uid = blk.gaussians["uid"]
        blk.uid_lo, blk.uid_hi = int(uid[0]), int(uid[-1])
        self._table = None

    def _changed(self, geometry: bool) -> None:
        self.version += 1
        if geometry:
            self.revision += 1

    # -- selecting ----------------------------------------------------------------------------
    def _block_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys [B], lo [B, 3], hi [B, 3]) of the non-empty blocks."""
        if self._table is None:
            live = [b for b in self._blocks.values() if b.count]
            keys = np.array([b.key for b in live], np.int64)
            lo = np.array([b.lo for b in live], np.float32).reshape(-1, 3)
            hi = np.array([b.hi for b in live], np.float32).reshape(-1, 3)
            self._table = (keys, lo, hi)
        return self._table

    def frustum_keys(self, T_world_cam: np.ndarray, K: CameraIntrinsics, far_m: float,  # noqa: N803
                     near_m: float = 0.0, margin_m: float = 0.05) -> list[int]:
        """Keys of the blocks whose box (grown by ``margin_m``) meets the view frustum of a camera
        (optical frame pose ``T_world_cam``, intrinsics ``K``) between depths ``near_m`` and
        ``far_m`` (m along the optical axis). Conservative: a block left out has no Gaussian in it."""
        keys, lo, hi = self._block_table()
        if not keys.size:
            return []
        lo, hi = lo - margin_m, hi + margin_m
        corners = np.stack([np.where(np.array([(c >> a) & 1 for a in range(3)], bool), hi, lo)
                            for c in range(8)], axis=1)  # [B, 8, 3]
        T = invert_transform(T_world_cam)
        pc = corners @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
        x, y, z = pc[..., 0], pc[..., 1], pc[..., 2]
        # outside a plane of the frustum with all 8 corners -> out (planes through the camera centre:
        # x >= (0 - cx) / fx z, x <= (W - cx) / fx z, same in y; depth between near and far)
        x_lo, x_hi = (-0.5 - K.cx) / K.fx, (K.width - 0.5 - K.cx) / K.fx
        y_lo, y_hi = (-0.5 - K.cy) / K.fy, (K.height - 0.5 - K.cy) / K.fy
        out = ((z < near_m).all(axis=1) | (z > far_m).all(axis=1)
               | (x < x_lo * z).all(axis=1) | (x > x_hi * z).all(axis=1)
               | (y < y_lo * z).all(axis=1) | (y > y_hi * z).all(axis=1))
        return keys[~out].tolist()

    def keys_near(self, lo: np.ndarray, hi: np.ndarray) -> list[int]:
        """Keys of the blocks whose box meets the axis-aligned box ``lo``..``hi`` (m)."""
        keys, blo, bhi = self._block_table()
        meet = np.all(blo <= np.asarray(hi, np.float32), axis=1) & np.all(bhi >= np.asarray(lo, np.float32), axis=1)
        return keys[meet].tolist()

    # -- residency ----------------------------------------------------------------------------
    def _directory(self) -> BlockFiles:
        if self.files is None:  # no map directory: a temporary one, removed with the store
            self._temporary = tempfile.TemporaryDirectory(prefix="langgs-map-")
            self.files = BlockFiles(self._temporary.name)
        return self.files

    def _resident(self, blk: Block) -> None:
        """Load ``blk`` if it is on disk; mark it used."""
        self._tick += 1
        blk.last_used = self._tick
        if blk.gaussians is not None:
            return
        assert blk.file is not None and self.files is not None
        arrays = {k: v for k, v in self.files.read(blk.file).items() if k in self._schema}  # dropped fields go
        g = GaussianMap.from_arrays(arrays)
        for name, (dtype, shape, fill) in self._schema.items():
            g.add_field(name, dtype, shape, fill)  # fields registered since it was written
        if len(g) != blk.count:
            raise MapFileError(f"map block {blk.file} holds {len(g)} Gaussians, the map says {blk.count}")
        self._check(g, blk.file)
        blk.gaussians, blk.dirty = g, False
        self.paged_in += 1

    def _check(self, g: GaussianMap, name: str) -> None:
        """Raise MapFileError for a block whose arrays are not a valid part of this map."""
        try:
            check_gaussians(g)
            if self.check is not None:
                self.check(g)
        except ValueError as exc:
            raise MapFileError(f"map block {name} is inconsistent: {exc}") from None

    def _page_out(self, blk: Block) -> None:
        """Write ``blk`` to disk if it changed, and drop its arrays."""
        assert blk.gaussians is not None
        if blk.dirty or blk.file is None:
            if blk.summary is None and self.summarize is not None:
                blk.summary = self.summarize(blk.gaussians)
            blk.file = self._directory().write(blk.key, blk.gaussians.to_arrays(), durable=False)
            blk.dirty, blk.durable = False, False
        step = max(1, blk.count // _PREVIEW_POINTS)
        blk.preview = (blk.gaussians["means"][::step].copy(), blk.gaussians["colors"][::step].copy())
        blk.gaussians = None
        blk.cache.clear()
        self.paged_out += 1

    def enforce_budget(self, protect: set[int] | None = None, max_blocks: int = 0) -> int:
        """Page out the blocks used longest ago (not in ``protect``) until the resident
        arrays fit ``ram_budget_mb``; at most ``max_blocks`` (0: no limit) unless 25 % over it.
        Returns how many were written out."""
        if not self.ram_budget_bytes:
            return 0
        resident = self.resident_bytes()
        if resident <= self.ram_budget_bytes:
            return 0
        protect = protect or set()
        candidates = sorted((b for b in self._blocks.values() if b.gaussians is not None and b.key not in protect),
                            key=lambda b: b.last_used)
        done = 0
        for blk in candidates:
            if resident <= self.ram_budget_bytes:
                break
            if max_blocks and done >= max_blocks and resident <= 1.25 * self.ram_budget_bytes:
                break
            resident -= blk.nbytes()
            self._page_out(blk)
            done += 1
        return done

    def summary(self, blk: Block) -> dict[str, np.ndarray]:
        """The semantic field's summary of ``blk`` (computed, loading the block, when stale)."""
        if blk.summary is None:
            blk.summary = self.summarize(self.columns_of(blk)) if self.summarize is not None else {}  # type: ignore[arg-type]
        return blk.summary

    def derived(self, blk: Block, name: str, make: Callable[[GaussianMap], object]) -> object:
        """``make(gaussians of blk)``, kept with the block until it changes (a query index, navigation
        columns): a query on an unchanged block pays nothing for it again."""
        hit = blk.cache.get(name)
        if hit is not None and hit[0] == blk.version:
            return hit[1]
        value = make(self.columns_of(blk))
        blk.cache[name] = (blk.version, value)
        return value

    def columns_of(self, blk: Block) -> GaussianMap:
        """The resident arrays of ``blk`` (loaded if on disk; may go back to disk at the next budget check)."""
        self._resident(blk)
        assert blk.gaussians is not None
        return blk.gaussians

    def load_all(self) -> None:
        """Bring every block into RAM (tools, conversions)."""
        for blk in self._blocks.values():
            self._resident(blk)

    # -- working on rows ----------------------------------------------------------------------
    def view(self, keys: list[int]) -> BlockView:
        """The rows of these blocks (loaded if on disk), to read, change and remove in one step."""
        blocks = [self._blocks[k] for k in keys if k in self._blocks]
        for blk in blocks:
            self._resident(blk)
        return BlockView(self, blocks)

    def locate(self, uids: np.ndarray, keys: np.ndarray, rows: np.ndarray | None = None) -> Handles:
        """Find Gaussians by id in the blocks of ``keys`` (one per id, where each was recorded;
        ``rows``: where each was then, checked first); ids no longer there (removed, or moved by a
        pose correction) are not found."""
        uids = np.asarray(uids, np.uint32)
        keys = np.asarray(keys, np.int64)
        blocks: list[Block] = []
        bounds, found_rows, found_index = [0], [], []
        order = np.argsort(keys, kind="stable")  # runs of one key: nearly linear
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if keys.size else np.zeros(0, np.int64)
        for a, b in zip(starts.tolist(), np.append(starts[1:], keys.size).tolist()):
            blk = self._blocks.get(int(sorted_keys[a]))
            if blk is None or not blk.count:
                continue
            self._resident(blk)
            assert blk.gaussians is not None
            sel = order[a:b]
            live = blk.gaussians["uid"]
            want = uids[sel]
            r = np.full(sel.size, -1, np.int64)
            if rows is not None:  # where it was: right unless the block lost rows or took moved ones since
                hint = rows[sel]
                ok = (hint >= 0) & (hint < live.size)
                ok[ok] = live[hint[ok]] == want[ok]
                r[ok] = hint[ok]
            missing = np.flatnonzero(r < 0)
            if missing.size:
                pos = np.searchsorted(live, want[missing])
                ok = pos < live.size
                ok[ok] = live[pos[ok]] == want[missing][ok]
                r[missing[ok]] = pos[ok]
            hit = r >= 0
            if hit.any():
                blocks.append(blk)
                found_rows.append(r[hit])
                found_index.append(sel[hit])
                bounds.append(bounds[-1] + int(hit.sum()))
        cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
        return Handles(int(uids.size), blocks, np.asarray(bounds, np.int64), cat(found_rows), cat(found_index))

    def keys_of_handles(self, handles: Handles) -> np.ndarray:
        """int64 block key of each entry of ``handles``."""
        return np.repeat(np.array([b.key for b in handles.blocks], np.int64), np.diff(handles.bounds))

    def gather(self, handles: Handles, names: list[str]) -> dict[str, np.ndarray]:
        """Copies of ``names`` at the Gaussians of ``handles``, in the handles' order."""
        n = len(handles)
        out = {name: np.empty((n, *self._schema[name][1]), self._schema[name][0]) for name in names}
        for blk, part, rows in handles.groups():
            assert blk.gaussians is not None
            for name in names:
                np.take(blk.gaussians[name], rows, axis=0, out=out[name][part])
        return out

    def scatter(self, handles: Handles, values: dict[str, np.ndarray]) -> None:
        """Write ``values`` (fields -> arrays in the handles' order) back to their rows."""
        for blk, part, rows in handles.groups():
            assert blk.gaussians is not None
            for name, arr in values.items():
                blk.gaussians[name][rows] = arr[part]
            blk.touch(semantics=bool(self.summary_fields & values.keys()))
            if "means" in values:
                blk.refresh_bounds()
                self._table = None
        self._changed(geometry="means" in values)

    def remove_uids(self, handles: Handles) -> int:
        """Delete the Gaussians of ``handles``; returns how many."""
        removed = 0
        for blk, _, rows in handles.groups():
            assert blk.gaussians is not None
            keep = np.ones(blk.count, bool)
            keep[rows] = False
            removed += int((~keep).sum())
            self._keep(blk, keep)
        if removed:
            self._changed(geometry=True)
        return removed

    def _keep(self, blk: Block, keep: np.ndarray) -> None:
        assert blk.gaussians is not None
        blk.gaussians.keep(keep)
        blk.refresh_bounds()
        blk.touch()
        self._table = None

    def rebucket(self, keys: list[int]) -> int:
        """Move the Gaussians of these blocks whose means have left the block's cube (a pose
        correction moved them) into the blocks they lie in now; returns how many changed block."""
        moved = 0
        for key in keys:
            blk = self._blocks.get(key)
            if blk is None or not blk.count:
                continue
            self._resident(blk)
            assert blk.gaussians is not None
            new_keys = block_keys(blk.gaussians["means"], self.block_size)
            out = new_keys != blk.key
            if not out.any():
                continue
            rows = {name: arr[out] for name, arr in blk.gaussians.to_arrays().items()}
            self._keep(blk, ~out)
            self._insert(new_keys[out], rows)
            moved += int(out.sum())
        if moved:
            self._changed(geometry=True)
        return moved

    # -- regions: a copy to work on elsewhere (refinement) ----------------------------------------
    def extract(self, keys: list[int]) -> tuple[GaussianMap, Region]:
        """A copy of the Gaussians of these blocks as one GaussianMap (every field; new rows appended
        to it get ids no Gaussian of the store has), and what :meth:`merge` needs to put it back."""
        blocks = [self._blocks[k] for k in keys if k in self._blocks and self._blocks[k].count]
        for blk in blocks:
            self._resident(blk)
        parts = [b.gaussians.to_arrays() for b in blocks if b.gaussians is not None]
        arrays = ({name: np.concatenate([p[name] for p in parts]) for name in self._schema} if parts else
                  {name: np.zeros((0, *shape), dtype) for name, (dtype, shape, _) in self._schema.items()})
        sub = GaussianMap.from_arrays(arrays)
        for name, (dtype, shape, fill) in self._schema.items():
            sub.add_field(name, dtype, shape, fill)
        sub.reserve_uids(self._next_uid)
        row_keys = np.repeat(np.array([b.key for b in blocks], np.int64), [b.count for b in blocks])
        return sub, Region(arrays["uid"].copy(), row_keys, self.revision, self._next_uid)

    def merge(self, region: Region, sub: GaussianMap, names: list[str]) -> bool:
        """Put a region back after work on ``sub``: fields ``names`` of the Gaussians it still has,
        removal of those it dropped, its new rows (fresh ids). False (nothing written) if the store's
        geometry changed since :meth:`extract`."""
        if self.revision != region.revision:
            return False
        uid = sub["uid"]
        old = uid < region.next_uid
        order = np.argsort(region.uids)
        pos = order[np.searchsorted(region.uids, uid[old], sorter=order)]
        handles = self.locate(uid[old], region.keys[pos])
        self.scatter(handles, {name: sub[name][old][handles.index] for name in names})
        gone = np.ones(region.uids.size, bool)
        gone[pos] = False
        if gone.any():
            self.remove_uids(self.locate(region.uids[gone], region.keys[gone]))
        if (~old).any():
            new = {name: arr[~old] for name, arr in sub.to_arrays().items()}
            n = int((~old).sum())
            new["uid"] = np.arange(self._next_uid, self._next_uid + n, dtype=np.uint32)
            self._next_uid += n
            self._insert(block_keys(new["means"], self.block_size), new)
        return True

    # -- whole map (tools, tests, saving) --------------------------------------------------------
    def snapshot(self) -> GaussianMap:
        """Every Gaussian in one GaussianMap, rows in id order (a copy; loads blocks on disk
        without keeping them). For tools and tests: a per-keyframe path must never call it."""
        g = self._snapshot_of_version()
        out = GaussianMap.from_arrays(g.to_arrays())
        for name, (dtype, shape, fill) in self._schema.items():
            out.add_field(name, dtype, shape, fill)
        out.enable_uids()
        return out

    def _snapshot_of_version(self) -> GaussianMap:
        """:meth:`snapshot`, kept until the store changes (read-only columns for ``store[name]``)."""
        if self._snapshot is not None and self._snapshot[0] == self.version:
            return self._snapshot[1]
        parts: list[dict[str, np.ndarray]] = []
        for blk in self._blocks.values():
            if not blk.count:
                continue
            if blk.gaussians is not None:
                parts.append(blk.gaussians.to_arrays())
            else:
                assert blk.file is not None and self.files is not None
                g = GaussianMap.from_arrays(self.files.read(blk.file))
                self._check(g, blk.file)
                for name, (dtype, shape, fill) in self._schema.items():
                    g.add_field(name, dtype, shape, fill)
                parts.append(g.to_arrays())
        if parts:
            arrays = {name: np.concatenate([p[name] for p in parts]) for name in self._schema}
            order = np.argsort(arrays["uid"], kind="stable")
            arrays = {name: arr[order] for name, arr in arrays.items()}
        else:
            arrays = {name: np.zeros((0, *shape), dtype) for name, (dtype, shape, _) in self._schema.items()}
        g = GaussianMap.from_arrays(arrays)
        for name, (dtype, shape, fill) in self._schema.items():
            g.add_field(name, dtype, shape, fill)
        g.enable_uids()
        self._snapshot = (self.version, g)
        return g

    def preview(self, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        """(means [M, 3], colors [M, 3] uint8) of about ``max_points`` Gaussians evenly spread over
        the map, without loading blocks from disk (theirs come from the few kept in RAM)."""
        step = max(1, int(np.ceil(len(self) / max(1, max_points))))
        means, colors = [], []
        for blk in self._blocks.values():
            if blk.gaussians is not None:
                means.append(blk.gaussians["means"][::step])
                colors.append(blk.gaussians["colors"][::step])
            elif blk.preview is not None:
                kept = max(1, blk.count // step)
                sub = max(1, len(blk.preview[0]) // kept)
                means.append(blk.preview[0][::sub])
                colors.append(blk.preview[1][::sub])
        if not means:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        return np.concatenate(means), np.concatenate(colors)

    def __getitem__(self, name: str) -> np.ndarray:
        """Read-only column ``name`` of :meth:`snapshot` (tools and tests)."""
        col = self._snapshot_of_version()[name]
        col.flags.writeable = False
        return col

    @classmethod
    def from_gaussians(cls, gmap: GaussianMap, block_size_m: float = DEFAULT_BLOCK_SIZE_M,
                       ram_budget_mb: float = 0.0, directory: str | Path | None = None) -> BlockStore:
        """A store holding the Gaussians of ``gmap`` (ids kept if it has them, else assigned)."""
        store = cls(block_size_m, ram_budget_mb, directory)
        for name in gmap.fields:
            if name not in store:
                arr = gmap[name]
                store.add_field(name, arr.dtype, arr.shape[1:], gmap.field_fill(name))
        arrays = gmap.to_arrays()
        if "uid" not in arrays or (arrays["uid"].size and not np.all(np.diff(arrays["uid"].astype(np.int64)) > 0)):
            arrays["uid"] = np.arange(len(gmap), dtype=np.uint32)
        store._next_uid = int(arrays["uid"][-1]) + 1 if len(gmap) else 0
        store._insert(block_keys(arrays["means"], store.block_size), arrays)
        return store

    # -- on disk ----------------------------------------------------------------------------------
    def persist(self, map_dir: str | Path) -> dict[int, str]:
        """Put every non-empty block into ``map_dir/blocks`` and return its file name per key.

        Into the store's own directory only blocks changed since they were last written are
        written (an incremental save), and files written to page blocks out are flushed. A store
        without a directory of its own (or a temporary one) makes ``map_dir`` its own, moving its
        paged-out files there; into any other directory every block is written or copied.
        """
        target = BlockFiles(map_dir)
        home = self.files is not None and self.files.map_dir.resolve() == target.map_dir.resolve()
        if not home and (self.files is None or self._temporary is not None):
            for blk in self._blocks.values():
                if blk.gaussians is None and blk.count:
                    assert blk.file is not None and self.files is not None
                    self.files.copy_to(blk.file, target)
            if self._temporary is not None:
                self._temporary.cleanup()
                self._temporary = None
            self.files, home = target, True
        files = self.files if home else target
        assert files is not None
        names: dict[int, str] = {}
        for blk in self._blocks.values():
            if not blk.count:
                continue
            if blk.gaussians is not None and (blk.dirty or blk.file is None or not home):
                name = files.write(blk.key, blk.gaussians.to_arrays(), durable=True)
                if home:
                    blk.file, blk.dirty, blk.durable = name, False, True
            elif home:
                assert blk.file is not None
                if not blk.durable:
                    files.sync(blk.file)
                    blk.durable = True
                name = blk.file
            else:
                assert blk.file is not None and self.files is not None
                self.files.copy_to(blk.file, target)
                name = blk.file
            names[blk.key] = name
        return names

    def schema(self) -> dict[str, tuple[str, list[int], float]]:
        """Per-Gaussian fields as (dtype, shape, fill) (saved with the map)."""
        return {name: (dtype.str, list(shape), float(fill)) for name, (dtype, shape, fill) in self._schema.items()}

    def reserve_uids(self, next_uid: int) -> None:
        """Never hand out ids below ``next_uid`` (ids of Gaussians removed before a save stay used)."""
        self._next_uid = max(self._next_uid, int(next_uid))

    def add_block_on_disk(self, key: int, file: str, count: int, lo: np.ndarray, hi: np.ndarray,
                          uid_range: tuple[int, int], anchors: set[int], summary: dict[str, np.ndarray] | None) -> None:
        """Register a block that stays in its file until used (loading a saved map)."""
        self._blocks[int(key)] = Block(key=int(key), gaussians=None, count=int(count), lo=np.asarray(lo, np.float32),
                                       hi=np.asarray(hi, np.float32), uid_lo=int(uid_range[0]),
                                       uid_hi=int(uid_range[1]), anchors=set(anchors), file=file, dirty=False,
                                       durable=True, summary=summary)
        self._next_uid = max(self._next_uid, int(uid_range[1]) + 1)
        self._table = None
        self._changed(geometry=True)

    def close(self) -> None:
        """Remove a temporary spill directory."""
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
            self.files = None


class BlockView:
    """The rows of some resident blocks, concatenated in block order: what one keyframe reads and
    changes. ``view[name]`` gathers a column (once) that :meth:`commit` writes back;
    :meth:`read` gathers one that is not written back. Rows are positions in the concatenation.
    The blocks must not change otherwise until :meth:`commit`."""

    def __init__(self, store: BlockStore, blocks: list[Block]) -> None:
        self._store = store
        self.blocks = blocks
        self.offsets = np.cumsum([0] + [b.count for b in blocks]).astype(np.int64)
        self._columns: dict[str, np.ndarray] = {}
        self._written: set[str] = set()
        self._removed: list[np.ndarray] = []

    @property
    def keys(self) -> list[int]:
        return [b.key for b in self.blocks]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __contains__(self, name: str) -> bool:
        return name in self._store

    def read(self, name: str) -> np.ndarray:
        """Column ``name`` over the view's rows (not written back unless also taken by ``view[name]``)."""
        col = self._columns.get(name)
        if col is None:
            dtype, shape, _ = self._store._schema[name]  # noqa: SLF001 - the view is part of the store
            parts = [b.gaussians[name] for b in self.blocks if b.gaussians is not None]
            col = np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)
            self._columns[name] = col
        return col

    def __getitem__(self, name: str) -> np.ndarray:
        self._written.add(name)
        return self.read(name)

    def block_of(self, rows: np.ndarray) -> np.ndarray:
        """Index into :attr:`blocks` of each of ``rows``."""
        return np.searchsorted(self.offsets, rows, side="right") - 1

    def keys_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int64 block key, row within that block) of each of ``rows``."""
        if not self.blocks:
            return np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64)
        block = self.block_of(rows)
        return np.array(self.keys, np.int64)[block], rows - self.offsets[block]

    def remove(self, rows: np.ndarray) -> None:
        """Delete these rows at :meth:`commit`."""
        self._removed.append(np.asarray(rows, np.int64))

    def commit(self) -> int:
        """Write back the columns taken by ``view[name]`` and delete removed rows; returns how many
        were removed. The view is spent afterwards."""
        store = self._store
        removed = np.unique(np.concatenate(self._removed)) if self._removed else np.zeros(0, np.int64)
        geometry = "means" in self._written or removed.size > 0
        for i, blk in enumerate(self.blocks):
            a, b = int(self.offsets[i]), int(self.offsets[i + 1])
            g = blk.gaussians
            assert g is not None
            touched = False
            for name in self._written:
                g[name][:] = self._columns[name][a:b]
                touched = True
            if "means" in self._written:
                blk.refresh_bounds()
                store._table = None  # noqa: SLF001
            if touched:
                blk.touch(semantics=bool(store.summary_fields & self._written))
            lo, hi = np.searchsorted(removed, [a, b])
            if hi > lo:
                keep = np.ones(b - a, bool)
                keep[removed[lo:hi] - a] = False
                store._keep(blk, keep)  # noqa: SLF001
        if self._written or removed.size:
            store._changed(geometry)  # noqa: SLF001
        self._columns.clear()
        self._written.clear()
        self._removed.clear()
        return int(removed.size)
