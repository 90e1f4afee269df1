"""Answering a text query on a map: relevance -> 3D mask -> instances -> goal pose.

Relevance per Gaussian is the LERF margin of its semantic feature (or codebook prototype) to the
query against canonical negatives; the reported ``score`` is LERF's pairwise-softmax relevancy
``sigmoid(margin / temperature)``. The granularity level whose best margin is highest answers the
query (LangSplat's level choice), together with the levels within ``level_margin_tolerance`` of it.
At each answering level, the Gaussians whose margin clears ``min_margin`` and ``keep_ratio`` x that
level's best match; those matching at a majority of the answering levels form the mask (their
margin: the highest of those levels). The mask's 26-connected voxel clusters are the instances: those whose
mean margin is within ``rank_margin_tolerance`` of the best first, larger first, then the others by
mean margin. The goal pose is planned for the best instance, on a navigation grid of the blocks
around it.

The map is block-stored (:class:`~langgs_ros.mapping.block_store.BlockStore`): the semantic field
scores its codebook entries once per query and each block's summary says which entries its
Gaussians carry, so only blocks that can match are read (:class:`~langgs_ros.mapping.block_scoring.BlockScorer`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from langgs_ros.config import ModelsConfig, QueryConfig, load_config
from langgs_ros.errors import ConfigError
from langgs_ros.geometry import normals_from_quat_wxyz
from langgs_ros.mapping.block_store import BlockStore
from langgs_ros.mapping.block_scoring import BlockScorer, CodebookScorer
from langgs_ros.mapping.keyframe_log import SeenTimes
from langgs_ros.mapping.map_io import MapData
from langgs_ros.query.cells import ALL, CONFIRMED, BlockCells, MaskCells, block_cells, build_cells
from langgs_ros.query.instances import cluster_by_region
from langgs_ros.query.navigation import GoalPose, NavigationGrid, navigation_points, plan_goal
from langgs_ros.query.reachability import reach_from
from langgs_ros.semantics.backend import LEVELS, TextEncoder, create_text_encoder

__all__ = ["ObjectResult", "QueryResult", "QueryEngine", "MAX_QUERY_CHARS"]

MAX_QUERY_CHARS = 200
LOCAL_GRIDS_KEPT = 16
"""Local navigation grids an engine keeps for answers near blocks that have not changed since."""


@dataclass
class ObjectResult:
    """One 3D instance matching a query (fixed frame, metres)."""

    score: float
    points: np.ndarray
    """[M, 3] means of its Gaussians: all of them, or a sample spread evenly over its voxels
    (``max_points`` of the query: the same share of each ``query.cluster_voxel_m`` cell)."""
    centroid: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    uids: np.ndarray
    """[M] uint32 stable ids of the Gaussians of ``points``."""
    colors: np.ndarray
    """[M, 3] uint8 RGB of the Gaussians of ``points``."""
    relevance: np.ndarray | None = None  # [M] relevancy sigmoid(margin / T) of each point
    seen: SeenTimes | None = None
    """When the object's Gaussians were first and last observed; None for a map without times."""
    age_s: float | None = None
    """Seconds from ``seen.last_ns`` to the answer's reference time (the newest keyframe, or now)."""
    num_gaussians: int = 0
    """Gaussians of the instance (``points`` may hold a sample of them); 0: as many as ``points``."""
    footprint: np.ndarray | None = None
    """[K, 3] centres of the voxels (``query.cluster_voxel_m``) its Gaussians occupy, fixed frame, m
    (one per cell of the answer: a voxel may repeat): what the goal is planned around (the same
    whether ``points`` is a sample or not; cell for cell the points' when
    ``query.grid_resolution_m`` equals the voxel). None: ``points``."""

    def __post_init__(self) -> None:
        self.num_gaussians = self.num_gaussians or len(self.points)
        if self.footprint is None:
            self.footprint = self.points

    def to_json(self, max_points: int) -> dict[str, Any]:
        """JSON-ready dict; at most ``max_points`` points, evenly subsampled. ``first_seen`` and
        ``last_seen`` are ROS times in seconds (null when unknown), ``age_s`` seconds."""
        step = max(1, int(np.ceil(len(self.points) / max_points)))
        pts = self.points[::step][:max_points]
        seen = self.seen
        return {"score": round(float(self.score), 4), "centroid": _r(self.centroid),
                "bbox_min": _r(self.bbox_min), "bbox_max": _r(self.bbox_max),
                "num_gaussians": int(self.num_gaussians),
                "first_seen": None if seen is None or seen.first_ns is None else seen.first_ns / 1e9,
                "last_seen": None if seen is None else seen.last_ns / 1e9,
                "age_s": None if self.age_s is None else round(self.age_s, 3),
                "points": [_r(p) for p in pts]}


