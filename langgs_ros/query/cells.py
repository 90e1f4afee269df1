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

POINT = np.dtype([("means", np.float32, (3,)), ("uid", np.uint32)])
"""A cell table's row copy: mean (fixed frame, m) and id in one 16-byte record, gathered in one copy."""
_NO_UID = np.iinfo(np.uint32).max
_NO_SEEN = np.iinfo(np.int32).min


CELL = np.dtype([("voxel", np.int32, (3,)), ("start", np.int32), ("count", np.int32, (2,)),
                 ("total", np.float32, (2, 3)), ("lo", np.float32, (2, 3)), ("hi", np.float32, (2, 3)),
                 ("min_uid", np.uint32, (2,)), ("max_seen", np.int32, (2,))])
"""One cell's record, so a mask copies a cell in one piece: voxel coordinates (floor(mean /
voxel_m), fixed frame), position in ``order`` of its first row, and per [ALL, CONFIRMED]: count,
sum of the means (m), least and greatest coordinates, oldest Gaussian id (empty: the largest
uint32), newest keyframe index that observed one (empty: the least int32)."""


@dataclass
class CellTable:
    """Cells of a set of rows of one block; ``order`` lists the rows cell by cell, the confirmed
    rows of a cell first. Sums are kept twice: [ALL] over all rows, [CONFIRMED] over those
    confirmed by ``min_confirmations`` keyframes (empty: count 0, box +inf..-inf)."""

    cells: np.ndarray
    """[C] :data:`CELL` records."""
    group: np.ndarray
    """[C] int32 signature of each cell (0 where rows were not grouped); cells sorted by it."""
    order: np.ndarray
    """[R] int32 rows of the block."""
    points: np.ndarray
    """[R] :data:`POINT` means and ids of the rows of ``order``, in that order (answers read them
    in short runs)."""
    colors: np.ndarray
    """[R, 4] uint8 RGB (and a zero byte: 4-byte rows gather in one copy each) of the rows of ``order``."""

    @property
    def start(self) -> np.ndarray:
        """[C] int32 position in ``order`` of each cell's first row."""
        return self.cells["start"]

    @property
    def count(self) -> np.ndarray:
        """[2, C] int32."""
        return self.cells["count"].T


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
    points = np.empty(len(ordered), POINT)
    points["means"], points["uid"] = means, uid
    colors = np.zeros((len(ordered), 4), np.uint8)
    colors[:, :3] = columns["colors"][ordered]
    cells = np.empty(len(starts), CELL)
    cells["voxel"], cells["start"] = vox[sort][starts], starts
    for name, value in (("count", count), ("total", total), ("lo", lo), ("hi", hi), ("min_uid", min_uid),
                        ("max_seen", max_seen)):
        cells[name] = np.moveaxis(value, 0, 1)
    return CellTable(cells=cells, group=group[sort][starts].astype(np.int32), order=ordered.astype(np.int32),
                     points=points, colors=colors)


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
    signature_start: np.ndarray
    """[S + 1] int32: the cells of signature s are ``signature_start[s]:signature_start[s + 1]``."""

    def cells_of(self, signatures: np.ndarray) -> np.ndarray:
        """Indices of the cells of ``signatures`` (ascending indices into ``keys``), ascending."""
        return _ranges(self.signature_start[signatures], self.signature_start[signatures + 1])


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(starts[i], ends[i])`` over i (int64)."""
    if len(starts) == 1:
        return np.arange(starts[0], max(starts[0], ends[0]), dtype=np.int64)
    lengths = (np.asarray(ends, np.int64) - starts).clip(0)
    before = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(np.asarray(starts, np.int64) - before, lengths)


def block_cells(columns: Columns, levels: int, voxel_m: float, min_confirmations: int) -> BlockCells:
    """:class:`BlockCells` of a block (Gaussians in no segment at every level are left out)."""
    keys = np.stack([segment_keys(columns, level) for level in range(levels)], axis=1)
    rows = np.flatnonzero(np.any(keys != -1, axis=1))
    signatures, group = np.unique(keys[rows], axis=0, return_inverse=True)
    cells = build_cells(columns, rows, group.reshape(-1), voxel_m, min_confirmations)
    start = np.searchsorted(cells.group, np.arange(len(signatures) + 1)).astype(np.int32)
    return BlockCells(signatures.reshape(-1, levels), cells, start)


@dataclass
class _Part:
    """Cells of one block in a mask: their table, which of its cells, and their margins."""

    block: Any
    table: CellTable
    cells: np.ndarray | slice
    """Indices of the table's cells, or a slice of them."""
    cell_margin: np.ndarray | None
    """[len(cells)] margin of every Gaussian of each cell; None: per row, ``row_margin``."""
    row_margin: np.ndarray | None = None
    """[R] margin per position of ``table.order``."""

    @property
    def size(self) -> int:
        c = self.cells
        return c.stop - c.start if isinstance(c, slice) else c.size

    @property
    def index(self) -> np.ndarray:
        """``cells`` as an index array."""
        c = self.cells
        return np.arange(c.start, c.stop) if isinstance(c, slice) else c


