"""A query's mask as voxel cells: what instance extraction reads instead of single Gaussians.

A cell is the Gaussians of one block that lie in one voxel (``query.cluster_voxel_m``) and share
one *signature*: their segment key at each level (a map track, or an own codebook entry where no
track voted: :func:`segment_keys`). The codebook scores keys, so all Gaussians of a cell have the
same margin at each level and a query decides per signature, not per Gaussian. Each block keeps its
cells (:func:`block_cells`, cached with the block until it changes) with sums over their Gaussians
(count, coordinate sum, box, oldest id, newest observation; over all of them and over the
confirmed ones), so an answer costs what its voxels number: instances are 26-connected cells, an
instance's box, centroid, score and observation times come from the sums, and only the points an
answer returns are read (:meth:`MaskCells.sample_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from langgs_ros.mapping.block_scoring import Columns

__all__ = ["CellTable", "BlockCells", "MaskCells", "build_cells", "block_cells", "segment_keys"]

ALL, CONFIRMED = 0, 1
"""Index of the sums over all Gaussians of a cell and over its confirmed ones."""

_NO_UID = np.iinfo(np.uint32).max
_NO_SEEN = np.iinfo(np.int32).min


@dataclass
class CellTable:
    """Cells of a set of rows of one block; ``order`` lists the rows cell by cell, the confirmed
    rows of a cell first. Sums have a leading axis: [ALL] over all rows, [CONFIRMED] over those
    confirmed by ``min_confirmations`` keyframes (empty: count 0, box +inf..-inf)."""

    voxel: np.ndarray
    """[C, 3] int32 voxel coordinates, floor(mean / voxel_m) in the fixed frame."""
    group: np.ndarray
    """[C] int32 signature of each cell (0 where rows were not grouped); cells sorted by it."""
    start: np.ndarray
    """[C] int32 position in ``order`` of each cell's first row."""
    order: np.ndarray
    """[R] int32 rows of the block."""
    count: np.ndarray
    """[2, C] int32."""
    total: np.ndarray
    """[2, C, 3] float32 sum of the means (m)."""
    lo: np.ndarray
    """[2, C, 3] float32 least coordinates."""
    hi: np.ndarray
    """[2, C, 3] float32 greatest coordinates."""
    min_uid: np.ndarray
    """[2, C] uint32 oldest Gaussian id (empty: the largest uint32)."""
    max_seen: np.ndarray
    """[2, C] int32 newest keyframe index that observed a Gaussian (empty: the least int32)."""
    means: np.ndarray
    """[R, 3] float32 means of the rows of ``order``, in that order (answers read them contiguously)."""
    uid: np.ndarray
    """[R] uint32 ids of the rows of ``order``."""
    colors: np.ndarray
    """[R, 3] uint8 RGB of the rows of ``order``."""


def build_cells(columns: Columns, rows: np.ndarray, group: np.ndarray, voxel_m: float,
                min_confirmations: int) -> CellTable:
    """The cells of ``rows`` of a block's ``columns``, rows of different ``group`` (int64 >= 0,
    per row) in different cells."""
    means = columns["means"][rows].astype(np.float32)
    vox = np.floor(means.astype(np.float64) / voxel_m).astype(np.int64)
    confirmed = columns["confidence"][rows] >= min_confirmations
    if rows.size:
        local = vox - vox.min(axis=0)
        dims = local.max(axis=0) + 1
        linear = (local[:, 0] * dims[1] + local[:, 1]) * dims[2] + local[:, 2]
        key = (group.astype(np.int64) * int(np.prod(dims)) + linear) * 2 + ~confirmed
        sort = np.argsort(key, kind="stable")
        cell_key = key[sort] >> 1
        starts = np.flatnonzero(np.r_[True, cell_key[1:] != cell_key[:-1]])
    else:
        sort, starts = np.zeros(0, np.int64), np.zeros(0, np.int64)
    means, confirmed = means[sort], confirmed[sort]
    ordered = rows[sort]
    uid = columns["uid"][ordered].astype(np.uint32)
    seen = columns["last_seen"][ordered].astype(np.int32)
    c = confirmed[:, None]

    def reduce(op: Any, values: np.ndarray) -> np.ndarray:
        if not starts.size:
            return np.zeros((0, *values.shape[1:]), values.dtype)
        return op.reduceat(values, starts, axis=0)

    count = np.stack([np.diff(np.append(starts, len(sort))), reduce(np.add, confirmed.astype(np.int32))])
    total = np.stack([reduce(np.add, means), reduce(np.add, np.where(c, means, 0))])
    lo = np.stack([reduce(np.minimum, means), reduce(np.minimum, np.where(c, means, np.inf))])
    hi = np.stack([reduce(np.maximum, means), reduce(np.maximum, np.where(c, means, -np.inf))])
    min_uid = np.stack([reduce(np.minimum, uid), reduce(np.minimum, np.where(confirmed, uid, _NO_UID))])
    max_seen = np.stack([reduce(np.maximum, seen), reduce(np.maximum, np.where(confirmed, seen, _NO_SEEN))])
    return CellTable(voxel=vox[sort][starts].astype(np.int32), group=group[sort][starts].astype(np.int32),
                     start=starts.astype(np.int32), order=ordered.astype(np.int32), count=count.astype(np.int32),
                     total=total.astype(np.float32), lo=lo.astype(np.float32), hi=hi.astype(np.float32),
                     min_uid=min_uid, max_seen=max_seen, means=means, uid=uid, colors=columns["colors"][ordered])