def _r(v: np.ndarray) -> list[float]:
    return [round(float(x), 4) for x in v]


@dataclass
class QueryResult:
    """Answer to a text query; ``objects`` empty and ``goal_pose`` None with a ``message`` why."""

    query: str
    frame_id: str
    objects: list[ObjectResult] = field(default_factory=list)
    goal_pose: GoalPose | None = None
    goal_object: int = -1
    """Index in ``objects`` of the object ``goal_pose`` approaches (-1: no goal)."""
    message: str = ""
    level: str | None = None
    answered: bool = True
    """False when the query could not be answered at all (empty or over-long text, a map that is
    empty or has no semantics, a bad request): ``Query.srv``'s ``success``. A query that was
    answered and matched nothing is answered."""

    semantics_pending: int = 0
    """Keyframes in the map's geometry whose semantics are not fused yet: what they saw cannot match."""
    semantic_lag_s: float = 0.0
    """Recorded time between the newest mapped keyframe and the newest labelled one, s."""

    def refuse(self, message: str) -> QueryResult:
        """This result, marked as not answered because of ``message``."""
        self.message, self.answered, self.objects, self.goal_pose = message, False, [], None
        self.goal_object = -1
        return self

    def note_semantic_lag(self, pending: int, lag_s: float) -> QueryResult:
        """Record how far semantics lag geometry; an answer without objects says that the newest
        part of the map is not labelled yet (rather than that the object is not there)."""
        self.semantics_pending, self.semantic_lag_s = int(pending), float(lag_s)
        if pending and not self.objects:
            self.message += (f"; not yet labelled: {pending} mapped keyframe(s), the last {lag_s:.1f} s of the "
                             "recording - the object may be there; ask again when semantics catch up")
        return self

    def to_json(self, max_points: int = 5000) -> dict[str, Any]:
        """The documented JSON answer of ``langgs query --json``."""
        goal = None
        if self.goal_pose is not None:
            goal = {"position": _r(self.goal_pose.position), "orientation": _r(self.goal_pose.orientation_xyzw),
                    "frame_id": self.frame_id, "object": self.goal_object,
                    "path_length_m": (round(self.goal_pose.path_length, 3)
                                      if np.isfinite(self.goal_pose.path_length) else None)}
        return {"query": self.query, "answered": self.answered, "frame_id": self.frame_id, "level": self.level,
                "objects": [o.to_json(max_points) for o in self.objects], "goal_pose": goal,
                "message": self.message,
                "semantics": {"pending_keyframes": self.semantics_pending, "lag_s": round(self.semantic_lag_s, 3)}}


def clean_query_text(text: object) -> str:
    """Printable, valid-UTF-8 text: lone surrogates (undecodable bytes of a command line) become
    U+FFFD, control and format characters (ESC sequences, NUL) become spaces, whitespace runs one
    space; so an answer echoes nothing that drives a terminal or breaks JSON."""
    def clean(ch: str) -> str:
        category = unicodedata.category(ch)
        return "\ufffd" if category == "Cs" else " " if category[0] == "C" else ch

    return " ".join("".join(map(clean, str(text))).split())


def _models_config(data: MapData) -> ModelsConfig:
    """The model settings the map was built with (saved with it), for its text encoder."""
    saved = data.extra.get("config", {}).get("models") if isinstance(data.extra, dict) else None
    try:
        return load_config(overrides={"models": saved}).models if isinstance(saved, dict) else ModelsConfig()
    except ConfigError:
        return ModelsConfig()


