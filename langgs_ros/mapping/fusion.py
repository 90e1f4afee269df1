"""Semantic fusion of 2D segments into the Gaussian map, per granularity level.

Two modes behind one interface:

* :class:`CodebookField` (CCL-LGS): each segment of a keyframe is associated with a map *track* by
  geometric IoU > 0.5 between the segment and the tracks of the map Gaussians visible in that view
  (a new track otherwise); its feature is matched to a learned prototype of the
  :class:`~langgs_ros.mapping.codebook.ContrastiveCodebook`, and the track's code is the prototype
  its features chose (vote-weighted), so a view that gives an object a wrong label is outvoted by
  the other views of its track. Each Gaussian carries, per level, the track a streaming weighted
  majority vote over the views that saw it chose (:func:`weighted_majority`; "in no segment" votes
  too, with ``no_segment_vote_weight``), and its code is that track's code: one view that merges
  an object into its neighbour's segment neither moves it to the neighbour's track nor relabels it,
  and every Gaussian of a track answers with what all the track's views say. A track whose visible
  Gaussians lie in segments of another code in ``stale_track_views`` views in a row is gone (the
  object moved away; its last Gaussians now look like the table top it stood on): it answers no
  query.
  A Gaussian nobody voted for uses its own ``codes`` entry (an edge pixel's fill, below, or
  refinement's decoded code). Per Gaussian: 3 x (int32 track + uint8 vote + int16 code) = 21 bytes.
* :class:`AverageField`: per Gaussian and level, the running average of the embeddings of the
  segments it fell in, zero where it fell in none (the baseline; 3 x 512 float16 = 3 KiB per
  Gaussian).

Each field scores a text query (:mod:`langgs_ros.mapping.relevance`); the codebook scores its
prototypes, not Gaussians, and keeps per map block the tracks and codes its Gaussians carry
(:meth:`SemanticField.summarize`), so a query touches only the blocks that can match
(:meth:`SemanticField.scorer`, :mod:`langgs_ros.mapping.block_scoring`).

Pixels within ``boundary_abstain_frac`` x image width of a segment boundary do not vote in either mode (masks bleed
onto the background and erode at their edges); they only fill a Gaussian nobody has voted for yet, with
no weight, so thin objects seen only near their outline still get semantics.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

import cv2
import numpy as np

from langgs_ros.config import MappingConfig
from langgs_ros.mapping.block_scoring import AverageScorer, BlockScorer, CodebookScorer, Columns, average_margins
from langgs_ros.mapping.block_store import BlockStore
from langgs_ros.mapping.codebook import ContrastiveCodebook
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.relevance import CodeRelevance, Relevance, best_kind, kind_margins
from langgs_ros.semantics.backend import LEVELS, Segmentation

__all__ = ["SemanticField", "CodebookField", "AverageField", "BlockScorer", "create_field", "boundary_band",
           "weighted_majority", "behind_silhouette", "Columns"]

N_LEVELS = len(LEVELS)
VOTE_UNIT = 4
"""Weight of one view's vote in a Gaussian's uint8 vote counts (so weights are quarters)."""


def weighted_majority(current: np.ndarray, count: np.ndarray, observed: np.ndarray,
                      weight: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """One step of a weighted Boyer-Moore majority vote, elementwise: a vote for ``current`` adds
    its ``weight`` to ``count``; any other vote cancels as much of ``count`` and takes over what it
    has left. Whatever holds more than half of all the weight voted ends as ``current``.
    Returns (current, count) with count saturated to uint8."""
    count = count.astype(np.int16)
    same = current == observed
    take = ~same & (count < weight)
    new_count = np.where(same, np.minimum(count + weight, 255), np.abs(count - weight))
    return np.where(take, observed, current), new_count.astype(np.uint8)


def boundary_band(ids: np.ndarray, frac: float) -> np.ndarray:
    """bool [H, W]: pixels within ``round(frac * W)`` pixels (Chebyshev) of a change of segment id."""
    px = int(round(frac * ids.shape[1]))
    edge = np.zeros(ids.shape, np.uint8)
    if px <= 0:
        return edge.astype(bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[:, :-1] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    edge[:-1, :] |= ids[1:, :] != ids[:-1, :]
    if px > 1:
        edge = cv2.dilate(edge, np.ones((2 * px - 1, 2 * px - 1), np.uint8))
    return edge.astype(bool)


def behind_silhouette(depth: np.ndarray, radius_px: int, jump: float) -> np.ndarray:
    """bool [H, W]: pixels more than ``jump`` x their depth behind the nearest surface within
    ``radius_px`` (Chebyshev): background beside a foreground silhouette, where masks bleed off the
    object in front. Invalid depth (0, NaN, inf) counts as far."""
    d = np.where(np.isfinite(depth) & (depth > 0), depth, np.inf).astype(np.float32)
    if radius_px <= 0:
        return np.zeros(d.shape, bool)
    side = 2 * radius_px + 1  # a minimum filter (an erosion); replicated edges change no minimum
    nearest = cv2.erode(d, np.ones((side, side), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return d > nearest * np.float32(1 + jump)


class SemanticField(ABC):
    """Per-Gaussian semantics, updated per keyframe and scored against text."""

    mode: str
    columns: tuple[str, ...] = ()
    """Its per-Gaussian fields (gathered and written back by fusion)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.lock = threading.RLock()
        """Guards the field's own state (codebook, tracks): fusion updates it without the map lock
        while queries read it."""

    @abstractmethod
    def attach(self, gmap: GaussianMap | BlockStore) -> None:
        """Register this field's per-Gaussian arrays in ``gmap``."""

    def summarize(self, gaussians: GaussianMap) -> dict[str, np.ndarray]:
        """What a query needs to know of one block's Gaussians without reading them (empty: it
        must read them)."""
        return {}

    @abstractmethod
    def scorer(self, store: BlockStore, query: np.ndarray, negatives: np.ndarray) -> BlockScorer:
        """Margins of unit-norm text embedding ``query`` [D] against ``negatives`` [K, D] over ``store``."""

    @abstractmethod
    def integrate(self, gmap: Columns, seg: Segmentation, idx: np.ndarray, u: np.ndarray,
                  v: np.ndarray, is_new: np.ndarray, abstain: np.ndarray | None = None,
                  judges_presence: bool = True, relabel: np.ndarray | None = None) -> list[np.ndarray | None] | None:
        """Fuse ``seg`` into Gaussians ``idx`` observed at pixels (u, v); ``is_new`` marks ones
        created by this keyframe (the others were already in the map and are visible); ``abstain``
        marks observations that neither vote nor fill (e.g. :func:`behind_silhouette`);
        ``judges_presence``: the view agrees with the map well enough to count as evidence that an
        object has gone (a view whose pose is off does not); ``relabel`` (None: all) marks the
        observations that may change a Gaussian's labels (vote or fill): the others, Gaussians created
        long before or after this view, only take part in association and presence judging. Returns,
        per level, the map track each segment was associated with (None where the mode keeps no
        tracks)."""

    @abstractmethod
    def relevance(self, gmap: GaussianMap, query: np.ndarray, negatives: np.ndarray) -> Relevance:
        """LERF margins of unit-norm text embedding ``query`` [D] against ``negatives`` [K, D]."""

    @abstractmethod
    def forget_fills(self, gmap: Columns, idx: np.ndarray) -> None:
        """Gaussians ``idx`` were not confirmed where a view saw the surface a little behind them:
        those whose semantics are only an edge pixel's fill (no vote) drop it."""

    def state(self) -> dict[str, np.ndarray]:
        """Map-level arrays to save (per-Gaussian ones live in the GaussianMap)."""
        return {}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state`."""

    def validate(self, gmap: GaussianMap) -> None:
        """Raise ValueError if ``gmap``'s per-Gaussian semantics disagree with this field."""


class CodebookField(SemanticField):
    """CCL-LGS codebook fusion with geometric mask association (see module docstring)."""

    mode = "codebook"
    columns = ("tracks", "track_votes", "codes")

    def __init__(self, dim: int, config: MappingConfig, seed: int = 0) -> None:
        super().__init__(dim)
        self.config = config
        self.codebook = ContrastiveCodebook(
            dim, capacity=config.codebook_size, spawn_cos=config.codebook_spawn_cos,
            lr=config.codebook_lr, pull=config.codebook_pull, push=config.codebook_push,
            margin=config.codebook_margin, replay_size=config.replay_size, seed=seed)
        self.track_counts = [np.zeros((0, config.codebook_size), np.int32) for _ in LEVELS]
        # views in a row in which a track's visible Gaussians lay in a segment of another code
        self.track_contradicted = [np.zeros(0, np.int32) for _ in LEVELS]
        # (id(gmap), revision, per level: code of each Gaussian [N], codes present [codebook size])
        self._resolved: tuple[int, int, list[np.ndarray], list[np.ndarray]] | None = None
        self._external: list[dict[int, int]] = [{} for _ in LEVELS]  # tracker id -> track, per level
        self._version = 0  # bumped whenever fusion or a load changes the codebook or the tracks
        self._codes_of_tracks: tuple[tuple, np.ndarray, list[np.ndarray]] | None = None
        self._postings: tuple[tuple, list[Block], list[tuple[np.ndarray, ...]]] | None = None

    def attach(self, gmap: GaussianMap | BlockStore) -> None:
        gmap.add_field("tracks", np.int32, (N_LEVELS,), fill=-1)
        gmap.add_field("track_votes", np.uint8, (N_LEVELS,))
        gmap.add_field("codes", np.int16, (N_LEVELS,), fill=-1)

    def summarize(self, gaussians: GaussianMap) -> dict[str, np.ndarray]:
        """Per level, the tracks of the block's Gaussians and the own codes of those nobody voted for."""
        out = {}
        tracks, votes, codes = gaussians["tracks"], gaussians["track_votes"], gaussians["codes"]
        for level in range(N_LEVELS):
            t = tracks[:, level]
            out[f"tracks_{level}"] = np.unique(t[t >= 0]).astype(np.int32)
            own = codes[:, level][(t < 0) & (votes[:, level] == 0)]
            out[f"codes_{level}"] = np.unique(own[own >= 0]).astype(np.int16)
        return out

    def code_of_tracks(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(unit prototypes, per level the code of every track: -1 where none or its object was seen
        gone), kept until fusion or a load changes the field (queries between keyframes share it)."""
        with self.lock:  # a consistent codebook and track table, even while fusion runs
            key = (self._version, self.codebook.size, tuple(map(id, self.track_counts)),
                   tuple(map(len, self.track_counts)))
            if self._codes_of_tracks is None or self._codes_of_tracks[0] != key:
                protos = self.codebook.normalized()
                code_of_track = []
                for level in range(N_LEVELS):
                    codes = self.track_codes(level, np.arange(len(self.track_counts[level])), protos)
                    codes[self.gone_tracks(level)] = -1  # its object was seen gone: no answer there
                    code_of_track.append(codes)
                self._codes_of_tracks = (key, protos, code_of_track)
            return self._codes_of_tracks[1], self._codes_of_tracks[2]

    def postings(self, store: BlockStore) -> tuple[list[Block], list[tuple[np.ndarray, ...]]]:
        """(the non-empty blocks, per level (block index, track) and (block index, own code) pairs
        of their summaries): which blocks hold which tracks, kept until the store changes."""
        key = (id(store), store.version)
        if self._postings is None or self._postings[0] != key:
            blocks = [blk for blk in store.blocks if blk.count]
            summaries = [store.summary(blk) for blk in blocks]
            levels = []
            for level in range(N_LEVELS):
                pairs = []
                for name in (f"tracks_{level}", f"codes_{level}"):
                    values = [s[name] for s in summaries]
                    index = np.repeat(np.arange(len(values), dtype=np.int64), [len(v) for v in values])
                    pairs += [index, np.concatenate(values).astype(np.int64) if values else np.zeros(0, np.int64)]
                levels.append(tuple(pairs))
            self._postings = (key, blocks, levels)
        return self._postings[1], self._postings[2]

    def scorer(self, store: BlockStore, query: np.ndarray, negatives: np.ndarray) -> BlockScorer:
        protos, code_of_track = self.code_of_tracks()
        blocks, postings = self.postings(store)
        present = np.zeros((N_LEVELS, self.codebook.size + 1), bool)  # last column: code -1
        for level, (_, tracks, _, codes) in enumerate(postings):
            present[level, code_of_track[level][tracks]] = True
            present[level, codes] = True
        present = present[:, :-1]
        margins = kind_margins(protos, query, negatives)
        code_margin = margins[best_kind(margins, np.logical_or.reduce(present))]
        return CodebookScorer(code_margin, present, code_of_track, store, blocks, postings)
    def track_codes(self, level: int, tracks: np.ndarray, prototypes: np.ndarray | None = None) -> np.ndarray:
        """Codebook entry of each of ``tracks`` at ``level`` (-1: no votes yet).

        A track's code is the prototype closest to the vote-weighted mean of the prototypes its
        features chose, so votes split among near-duplicate prototypes still add up.
        ``prototypes``: :meth:`ContrastiveCodebook.normalized`, if the caller has it already.
        """
        counts = self.track_counts[level][tracks, : self.codebook.size].astype(np.float32)
        code = np.full(len(tracks), -1, np.int64)
        voted = counts.sum(axis=1) > 0
        if voted.any():
            protos = self.codebook.normalized() if prototypes is None else prototypes
            code[voted] = ((counts[voted] @ protos) @ protos.T).argmax(axis=1)
        return code

    def _associate(self, s: np.ndarray, tracks: np.ndarray, is_new: np.ndarray, n_seg: int, level: int) -> np.ndarray:
        """Track of each segment: the visible track with IoU > threshold, else a new one."""
        n_tracks = len(self.track_counts[level])
        old = ~is_new
        seg_area = np.bincount(s[old & (s >= 0)], minlength=n_seg)
        has_track = old & (tracks >= 0)
        track_area = np.bincount(tracks[has_track], minlength=n_tracks)
        both = has_track & (s >= 0)
        assigned = np.full(n_seg, -1, dtype=np.int64)
        if both.any():
            keys, inter = np.unique(s[both].astype(np.int64) * n_tracks + tracks[both], return_counts=True)
            ps, pt = keys // n_tracks, keys % n_tracks
            iou = inter / (seg_area[ps] + track_area[pt] - inter)
            good = iou > self.config.association_iou
            assigned[ps[good]] = pt[good]  # at most one track can pass 0.5 per segment
        return self._new_tracks(assigned, level)

    def _new_tracks(self, assigned: np.ndarray, level: int) -> np.ndarray:
        """Give every -1 entry of ``assigned`` a new track of ``level``."""
        new = np.flatnonzero(assigned < 0)
        n = len(self.track_counts[level])
        assigned[new] = n + np.arange(new.size)
        if new.size:
            # the tables grow into spare rows (doubling): a building's thousands of tracks are not
            # copied on every keyframe that makes a new one
            counts, contradicted = self.track_counts[level], self.track_contradicted[level]
            if (counts.base is None or contradicted.base is None or counts.base.shape[0] < n + new.size
                    or contradicted.base.shape[0] < n + new.size or counts.base.shape[1] != counts.shape[1]):
                spare = max(64, 2 * (n + new.size))
                grown = np.zeros((spare, counts.shape[1]), np.int32)
                grown[:n] = counts
                grown_c = np.zeros(spare, np.int32)
                grown_c[:n] = contradicted
                counts, contradicted = grown[:n], grown_c[:n]
            self.track_counts[level] = counts.base[: n + new.size]
            self.track_contradicted[level] = contradicted.base[: n + new.size]
        return assigned

    def _note_contradictions(self, level: int, tracks: np.ndarray, observed: np.ndarray, voting: np.ndarray) -> None:
        """Count, per track, the views in a row in which most of its voting visible Gaussians lay
        in a segment of another code (its object has gone: a table top where a mug stood); a view
        in which most agree resets the count. Tracks of the same code (an object's fragments) agree."""
        sel = voting & (tracks >= 0) & (observed >= 0)
        if not sel.any():
            return
        n_tracks = len(self.track_counts[level])
        t = tracks[sel]
        involved = np.unique(np.concatenate([t, observed[sel]]))
        code = np.full(n_tracks, -1, np.int64)
        code[involved] = self.track_codes(level, involved)
        differs = code[observed[sel]] != code[t]
        seen = np.bincount(t, minlength=n_tracks)
        against = np.bincount(t, weights=differs, minlength=n_tracks)
        counted = seen >= 3  # a Gaussian or two at an outline decide nothing
        contradicted = self.track_contradicted[level]
        contradicted[counted & (2 * against > seen)] += 1
        contradicted[counted & (2 * against <= seen)] = 0

    def gone_tracks(self, level: int) -> np.ndarray:
        """bool per track of ``level``: contradicted in ``stale_track_views`` views in a row."""
        return self.track_contradicted[level] >= self.config.stale_track_views

    def _tracker_tracks(self, external: np.ndarray, level: int) -> np.ndarray:
        """Tracks of segments that carry a tracker's stable ids (e.g. SAM 2 propagation)."""
        known = self._external[level]
        assigned = np.array([known.get(int(e), -1) for e in external], np.int64)
        assigned = self._new_tracks(assigned, level)
        known.update((int(e), int(t)) for e, t in zip(external, assigned))
        return assigned

    def integrate(self, gmap: Columns, seg: Segmentation, idx: np.ndarray, u: np.ndarray,
                  v: np.ndarray, is_new: np.ndarray, abstain: np.ndarray | None = None,
                  judges_presence: bool = True, relabel: np.ndarray | None = None) -> list[np.ndarray | None]:
        with self.lock:
            return self._integrate(gmap, seg, idx, u, v, is_new, abstain, judges_presence, relabel)

    def _integrate(self, gmap: Columns, seg: Segmentation, idx: np.ndarray, u: np.ndarray, v: np.ndarray,
                   is_new: np.ndarray, abstain: np.ndarray | None, judges_presence: bool,
                   relabel: np.ndarray | None) -> list[np.ndarray | None]:
        tracks_all, track_votes = gmap["tracks"], gmap["track_votes"]
        listen = np.ones(idx.size, bool) if abstain is None else ~abstain
        may_relabel = listen if relabel is None else listen & relabel
        no_segment_weight = int(round(VOTE_UNIT * self.config.no_segment_vote_weight))
        self._resolved = None
        segment_tracks: list[np.ndarray | None] = [None] * N_LEVELS
        for level in range(N_LEVELS):
            emb = seg.embeddings[level]
            if len(emb) == 0:
                continue
            s = seg.levels[level][v, u]
            tracks = tracks_all[idx, level]
            if seg.tracks is not None:
                seg_track = self._tracker_tracks(seg.tracks[level], level)
            else:
                seg_track = self._associate(s, tracks, is_new, len(emb), level)
            segment_tracks[level] = seg_track
            proto = self.codebook.assign(emb)
            np.add.at(self.track_counts[level], (seg_track, proto), 1)
            self.codebook.remember(emb, seg_track * N_LEVELS + level)
            inside = s >= 0
            observed = np.where(inside, seg_track[np.maximum(s, 0)], -1)
            interior = listen.copy()
            if self.config.boundary_abstain_frac > 0:  # pixels near a mask edge do not vote
                interior &= ~boundary_band(seg.levels[level], self.config.boundary_abstain_frac)[v, u]
            vote = interior & may_relabel
            # a streaming weighted majority vote over views, "in no segment" voting -1 with less weight
            weight = np.where(inside, VOTE_UNIT, no_segment_weight)
            votes = track_votes[idx, level]
            if judges_presence:
                self._note_contradictions(level, tracks, observed, interior & ~is_new)
            new_track, new_votes = weighted_majority(tracks, votes, observed, weight)
            tracks_all[idx, level] = np.where(vote, new_track, tracks)
            track_votes[idx, level] = np.where(vote, new_votes, votes)
            # an edge pixel only fills the code of a Gaussian nobody voted for: thin objects seen
            # only near their outline keep semantics, and the first interior vote overrides it
            fill = np.flatnonzero(~interior & may_relabel & (tracks < 0) & (votes == 0) & inside)
            fill = fill[gmap["codes"][idx[fill], level] < 0]
            if fill.size:
                gmap["codes"][idx[fill], level] = self.track_codes(level, observed[fill])
        self.codebook.train(self.config.codebook_steps, self.config.codebook_batch)
        self._version += 1
        return segment_tracks

    def forget_fills(self, gmap: Columns, idx: np.ndarray) -> None:
        unvoted = (gmap["tracks"][idx] < 0) & (gmap["track_votes"][idx] == 0)
        if unvoted.any():
            codes = gmap["codes"][idx]
            codes[unvoted] = -1
            gmap["codes"][idx] = codes
            self._resolved = None

    def _resolve(self, gmap: GaussianMap) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per level, the code of every Gaussian [N] (contiguous intp, -1: none) and bool [codebook
        size]: is the code in use. Cached per map revision (24 bytes per Gaussian)."""
        key = (id(gmap), gmap.revision)
        if self._resolved is None or self._resolved[:2] != key:
            protos = self.codebook.normalized()
            n = self.codebook.size
            columns, present = [], []
            for level in range(N_LEVELS):
                col = gmap["codes"][:, level].copy()
                tracks = gmap["tracks"][:, level]
                has = tracks >= 0
                code_of_track = self.track_codes(level, np.arange(len(self.track_counts[level])), protos)
                code_of_track[self.gone_tracks(level)] = -1  # its object was seen gone: no answer there
                col[has] = code_of_track[tracks[has]]
                col[~has & (gmap["track_votes"][:, level] > 0)] = -1
                # intp: numpy converts any other index type on every gather (2.5x slower at 1M)
                columns.append(col.astype(np.intp))
                present.append(np.bincount(col[col >= 0], minlength=n)[:n] > 0)
            self._resolved = (*key, columns, present)
        return self._resolved[2], self._resolved[3]

    def resolved_codes(self, gmap: GaussianMap) -> np.ndarray:
        """[N, levels] codebook entry of every Gaussian (-1: none): its track's code, -1 where "in no
        segment" won its vote, and its own ``codes`` entry where nobody voted."""
        return np.stack(self._resolve(gmap)[0], axis=1).astype(np.int16)

    def relevance(self, gmap: GaussianMap, query: np.ndarray, negatives: np.ndarray) -> Relevance:
        with self.lock:
            codes, present = self._resolve(gmap)
            protos = self.codebook.normalized()
        margins = kind_margins(protos, query, negatives)
        code_margin = margins[best_kind(margins, np.logical_or.reduce(present))]
        return CodeRelevance(code_margin, present, codes)

    def state(self) -> dict[str, np.ndarray]:
        state = {"codebook_prototypes": self.codebook.state()["prototypes"]}
        for level, name in enumerate(LEVELS):
            state[f"track_counts_{name}"] = self.track_counts[level]
            state[f"track_contradicted_{name}"] = self.track_contradicted[level]
        return state

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._version += 1
        self.codebook.load_state(arrays["codebook_prototypes"])
        self.track_counts = [arrays[f"track_counts_{name}"].astype(np.int32) for name in LEVELS]
        # maps saved before this count: every track counts as seen
        self.track_contradicted = [arrays.get(f"track_contradicted_{name}", np.zeros(len(counts), np.int32))
                                   .astype(np.int32) for name, counts in zip(LEVELS, self.track_counts)]
        self._resolved = None

    def validate(self, gmap: GaussianMap) -> None:
        if "tracks" not in gmap or "codes" not in gmap:
            raise ValueError("codebook map without per-Gaussian tracks and codes")
        if len(gmap) and gmap["codes"].max() >= self.codebook.size:
            raise ValueError(f"Gaussian codes exceed the {self.codebook.size} stored prototypes")
        for level, counts in enumerate(self.track_counts):
            if len(gmap) and gmap["tracks"][:, level].max() >= len(counts):
                raise ValueError(f"Gaussian tracks exceed the {len(counts)} stored {LEVELS[level]} tracks")


class AverageField(SemanticField):
    """Per-Gaussian running average of segment embeddings (baseline)."""

    mode = "average"
    columns = ("features", "weights")

    def __init__(self, dim: int, config: MappingConfig) -> None:
        super().__init__(dim)
        self.config = config

    def attach(self, gmap: GaussianMap | BlockStore) -> None:
        gmap.add_field("features", np.float16, (N_LEVELS, self.dim))
        gmap.add_field("weights", np.uint16, (N_LEVELS,))

    def scorer(self, store: BlockStore, query: np.ndarray, negatives: np.ndarray) -> BlockScorer:
        return AverageScorer(query, negatives, store)

    def integrate(self, gmap: Columns, seg: Segmentation, idx: np.ndarray, u: np.ndarray,
                  v: np.ndarray, is_new: np.ndarray, abstain: np.ndarray | None = None,
                  judges_presence: bool = True, relabel: np.ndarray | None = None) -> None:
        features, weights = gmap["features"], gmap["weights"]
        listen = np.ones(idx.size, bool) if abstain is None else ~abstain
        if relabel is not None:  # no tracks here: an observation that may not relabel does nothing
            listen &= relabel
        for level in range(N_LEVELS):
            emb = seg.embeddings[level]
            if len(emb) == 0:
                continue
            # a view in which the Gaussian lies in no segment contributes a zero embedding
            s = seg.levels[level][v, u]
            keep = listen.copy()
            if self.config.boundary_abstain_frac > 0:  # pixels near a mask edge do not vote
                keep &= ~boundary_band(seg.levels[level], self.config.boundary_abstain_frac)[v, u]
            # ... but fill a Gaussian nobody voted for, with no weight (as in CodebookField)
            fill = np.flatnonzero(~keep & listen & (s >= 0) & (weights[idx, level] == 0))
            fill = fill[~features[idx[fill], level].any(axis=1)]
            features[idx[fill], level] = emb[s[fill]].astype(np.float16)
            sel, s = idx[keep], s[keep]
            observed = np.where((s >= 0)[:, None], emb[np.maximum(s, 0)], 0.0)
            w = weights[sel, level].astype(np.float32)[:, None]
            mean = (features[sel, level].astype(np.float32) * w + observed) / (w + 1)
            features[sel, level] = mean.astype(np.float16)
            weights[sel, level] = np.minimum(w[:, 0] + 1, 65535).astype(np.uint16)

    def relevance(self, gmap: GaussianMap, query: np.ndarray, negatives: np.ndarray) -> Relevance:
        return Relevance([average_margins(gmap, level, query, negatives) for level in range(N_LEVELS)])

    def forget_fills(self, gmap: Columns, idx: np.ndarray) -> None:
        unvoted = gmap["weights"][idx] == 0
        if unvoted.any():
            features = gmap["features"][idx]
            features[unvoted] = 0
            gmap["features"][idx] = features

    def validate(self, gmap: GaussianMap) -> None:
        if "features" not in gmap or gmap["features"].shape[2:] != (self.dim,):
            raise ValueError(f"average map without [N, 3, {self.dim}] features")


def create_field(mode: str, dim: int, config: MappingConfig, seed: int = 0) -> SemanticField:
    """Semantic field of a fusion mode (``codebook`` or ``average``)."""
    if mode == "codebook":
        return CodebookField(dim, config, seed=seed)
    if mode == "average":
        return AverageField(dim, config)
    raise ValueError(f"unknown fusion mode '{mode}' (codebook or average)")