def segment_keys(columns: Columns, level: int) -> np.ndarray:
    """[N] int64 segment key of each Gaussian at ``level``: its map track (>= 0), or ``-2 - code``
    for an own codebook entry where no track voted, or -1 "in no segment" (never matches)."""
    t = columns["tracks"][:, level].astype(np.int64)
    own = (columns["track_votes"][:, level] == 0) & (columns["codes"][:, level] >= 0)
    return np.where(t >= 0, t, np.where(own, -2 - columns["codes"][:, level].astype(np.int64), -1))


@dataclass
class BlockCells:
    """A block's cells by signature (codebook fields), kept with the block until it changes."""

    keys: np.ndarray
    """[S, levels] int64 segment keys of each signature (:func:`segment_keys`)."""
    cells: CellTable
    """Cells grouped by signature (``cells.group`` indexes ``keys``)."""


def block_cells(columns: Columns, levels: int, voxel_m: float, min_confirmations: int) -> BlockCells:
    """:class:`BlockCells` of a block (Gaussians in no segment at every level are left out)."""
    keys = np.stack([segment_keys(columns, level) for level in range(levels)], axis=1)
    rows = np.flatnonzero(np.any(keys != -1, axis=1))
    signatures, group = np.unique(keys[rows], axis=0, return_inverse=True)
    return BlockCells(signatures.reshape(-1, levels), build_cells(columns, rows, group.reshape(-1), voxel_m,
                                                                  min_confirmations))


@dataclass
class _Part:
    """Cells of one block in a mask: their table, which of its cells, and their margins."""

    block: Any
    table: CellTable
    cells: np.ndarray
    cell_margin: np.ndarray | None
    """[len(cells)] margin of every Gaussian of each cell; None: per row, ``row_margin``."""
    row_margin: np.ndarray | None = None
    """[R] margin per position of ``table.order``."""