class QueryEngine:
    """Queries one loaded map; caches text embeddings and the navigation grids."""

    def __init__(self, data: MapData, config: QueryConfig | None = None,
                 text_encoder: TextEncoder | None = None) -> None:
        self.data = data
        self.config = config or QueryConfig()
        self.encoder = text_encoder
        if self.encoder is None and data.field is not None:
            self.encoder = create_text_encoder(data.semantics, _models_config(data))
        self._text_cache: dict[str, np.ndarray] = {}
        self._grid: tuple[int, NavigationGrid] | None = None
        self._local_grids: dict[tuple, NavigationGrid] = {}
        """Recent local navigation grids by (their blocks' keys and versions, floor), oldest first."""
        self._negatives = self._embed_many(self.config.negatives) if self.encoder else None

    @property
    def store(self) -> BlockStore:
        return self.data.store

    def _embed_many(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self._text_cache]
        if missing:
            assert self.encoder is not None
            for text, emb in zip(missing, self.encoder.encode(missing)):
                self._text_cache[text] = emb
        return np.stack([self._text_cache[t] for t in texts]) if texts else np.zeros((0, self.encoder.dim))

    @property
    def grid(self) -> NavigationGrid:
        """Navigation grid of the whole map (built on first use after a change; reads every block:
        for the occupancy topic, not for answers, which plan on the blocks around the object)."""
        store = self.store
        if self._grid is None or self._grid[0] != store.revision:
            means, normals = self._geometry(store.blocks)
            self._grid = (store.revision, NavigationGrid.build(means, normals, self.config.grid_resolution_m,
                                                              self.config.robot_height, floor_hint=self.data.floor_z))
        return self._grid[1]

    def _geometry(self, blocks: list) -> tuple[np.ndarray, np.ndarray]:
        """(means, normals) of the Gaussians of ``blocks`` (fixed frame)."""
        parts = [self.store.columns_of(b) for b in blocks if b.count]
        if not parts:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
        means = np.concatenate([g["means"] for g in parts])
        normals = np.concatenate([normals_from_quat_wxyz(g["quats"]) for g in parts])
        return means, normals

    def local_grid(self, points: np.ndarray) -> NavigationGrid:
        """Navigation grid of the blocks within reach of a goal for objects at ``points`` [M, 2 or
        3] (fixed frame, m), from each block's navigation points (:func:`navigation_points`, kept
        with the block); reused while none of those blocks changes."""
        cfg = self.config
        reach = cfg.standoff + cfg.robot_radius + 2.0
        lo, hi = np.full(3, -np.inf), np.full(3, np.inf)
        lo[:2], hi[:2] = points[:, :2].min(axis=0) - reach, points[:, :2].max(axis=0) + reach

        near = (self.store.block(k) for k in self.store.keys_near(lo, hi))
        blocks = [blk for blk in near if blk is not None and blk.count]
        # the same blocks unchanged since a recent answer: the same grid
        key = (tuple((blk.key, blk.version) for blk in blocks), self.data.floor_z)
        cached = self._local_grids.pop(key, None)
        if cached is None:
            cached = self._build_local_grid(blocks)
        self._local_grids[key] = cached
        while len(self._local_grids) > LOCAL_GRIDS_KEPT:
            self._local_grids.pop(next(iter(self._local_grids)))
        return cached

    def _build_local_grid(self, blocks: list) -> NavigationGrid:
        cfg = self.config
        res = cfg.grid_resolution_m

        def columns(g: object) -> tuple[np.ndarray, np.ndarray]:
            return navigation_points(g["means"], normals_from_quat_wxyz(g["quats"]), res)  # type: ignore[index]

        parts = [self.store.derived(blk, f"navigation_{res:g}", columns) for blk in blocks]
        means = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 3), np.float32)  # type: ignore[index]
        normals = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 3), np.float32)  # type: ignore[index]
        return NavigationGrid.build(means, normals, res, cfg.robot_height, floor_hint=self.data.floor_z)

    def warm_up(self) -> None:
        """Build the caches a first query would otherwise pay for (text embeddings of the negatives
        are made on construction; here the summaries of every block)."""
        for blk in self.store.blocks:
            if blk.count and self.data.field is not None:
                self.store.summary(blk)

    def query(self, text: str, max_age_s: float = 0.0, now_ns: int | None = None, max_objects: int = 0,
              navigate_from: np.ndarray | None = None, max_points: int = 0) -> QueryResult:
        """Answer ``text``; never raises for odd text, the message explains an empty answer. A map
        saved while semantics lagged says so (``semantics_pending`` in its metadata).

        ``max_age_s`` > 0 ignores objects last seen longer ago than that before ``now_ns`` (ROS
        time, ns; default: the newest keyframe's stamp, so a saved map answers as of its end).
        ``max_objects`` > 0 keeps the best that many. The goal approaches the best object; with
        ``navigate_from`` (the robot's x, y in the fixed frame, m) it approaches the object the
        robot reaches first over the navigation grid (:mod:`langgs_ros.query.reachability`).
        ``max_points`` > 0: each object's ``points`` a sample of at most that many of its Gaussians,
        spread evenly over its voxels (``num_gaussians`` says how many it has; box, centroid, score
        and the goal, planned on the object's voxels, cover all of them); 0 = all.
        """
        extra = self.data.extra or {}
        return self._answer(text, max_age_s, now_ns, max_objects, navigate_from, max_points).note_semantic_lag(
            int(extra.get("semantics_pending", 0) or 0), float(extra.get("semantic_lag_s", 0.0) or 0.0))

    def _answer(self, text: str, max_age_s: float, now_ns: int | None, max_objects: int = 0,
                navigate_from: np.ndarray | None = None, max_points: int = 0) -> QueryResult:
        cfg = self.config
        text = clean_query_text(text)
        result = QueryResult(query=text, frame_id=self.data.fixed_frame)
        if not text:
            return result.refuse("empty query")
        if len(text) > MAX_QUERY_CHARS:
            return result.refuse(f"query longer than {MAX_QUERY_CHARS} characters")
        if not (np.isfinite(max_age_s) and max_age_s >= 0):
            return result.refuse(f"max_age_s {max_age_s} is not a finite number >= 0 (0 = no limit)")
        if max_age_s > 0 and not self.data.keyframes.times_known:
            return result.refuse("this map keeps no observation times (saved before map format 2), so "
                                 "max_age_s cannot be applied; ask without it or rebuild the map")
        now_ns = self.data.keyframes.newest_ns if now_ns is None else now_ns
        if self.data.field is None or self.encoder is None:
            return result.refuse("the map has no semantics (it was built with --semantics none)")
        if not any(blk.count for blk in self.store.blocks):  # stops at the first (len() sums them all)
            return result.refuse("the map is empty")
        q = self._embed_many([text])[0]
        if not np.any(q):
            return result.refuse(f"the text encoder found no words in '{text}'")
        scorer = self.data.field.scorer(self.store, q, self._negatives)
        best = scorer.best()
        top = float(np.max(best))
        if not np.isfinite(top):
            return result.refuse("the map holds no semantic observations")
        if top < cfg.min_margin:
            result.message = (f"nothing in the map matches '{text}' (best margin {top:.2f} "
                              f"over the canonical negatives < {cfg.min_margin:.2f})")
            return result
        levels = [lv for lv in range(len(best)) if best[lv] >= max(top - cfg.level_margin_tolerance, cfg.min_margin)]
        result.level = "+".join(LEVELS[lv] for lv in levels)
        mask = self._mask_cells(scorer, {lv: max(cfg.min_margin, cfg.keep_ratio * best[lv]) for lv in levels})
        cells = mask.arrays
        clusters = cluster_by_region(cells["voxel"], cells["part"], mask.block_keys, cells["count"][ALL],
                                     cfg.min_instance_gaussians)
        if not clusters:
            result.message = f"'{text}' matched only {int(cells['count'][ALL].sum())} scattered Gaussians, no object"
            return result
        sums = mask.cluster_sums(clusters)
        # the Gaussians confirmed by min_confirmations keyframes, where at least half are; else all
        which = np.where(2 * sums["count"][CONFIRMED] >= sums["count"][ALL], CONFIRMED, ALL)
        of = (which, np.arange(len(clusters)))
        counts, mean_margin = sums["count"][of], sums["msum"][of] / sums["count"][of]
        found, rank_keys, stale = [], [], []
        for i in range(len(clusters)):
            seen = self.data.keyframes.seen_range(int(sums["min_uid"][which[i], i]), int(sums["max_seen"][which[i], i]))
            age = seen.age_s(now_ns) if seen is not None and now_ns is not None else None
            if max_age_s > 0 and age is not None and age > max_age_s:
                stale.append(age)
                continue
            found.append((i, seen, age))
            rank_keys.append((float(mean_margin[i]), int(counts[i])))
        ignored = (f" ({len(stale)} more not seen in the last {max_age_s:g} s ignored)" if stale else "")
        if not found:
            result.message = (f"{len(stale)} object(s) match '{text}', but none was seen in the last "
                              f"{max_age_s:g} s (the newest {min(stale):.1f} s ago)")
            return result
        # the instances within rank_margin_tolerance of the best mean margin first, larger first;
        # then the others by mean margin (the reported score saturates, so it cannot rank)
        top = max(k[0] for k in rank_keys) - cfg.rank_margin_tolerance
        near = sorted((i for i, k in enumerate(rank_keys) if k[0] >= top), key=lambda i: rank_keys[i][1],
                      reverse=True)
        order = near + sorted(set(range(len(found))) - set(near), key=lambda i: rank_keys[i], reverse=True)
        kept = [found[i] for i in order[: max_objects or None]]
        chosen = [(clusters[i], int(which[i])) for i, *_ in kept]
        samples, footprints = mask.sample_rows(chosen, max_points), mask.footprints(chosen, cfg.cluster_voxel_m)
        result.objects = [self._object(sums, i, int(which[i]), seen, age, rows, footprint)
                          for (i, seen, age), rows, footprint in zip(kept, samples, footprints)]
        objects = result.objects
        if navigate_from is None:
            goal, why = plan_goal(self.local_grid(objects[0].footprint), objects[0].footprint, objects[0].centroid,
                                  cfg.robot_radius, cfg.standoff)
            result.goal_pose, result.goal_object = goal, 0 if goal is not None else -1
        else:
            result.goal_pose, result.goal_object, why = self._nearest_goal(objects, navigate_from)
        where = f"the {result.level} level" + ("s" if len(levels) > 1 else "")
        result.message = f"{len(objects)} object(s) match '{text}' at {where}{ignored}; {why}"
        return result

    def _nearest_goal(self, objects: list[ObjectResult], robot_xy: np.ndarray) -> tuple[GoalPose | None, int, str]:
        """(goal, object index, why) for the object of ``objects`` with the shortest path from the
        robot at ``robot_xy`` (fixed frame, m) to a goal facing it; (None, -1, why) if none is reachable."""
        cfg = self.config
        xy = np.asarray(robot_xy, np.float64).reshape(-1)[:2]
        if xy.size != 2 or not np.all(np.isfinite(xy)):
            return None, -1, f"navigate: the robot's position {robot_xy} is not a finite (x, y)"
        points = np.concatenate([o.footprint[:, :2] for o in objects] + [xy[None, :]])
        grid = self.local_grid(points)
        reach = reach_from(grid, xy, cfg.robot_radius)
        if reach.start is None:
            return None, -1, f"navigate: {reach.message}"
        best: tuple[GoalPose, int] | None = None
        reasons = []
        for i, obj in enumerate(objects):
            goal, why = plan_goal(grid, obj.footprint, obj.centroid, cfg.robot_radius, cfg.standoff,
                                  path_lengths=reach.lengths)
            if goal is None:
                reasons.append(f"#{i + 1}: {why}")
            elif best is None or goal.path_length < best[0].path_length:
                best = (goal, i)
        if best is None:
            return None, -1, (f"navigate: no object is reachable from the robot at ({xy[0]:.2f}, {xy[1]:.2f}) "
                              f"({'; '.join(reasons[:3])})")
        goal, i = best
        return goal, i, (f"navigate: goal for object #{i + 1}, {goal.path_length:.2f} m of path from the robot, "
                         f"{goal.distance_to_object:.2f} m from the object")

    def _object(self, sums: dict[str, np.ndarray], i: int, which: int, seen: SeenTimes | None, age: float | None,
                rows: dict[str, np.ndarray], footprint: np.ndarray) -> ObjectResult:
        """The instance of cluster ``i`` of ``sums`` (:meth:`MaskCells.cluster_sums`) over its
        Gaussians ``which`` (ALL or CONFIRMED); ``rows``: those its answer returns."""
        n = int(sums["count"][which, i])
        relevance = 1.0 / (1.0 + np.exp(-rows["margin"] / np.float32(self.config.temperature)))
        return ObjectResult(score=float(sums["rsum"][which, i] / n), points=rows["means"],
                            centroid=sums["total"][which, i] / n, bbox_min=sums["lo"][which, i].copy(),
                            bbox_max=sums["hi"][which, i].copy(), uids=rows["uid"], colors=rows["colors"],
                            relevance=relevance.astype(np.float32), seen=seen, age_s=age, num_gaussians=n,
                            footprint=footprint)

    def _mask_cells(self, scorer: BlockScorer, thresholds: dict[int, float]) -> MaskCells:
        """The cells of the Gaussians matching at a majority of the levels of ``thresholds``
        (level -> least margin), from the blocks whose summary allows a match; a Gaussian's margin
        is its highest over the levels it matches. With the codebook this is decided per signature
        on each block's cached cells; otherwise per Gaussian."""
        cfg = self.config
        mask = MaskCells(cfg.temperature)
        need = len(thresholds) // 2 + 1
        if isinstance(scorer, CodebookScorer):
            name = f"cells_{cfg.cluster_voxel_m:g}_{cfg.min_confirmations}"

            def make(g: object) -> BlockCells:
                return block_cells(g, len(LEVELS), cfg.cluster_voxel_m, cfg.min_confirmations)  # type: ignore[arg-type]

            blocks = scorer.candidates(thresholds)
            tables = [self.store.derived(blk, name, make) for blk in blocks]
            if not tables:
                return mask
            # every candidate block's signatures decided at once
            keys = np.concatenate([t.keys for t in tables])  # type: ignore[attr-defined]
            votes = np.zeros(len(keys), np.int64)
            margin = np.full(len(keys), -np.inf, np.float32)
            for level, threshold in thresholds.items():
                m = scorer.key_margins(level, keys[:, level])
                hit = m >= threshold
                votes += hit
                np.maximum(margin, np.where(hit, m, -np.inf), out=margin)
            ok = np.flatnonzero(votes >= need)
            first = np.cumsum([0] + [len(t.keys) for t in tables]).tolist()  # type: ignore[attr-defined]
            bounds = np.searchsorted(ok, first).tolist()
            for b, table in enumerate(tables):
                lo, hi = bounds[b], bounds[b + 1]
                if lo == hi:
                    continue
                assert isinstance(table, BlockCells)
                signatures = ok[lo:hi] - first[b]
                s0, s1 = int(signatures[0]), int(signatures[-1])
                lengths = table.signature_start[signatures + 1] - table.signature_start[signatures]
                cell_margin = np.repeat(margin[ok[lo:hi]], lengths)
                if s1 - s0 + 1 == hi - lo:  # consecutive signatures: a slice of the table's cells
                    cells = slice(int(table.signature_start[s0]), int(table.signature_start[s1 + 1]))
                    mask.add(blocks[b], table.cells, cells, cell_margin=cell_margin)
                else:
                    mask.add(blocks[b], table.cells, table.cells_of(signatures), cell_margin=cell_margin)
            return mask
        for blk in scorer.candidates(thresholds):
            g = self.store.columns_of(blk)
            n = len(g["means"])
            votes = np.zeros(n, np.uint8)
            highest = np.full(n, -np.inf, np.float32)
            for level, threshold in thresholds.items():
                rows, margins = scorer.matching(blk, level, threshold)
                votes[rows] += 1  # rows are unique within a level
                highest[rows] = np.maximum(highest[rows], margins)
            sel = np.flatnonzero(votes >= need)
            if sel.size:
                table = build_cells(g, sel, np.zeros(sel.size, np.int64), cfg.cluster_voxel_m, cfg.min_confirmations)
                mask.add(blk, table, np.arange(len(table.start)), row_margin=highest[table.order])
        return mask