class MaskCells:
    """The cells of a query's mask across blocks, with margin sums for scores and ranking."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self._parts: list[_Part] = []
        self._built: dict[str, np.ndarray] | None = None

    def add(self, block: Any, table: CellTable, cells: np.ndarray | slice, cell_margin: np.ndarray | None = None,
            row_margin: np.ndarray | None = None) -> None:
        """Cells ``cells`` (indices or a slice) of ``table`` (of ``block``, added at most once),
        with one margin per cell or per row."""
        part = _Part(block, table, cells, cell_margin, row_margin)
        if part.size > 0:
            self._parts.append(part)
            self._built = None

    def _relevancy(self, margin: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(margin, np.float64) / self.temperature))

    @property
    def block_keys(self) -> np.ndarray:
        """[P] int64 key of the block of each part (distinct: one part per block)."""
        return np.array([p.block.key for p in self._parts], np.int64)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Per cell, concatenated over blocks: voxel, part (its block's index in
        :attr:`block_keys`), count, min_uid, max_seen (as :class:`CellTable`), total, lo, hi (as
        :class:`CellTable`'s but [2, 3, C]), start (its first row in its part's table), margin,
        and margin / relevancy sums [2, C]."""
        if self._built is None:
            parts = self._parts
            sizes = np.array([p.size for p in parts], np.int64)
            first = np.cumsum(sizes) - sizes
            cells = np.empty(int(sizes.sum()), CELL)  # each part's cells copied in one piece
            for p, at, n in zip(parts, first.tolist(), sizes.tolist()):
                if isinstance(p.cells, slice):
                    cells[at:at + n] = p.table.cells[p.cells]
                else:  # mode "clip" (the indices are valid) skips take's buffering
                    p.table.cells.take(p.cells, out=cells[at:at + n], mode="clip")
            # contiguous copies of the fields: np.take copies a strided array whole on every call
            built = {n: np.ascontiguousarray(cells[n]) for n in ("voxel", "start")}
            built.update({n: np.ascontiguousarray(cells[n].T) for n in ("count", "min_uid", "max_seen")})
            # total, lo, hi as [2, 3, C]: coordinates outermost copy several times faster than [2, C, 3]
            built.update({n: np.ascontiguousarray(cells[n].reshape(-1, 6).T).reshape(2, 3, -1)
                          for n in ("total", "lo", "hi")})
            built["part"] = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
            # one margin per cell (codebook): sums from the counts; per row (the average field): summed
            margin = np.concatenate([p.cell_margin if p.cell_margin is not None else np.full(p.size, np.nan)
                                     for p in parts]).astype(np.float64) if parts else np.zeros(0)
            counts = built["count"].astype(np.float64)
            built["margin"] = margin
            built["msum"], built["rsum"] = counts * margin, counts * self._relevancy(margin)
            for i, p in enumerate(parts):
                if p.cell_margin is None:
                    at = slice(first[i], first[i] + sizes[i])
                    built["msum"][:, at], built["rsum"][:, at] = self._row_sums(p)
            self._built = built
        return self._built

    def _row_sums(self, part: _Part) -> tuple[np.ndarray, np.ndarray]:
        """[2, cells] sums of the row margins and of their relevancy over all and confirmed rows."""
        t, c = part.table, part.index
        assert part.row_margin is not None
        first, n_conf = t.start[c].astype(np.int64), t.count[CONFIRMED, c]
        ends = np.append(t.start[1:], t.order.size)[c]
        sums = []
        for values in (part.row_margin.astype(np.float64), self._relevancy(part.row_margin)):
            csum = np.concatenate([[0.0], np.cumsum(values)])
            sums.append(np.stack([csum[ends] - csum[first], csum[first + n_conf] - csum[first]]))
        return sums[0], sums[1]

    def cluster_sums(self, clusters: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Per cluster of ``clusters`` (indices into :attr:`arrays`, non-empty), over its cells
        ([ALL] and [CONFIRMED] first axis, clusters second): ``count`` (int64), ``total``, ``msum``,
        ``rsum`` (float64 sums), ``lo`` / ``min_uid`` (least), ``hi`` / ``max_seen`` (greatest);
        total, lo, hi [2, K, 3]."""
        a = self.arrays
        cells = np.concatenate(clusters)
        starts = np.cumsum([0] + [len(c) for c in clusters[:-1]])
        out = {"count": np.add.reduceat(a["count"].take(cells, axis=1), starts, axis=1, dtype=np.int64)}
        for name in ("msum", "rsum"):
            out[name] = np.add.reduceat(a[name].take(cells, axis=1), starts, axis=1, dtype=np.float64)
        for name, op in (("min_uid", np.minimum), ("max_seen", np.maximum)):
            out[name] = op.reduceat(a[name].take(cells, axis=1), starts, axis=1)
        for name, op in (("total", np.add), ("lo", np.minimum), ("hi", np.maximum)):  # [2, 3, C] -> [2, K, 3]
            kind = {"dtype": np.float64} if name == "total" else {}
            out[name] = op.reduceat(a[name].take(cells, axis=2), starts, axis=2, **kind).transpose(0, 2, 1)
        return out

    def footprints(self, clusters: list[tuple[np.ndarray, int]], voxel_m: float) -> list[np.ndarray]:
        """Per (cells, which) of ``clusters``: [K, 3] float32 centres (fixed frame, m) of the voxels
        of its cells that hold Gaussians of ``which`` (ALL or CONFIRMED), one per cell."""
        if not clusters:
            return []
        a = self.arrays
        cells = np.concatenate([c for c, _ in clusters])
        which = np.repeat([w for _, w in clusters], [len(c) for c, _ in clusters])
        occupied = a["count"][which, cells] > 0
        centres = ((a["voxel"].take(cells[occupied], axis=0) + 0.5) * voxel_m).astype(np.float32)
        per_cluster = np.add.reduceat(occupied, np.cumsum([0] + [len(c) for c, _ in clusters[:-1]]), dtype=np.int64)
        return np.split(centres, np.cumsum(per_cluster)[:-1])

    def sample_rows(self, clusters: list[tuple[np.ndarray, int]], max_points: int) -> list[dict[str, np.ndarray]]:
        """Per (cells, which) of ``clusters`` (indices into :attr:`arrays`, fastest when ascending;
        ALL or CONFIRMED), its Gaussians: every one, or at most ``max_points`` (0 = all) taken as the
        same share of every cell, each cell's first in its order (confirmed first), so the sample is
        even at the voxel scale and read in short contiguous runs. Means [M, 3], uid [M],
        colors [M, 3], margin [M], from the cell tables' copies: no block is read."""
        if not clusters:
            return []
        a = self.arrays
        sizes = np.array([len(c) for c, _ in clusters])
        cells = np.concatenate([c for c, _ in clusters])
        which = np.repeat([w for _, w in clusters], sizes)
        counts = a["count"][which, cells].astype(np.int64)
        # each cell's range among its cluster's Gaussians; a cluster's sample: the multiples of its step
        ends = np.cumsum(counts)
        first = np.cumsum(sizes) - sizes
        base = np.repeat(ends[first] - counts[first], sizes)
        total = np.add.reduceat(counts, first)
        steps = np.maximum(1, -(-total // max_points)) if max_points > 0 else np.ones(len(clusters), np.int64)
        step = np.repeat(steps, sizes)
        lo, hi = ends - counts - base, ends - base
        taken = (-lo // step) - (-hi // step)  # ceil(hi / s) - ceil(lo / s)
        cell = np.repeat(cells, taken)
        offset = np.arange(cell.size) - np.repeat(np.cumsum(taken) - taken, taken)
        position = a["start"].take(cell) + offset  # row in its part's table
        part = a["part"].take(cell)
        # gathered in output order, one run of rows of one part at a time (no scatter)
        runs = np.flatnonzero(np.r_[True, part[1:] != part[:-1], True]) if part.size else np.zeros(1, np.int64)
        rows, rgba = np.empty(cell.size, POINT), np.empty(cell.size, np.uint32)
        margin = a["margin"].take(cell).astype(np.float32)
        for begin, end in zip(runs[:-1], runs[1:]):
            p = self._parts[int(part[begin])]
            at = position[begin:end]
            # into the outputs' slices; mode "clip" (positions are valid) skips take's buffering
            p.table.points.take(at, out=rows[begin:end], mode="clip")
            p.table.colors.view(np.uint32).reshape(-1).take(at, out=rgba[begin:end], mode="clip")
            if p.row_margin is not None:
                margin[begin:end] = p.row_margin.take(at)
        colors = np.empty((cell.size, 3), np.uint8)
        for channel in range(3):  # three strided copies: far faster than copying 3-byte rows
            colors[:, channel] = rgba.view(np.uint8)[channel::4]
        out = {"means": np.ascontiguousarray(rows["means"]), "uid": np.ascontiguousarray(rows["uid"]),
               "colors": colors, "margin": margin}
        splits = np.cumsum(np.add.reduceat(taken, first))[:-1]
        return [dict(zip(out, parts)) for parts in zip(*(np.split(v, splits) for v in out.values()))]