class MaskCells:
    """The cells of a query's mask across blocks, with margin sums for scores and ranking."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self._parts: list[_Part] = []
        self._built: dict[str, np.ndarray] | None = None

    def add(self, block: Any, table: CellTable, cells: np.ndarray, cell_margin: np.ndarray | None = None,
            row_margin: np.ndarray | None = None) -> None:
        """Cells ``cells`` of ``table`` (of ``block``), with one margin per cell or per row."""
        if cells.size:
            self._parts.append(_Part(block, table, cells, cell_margin, row_margin))
            self._built = None

    def _relevancy(self, margin: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(margin, np.float64) / self.temperature))

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Per cell, concatenated over blocks: voxel, block key, part, count, total, lo, hi,
        min_uid, max_seen (as :class:`CellTable`) and margin / relevancy sums [2, C]."""
        if self._built is None:
            names = ("count", "total", "lo", "hi", "min_uid", "max_seen")
            parts = self._parts
            sizes = np.array([p.cells.size for p in parts], np.int64)
            built = {n: np.concatenate([getattr(p.table, n)[:, p.cells] for p in parts], axis=1) if parts
                     else _empty(n) for n in names}
            built["voxel"] = np.concatenate([p.table.voxel[p.cells] for p in parts]) if parts else _empty("voxel")
            built["block"] = np.repeat(np.array([p.block.key for p in parts], np.int64), sizes)
            built["part"] = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
            built["first"] = np.cumsum(sizes) - sizes
            # one margin per cell (codebook): sums from the counts; per row (the average field): summed
            margin = np.concatenate([p.cell_margin if p.cell_margin is not None else np.full(p.cells.size, np.nan)
                                     for p in parts]).astype(np.float64) if parts else np.zeros(0)
            counts = built["count"].astype(np.float64)
            built["msum"], built["rsum"] = counts * margin, counts * self._relevancy(margin)
            for i, p in enumerate(parts):
                if p.cell_margin is None:
                    at = slice(built["first"][i], built["first"][i] + sizes[i])
                    built["msum"][:, at], built["rsum"][:, at] = self._row_sums(p)
            self._built = built
        return self._built

    def _row_sums(self, part: _Part) -> tuple[np.ndarray, np.ndarray]:
        """[2, cells] sums of the row margins and of their relevancy over all and confirmed rows."""
        t, c = part.table, part.cells
        assert part.row_margin is not None
        first, n_conf = t.start[c].astype(np.int64), t.count[CONFIRMED, c]
        ends = np.append(t.start[1:], t.order.size)[c]
        sums = []
        for values in (part.row_margin.astype(np.float64), self._relevancy(part.row_margin)):
            csum = np.concatenate([[0.0], np.cumsum(values)])
            sums.append(np.stack([csum[ends] - csum[first], csum[first + n_conf] - csum[first]]))
        return sums[0], sums[1]

    def sample_rows(self, clusters: list[tuple[np.ndarray, int]], max_points: int) -> list[dict[str, np.ndarray]]:
        """Per (cells, which) of ``clusters`` (indices into :attr:`arrays`; ALL or CONFIRMED), its
        Gaussians, every one or an even sample of at most ``max_points`` (0 = all): means [M, 3],
        uid [M], colors [M, 3], margin [M] (from the cell tables' copies: no block is read)."""
        if not clusters:
            return []
        a = self.arrays
        picked, offsets, sizes = [], [], []
        for cells, which in clusters:
            counts = a["count"][which, cells]
            ends = np.cumsum(counts)
            n = int(ends[-1]) if ends.size else 0
            step = max(1, -(-n // max_points)) if max_points > 0 else 1
            pos = np.arange(0, n, step)
            k = np.searchsorted(ends, pos, side="right")  # which of ``cells``
            picked.append(cells[k])
            offsets.append(pos - (ends[k] - counts[k]))
            sizes.append(pos.size)
        cell = np.concatenate(picked) if picked else np.zeros(0, np.int64)
        offset = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        total = cell.size
        out = {"means": np.zeros((total, 3), np.float32), "uid": np.zeros(total, np.uint32),
               "colors": np.zeros((total, 3), np.uint8), "margin": np.zeros(total, np.float32)}
        part = a["part"][cell]
        by_part = np.argsort(part.astype(np.uint16) if len(self._parts) < 65535 else part, kind="stable")  # radix
        bounds = np.searchsorted(part[by_part], np.arange(len(self._parts) + 1))
        for i, p in enumerate(self._parts):
            sel = by_part[bounds[i]:bounds[i + 1]]
            if not sel.size:
                continue
            local = cell[sel] - a["first"][i]
            position = p.table.start[p.cells[local]] + offset[sel]
            out["means"][sel] = p.table.means[position]
            out["uid"][sel] = p.table.uid[position]
            out["colors"][sel] = p.table.colors[position]
            out["margin"][sel] = p.cell_margin[local] if p.cell_margin is not None else p.row_margin[position]
        splits = np.cumsum(sizes)[:-1]
        return [dict(zip(out, parts)) for parts in zip(*(np.split(v, splits) for v in out.values()))]


def _empty(name: str) -> np.ndarray:
    shapes = {"voxel": (0, 3), "block": (0,), "part": (0,), "count": (2, 0), "total": (2, 0, 3), "lo": (2, 0, 3),
              "hi": (2, 0, 3), "min_uid": (2, 0), "max_seen": (2, 0), "msum": (2, 0), "rsum": (2, 0)}
    floats = {"lo": np.float32, "hi": np.float32, "total": np.float32, "msum": np.float64, "rsum": np.float64}
    return np.zeros(shapes[name], floats.get(name, np.int64))
