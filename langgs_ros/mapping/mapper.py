"""Incremental mapping: keyframes -> feed-forward Gaussians -> dedup -> semantic fusion -> pruning.

For each keyframe the existing map is projected into the view: a Gaussian whose depth agrees with
the observed depth at its pixel is *visible* (it explains that pixel, so no new Gaussian is made
there, and it receives this view's semantics); one clearly in front of the observed surface is
*seen through* (it lies in observed free space): its confidence (confirmations, at most 16) is halved,
and it is removed at zero, so a moved object's old surface leaves within a few clear views. A view
that sees through more than ``max_disagreement`` of the confirmed Gaussians it meets has a pose off
(drift): it removes only what one view saw, and is no evidence that an object has gone.
New Gaussians fill only the pixels the map does not explain. Nothing is pruned for its age or for
want of space: the map lives in spatial blocks (:class:`~langgs_ros.mapping.block_store.BlockStore`)
and a keyframe works on the blocks in its view frustum only, so its cost follows what the camera
sees; blocks beyond ``ram_budget_mb`` wait on disk until a view needs them. Semantics are fused at the visible and new
Gaussians, except where a pixel lies just behind a depth silhouette (masks bleed off the object in
front onto it). A view that disagrees with the map a little (more than ``relabel_max_disagreement``:
its pose may be off by drift) votes only on the labels of Gaussians created within ``relabel_window``
keyframes of it: drift between far-apart keyframes would put its labels on wrong Gaussians, which no
later pose correction undoes.

Geometry and semantics are two steps: :meth:`Mapper.integrate_geometry` changes the map and
returns a :class:`PendingKeyframe` (the view's image, depth, pose and the ids of the Gaussians it
saw or created, with their pixels and blocks); :meth:`Mapper.segment` runs the 2D backend on it
(slow, no map access) and :meth:`Mapper.fuse_semantics` fuses the result into those Gaussians,
however late: Gaussians created since at the same pixels get nothing, Gaussians pruned since are
skipped.
:meth:`Mapper.integrate` does all three at once (offline replay).

Color-only keyframes take their depth from :class:`StereoDepth` (plane sweep and planar hole fill).
A stereo Gaussian seen again moves to the mean of its observations; a plane-filled one starts
unconfirmed and unlabelled: a fill shapes free space and obstacles, and gets semantics only once a
measured depth confirms it.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import numpy as np

from langgs_ros.config import MappingConfig, RefineConfig
from langgs_ros.errors import InputError
from langgs_ros.geometry import invert_transform
from langgs_ros.io.camera_check import frame_problem
from langgs_ros.io.pose_check import PoseJumpFilter
from langgs_ros.mapping.block_store import BlockStore, BlockView
from langgs_ros.mapping.feedforward import PixelGaussians, gaussian_fields, pixel_gaussians
from langgs_ros.mapping.fusion import SemanticField, behind_silhouette, boundary_band, create_field
from langgs_ros.mapping.integration import FusionWork, IntegrationStats, PendingKeyframe
from langgs_ros.mapping.keyframe_log import KeyframeLog
from langgs_ros.mapping.keyframes import KeyframeSelector
from langgs_ros.mapping.pose_correction import CorrectionStats, PoseGraph, correct_map, reanchor_map
from langgs_ros.mapping.stereo_depth import StereoDepth
from langgs_ros.mapping.training_views import IGNORE, NO_SEGMENT, TrainingView, set_view_tracks, training_view
from langgs_ros.mapping.visibility import Visibility, map_visibility
from langgs_ros.semantics.backend import Segmentation, SegmentationGuidance, SemanticBackend
from langgs_ros.types import CameraIntrinsics, Frame

__all__ = ["Mapper", "MAX_CONFIDENCE"]

MAX_CONFIDENCE = 16
"""Confirmations a Gaussian's confidence counts up to: a surface confirmed for a long time still
leaves the map within a few views once it is gone (each view through it halves its confidence)."""


class Mapper:
    """Builds a semantic Gaussian map from posed RGB-D frames."""

    def __init__(self, config: MappingConfig, backend: SemanticBackend | None, seed: int = 0,
                 refine: RefineConfig | None = None, reanchor_jump_m: float = 0.0,
                 directory: str | Path | None = None, max_speed_mps: float = 10.0,
                 max_turn_rate_dps: float = 720.0) -> None:
        """``directory``: the map directory whose ``blocks/`` hold blocks paged out of RAM (None: a
        temporary one, made when first needed); ``max_speed_mps``, ``max_turn_rate_dps``: frames
        whose pose jumps faster are skipped (``input.*``, :class:`~langgs_ros.io.pose_check.PoseJumpFilter`)."""
        self.config = config
        self.pose_filter = PoseJumpFilter(max_speed_mps, max_turn_rate_dps)
        self.reanchor_jump_m = reanchor_jump_m
        """``input.reanchor_on_map_odom_jump_m``: re-express keyframes that map -> odom moves this far (m); 0 = off."""
        self._odom_checked: np.ndarray | None = None  # map -> odom the keyframes were last checked against
        self._graph: PoseGraph | None = None  # the newest pose graph: it also poses frames it covers that come late
        # the newest keyframes, resized, with their segments' map tracks: refinement's training views
        self.refine_config = refine
        self.views: deque[TrainingView] = deque(maxlen=refine.window if refine else 0)
        # every holdout_every-th non-keyframe, resized like the views: judges refinement
        self.held_out: deque[TrainingView] = deque(
            maxlen=refine.holdout_views if refine and refine.window > 0 and refine.holdout_every > 0 else 0)
        self._non_keyframes = 0
        self.backend = backend
        self.keyframes = KeyframeLog()
        self.store = BlockStore(config.block_size_m, config.ram_budget_mb, directory)
        self.field: SemanticField | None = None
        if backend is not None:
            self.field = create_field(config.fusion, backend.dim, config, seed=seed)
        self._attach_store(loaded=False)
        self.selector = KeyframeSelector(config.keyframe_translation_m, config.keyframe_rotation_deg)
        self.stereo = StereoDepth(config)
        """Pose, stamp and first created Gaussian of each keyframe (``last_seen`` indexes it)."""
        self.base_heights: list[float] = []
        """z (m, fixed frame) of the robot's base frame at keyframes whose frame had it (TF)."""

    @staticmethod
    def warm_up() -> None:
        """Compile (or load from numba's cache) the per-keyframe kernels now, not on the first
        keyframe (a node does this at configure: otherwise its first frames wait about a second)."""
        K = CameraIntrinsics(8, 8, 8.0, 8.0, 3.5, 3.5)
        frame = Frame(0, "warm-up", np.zeros((8, 8, 3), np.uint8), K, np.eye(4), depth=np.ones((8, 8), np.float32))
        px = pixel_gaussians(frame, 2)
        map_visibility(px.means_world.reshape(-1, 3), frame, px, 0.02)

    @property
    def n_keyframes(self) -> int:
        """Keyframes integrated into this map (a loaded map's included)."""
        return len(self.keyframes)

    def adopt(self, store: BlockStore, field: SemanticField | None, keyframes: KeyframeLog | None = None) -> None:
        """Continue mapping on a loaded map and its keyframe log; raises InputError if its semantics
        do not fit. Without a log with times (a map saved before them), the loaded Gaussians' times
        stay unknown (``last_seen`` -1) and the log starts anew."""
        if (field is None) != (self.field is None):
            have = "no semantics" if field is None else "semantics"
            raise InputError(f"the saved map has {have}, the mapper was set up "
                             f"{'without' if self.field is None else 'with'} a semantic backend")
        if field is not None and self.backend is not None and (field.mode != self.config.fusion
                                                               or field.dim != self.backend.dim):
            raise InputError(f"the saved map uses {field.mode} fusion of {field.dim}-d features; the mapper "
                             f"is set up for {self.config.fusion} fusion of {self.backend.dim}-d features")
        old = self.store
        self.store, self.field = store, field
        if old is not store:
            old.close()
        store.ram_budget_bytes = self.store.ram_budget_bytes if store.ram_budget_bytes else old.ram_budget_bytes
        self._odom_checked = None  # the loaded keyframes have not been checked yet
        if keyframes is not None and keyframes.times_known:
            self.keyframes = keyframes
        else:
            self.keyframes = KeyframeLog()
            store.load_all()
            for blk in store.blocks:  # the loaded Gaussians' times are unknown
                assert blk.gaussians is not None
                blk.gaussians["last_seen"][:] = -1
                blk.dirty = True
        self._attach_store(loaded=True)

    def apply_pose_graph(self, graph: PoseGraph) -> CorrectionStats:
        """Re-pose the keyframes ``graph`` covers (SLAM's corrected base poses) and move the
        Gaussians anchored to them, with their semantics; refinement views follow."""
        newest = self._newest_pose()
        stats, moved = correct_map(self.store, self.keyframes, graph)
        self._follow_reposed(moved, newest)
        self._graph = graph
        return stats

    def reanchor(self, T_world_odom: np.ndarray | None) -> CorrectionStats | None:  # noqa: N803
        """Re-express the keyframes that the current map -> odom ``T_world_odom`` moves by more
        than :attr:`reanchor_jump_m`, with their Gaussians; None when none moved (or it is off)."""
        if T_world_odom is None or not self.reanchor_jump_m > 0 or not self.n_keyframes:
            return None
        if self._odom_checked is not None and np.array_equal(T_world_odom, self._odom_checked):
            return None  # map -> odom as at the last check (the usual case between corrections)
        self._odom_checked = np.array(T_world_odom, np.float64)
        newest = self._newest_pose()
        stats, moved = reanchor_map(self.store, self.keyframes, T_world_odom, self.reanchor_jump_m)
        self._follow_reposed(moved, newest)
        return stats if moved.size else None

    def _newest_pose(self) -> np.ndarray | None:
        """T_world_cam of the newest keyframe (a copy), None before the first."""
        return self.keyframes.poses[-1].copy() if self.n_keyframes else None

    def _follow_reposed(self, moved: np.ndarray, newest_before: np.ndarray | None) -> None:
        """Refinement views, the keyframe selector and the stereo source views follow keyframes given
        new poses (``newest_before``: the newest keyframe's pose before the correction)."""
        poses = self.keyframes.poses
        for view in self.views:
            if 0 <= view.keyframe < len(poses) and view.keyframe in moved:
                view.T_cam_world = invert_transform(poses[view.keyframe])
        if moved.size and moved[-1] == len(poses) - 1 and newest_before is not None:
            self.selector.accept(poses[-1])  # the next keyframe is judged against the corrected pose
            # the recent frames stereo matches against were posed like the newest keyframe: they move with it
            self.stereo.follow(poses[-1] @ invert_transform(newest_before))

    def _attach_store(self, loaded: bool) -> None:
        """Register the semantic field's and the mapper's per-Gaussian fields in the store."""
        store = self.store
        store.anchor_of = lambda uids: self.keyframes.anchors(uids)
        if self.field is not None:
            self.field.attach(store)  # (re)sets the fill values of its per-Gaussian fields
            store.summarize = self.field.summarize
            store.summary_fields = frozenset(self.field.columns)
            # views whose semantics were fused into each Gaussian (saturating): the backlog's drop policy
            # and "not yet labelled" answers; a map saved before this field counts as labelled
            store.add_field("labelled_views", np.uint8, (), fill=1 if loaded and "labelled_views" not in store else 0)
            store.add_field("labelled_views", np.uint8, ())  # ... new Gaussians start unlabelled
        if self.backend is not None and self.backend.uses_depth_guidance:
            # nearest depth each Gaussian was observed from (m), for GAGS prompt density
            store.add_field("min_depth", np.float16, (), fill=np.inf)

    def _guidance(self, frame: Frame, view: BlockView, vis: Visibility, new_u: np.ndarray,
                  new_v: np.ndarray) -> SegmentationGuidance:
        """GAGS eq. 1 input: (D / MD)^2 at the pixels of visible Gaussians (updates MD), and the
        views fused into each (0 at new Gaussians)."""
        md = view["min_depth"]
        d = frame.depth[vis.visible_v, vis.visible_u]
        h, w = frame.depth.shape
        stride = self.config.pixel_stride
        ratio = np.full((h // stride, w // stride), np.nan, np.float32)
        views = np.full_like(ratio, np.nan)
        row = np.minimum(vis.visible_v // stride, ratio.shape[0] - 1)
        col = np.minimum(vis.visible_u // stride, ratio.shape[1] - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (d / md[vis.visible_idx].astype(np.float32)) ** 2
        ok = np.isfinite(r)
        ratio[row[ok], col[ok]] = np.maximum(r[ok], 1.0)
        views[row, col] = view.read("labelled_views")[vis.visible_idx]  # a backend with guidance has a field
        views[np.minimum(new_v // stride, views.shape[0] - 1), np.minimum(new_u // stride, views.shape[1] - 1)] = 0
        md[vis.visible_idx] = np.fmin(md[vis.visible_idx], d.astype(np.float16))
        return SegmentationGuidance(depth_ratio=ratio, labelled_views=views)

    def integrate(self, frame: Frame, segmentation: Segmentation | None = None) -> IntegrationStats:
        """Add a frame, geometry and semantics at once; only keyframes change the map. Raises
        InputError for unusable frames.

        ``segmentation`` (same size as the frame) replaces the backend's own, for segments computed
        elsewhere (the split semantics node).
        """
        if segmentation is not None:
            self.check_segmentation(frame.rgb.shape[:2], segmentation)
        start = time.perf_counter()
        stats, pending = self._add_geometry(frame)
        if pending is not None:
            stats.seconds = time.perf_counter() - start
            sem_start = time.perf_counter()
            if self.field is not None:
                self.fuse_semantics(pending, segmentation if segmentation is not None else self.segment(pending))
            stats.semantics_seconds = time.perf_counter() - sem_start
        return stats

    def integrate_geometry(self, frame: Frame) -> tuple[IntegrationStats, PendingKeyframe | None]:
        """Add a frame's geometry (keyframes only); returns its figures and, for a keyframe of a
        map with semantics, what :meth:`segment` and :meth:`fuse_semantics` need later. Raises
        InputError for unusable frames."""
        start = time.perf_counter()
        stats, pending = self._add_geometry(frame)
        if pending is not None:
            stats.seconds = time.perf_counter() - start
        return stats, pending if self.field is not None else None

    def segment(self, pending: PendingKeyframe) -> Segmentation:
        """The backend's segments of a pending keyframe (no map access: may run while the map changes)."""
        if self.backend is None:
            raise InputError("the map has no semantic backend")
        return self.backend.segment(pending.frame, pending.guidance)

    def fuse_semantics(self, pending: PendingKeyframe, segmentation: Segmentation) -> int:
        """Fuse a keyframe's segments into the Gaussians it saw when its geometry was integrated
        (those removed since are skipped); returns how many received them. Segments from elsewhere
        (split mode) are checked by the caller with :meth:`check_segmentation` before the geometry.
        The same as :meth:`begin_fusion`, :meth:`compute_fusion` and :meth:`finish_fusion` in a row."""
        work = self.begin_fusion(pending, segmentation)
        self.compute_fusion(work)
        return self.finish_fusion(work)

    def begin_fusion(self, pending: PendingKeyframe, segmentation: Segmentation) -> FusionWork:
        """Step 1 of fusion (reads the map: hold the map lock): copy the semantics of the Gaussians
        the keyframe saw that are still there."""
        if self.field is None:
            raise InputError("segments were given to a map without semantics")
        handles = self.store.locate(pending.uids, pending.keys, pending.rows)
        columns = self.store.gather(handles, [*self.field.columns, "labelled_views"])
        return FusionWork(pending, segmentation, handles.index, self.store.keys_of_handles(handles), handles.rows,
                          columns, columns["codes"].copy() if "codes" in columns else None)

    def compute_fusion(self, work: FusionWork) -> None:
        """Step 2 (no map access: the map lock need not be held): vote the segments into the copy
        and train the semantic field (which guards its own state from concurrent queries)."""
        assert self.field is not None
        pending, seg, ok = work.pending, work.segmentation, work.index
        abstain = None if pending.abstain is None else pending.abstain[ok]
        if seg.abstain is not None:  # the backend prompted this surface sparsely: no evidence
            quiet = seg.abstain[pending.v[ok], pending.u[ok]]
            abstain = quiet if abstain is None else abstain | quiet
        relabel = None
        if self.config.relabel_window > 0 and pending.disagreement > self.config.relabel_max_disagreement:
            anchor = self.keyframes.anchors(pending.uids[ok])
            relabel = (anchor < 0) | (np.abs(anchor - pending.keyframe) <= self.config.relabel_window)
        work.segment_tracks = self.field.integrate(work.columns, seg, np.arange(ok.size), pending.u[ok], pending.v[ok],
                                                   pending.is_new[ok], abstain, pending.agrees_with_map, relabel)
        views = work.columns["labelled_views"]
        work.columns["labelled_views"] = np.minimum(views.astype(np.int16) + 1, 255).astype(np.uint8)
        if self.views.maxlen:  # the refinement views' track maps (set under the lock, made here)
            work.track_maps = self._track_maps(seg, work.segment_tracks)

    def finish_fusion(self, work: FusionWork) -> int:
        """Step 3 (writes the map: hold the map lock): put the votes back into the Gaussians still
        there (geometry may have carved some meanwhile); returns how many received them. A code is
        written only where fusion changed it (geometry may have cleared a fill meanwhile)."""
        assert self.field is not None
        uids = work.pending.uids[work.index]
        handles = self.store.locate(uids, work.keys, work.rows)
        # usually every Gaussian is still there, in the order copied: no reindexing copies then
        same = len(handles) == uids.size and bool(np.all(handles.index == np.arange(uids.size)))

        def still_there(values: np.ndarray) -> np.ndarray:
            return values if same else values[handles.index]

        self.store.scatter(handles, {name: still_there(col) for name, col in work.columns.items() if name != "codes"})
        if work.codes_before is not None:
            codes = still_there(work.columns["codes"])
            changed = np.flatnonzero((codes != still_there(work.codes_before)).any(axis=1))
            if changed.size:
                self.store.scatter(handles.subset(changed), {"codes": codes[changed]})
        if work.track_maps is not None:
            view = next((v for v in self.views if v.keyframe == work.pending.keyframe), None)
            if view is not None:
                set_view_tracks(view, work.track_maps)
        return len(handles)

    def refine_keys(self, views: list[TrainingView]) -> list[int]:
        """Blocks in the frustums of refinement views (up to their farthest depth; without depth,
        the sweep's range): what a refinement round works on."""
        keys: set[int] = set()
        for view in views:
            K = CameraIntrinsics(view.width, view.height, float(view.K[0, 0]), float(view.K[1, 1]),
                                 float(view.K[0, 2]), float(view.K[1, 2]))
            finite = None if view.depth is None else view.depth[np.isfinite(view.depth)]
            far = float(finite.max()) * 1.1 + 0.1 if finite is not None and finite.size else self.config.stereo_max_depth_m
            keys.update(self.store.frustum_keys(invert_transform(view.T_cam_world), K, far))
        return sorted(keys)

    def floor_z(self) -> float | None:
        """Floor height (m, fixed frame) under the robot: the median z of its base frame at the
        keyframes (REP-105: the base frame lies on the floor), or None without a base frame."""
        return float(np.median(self.base_heights)) if self.base_heights else None

    def labelled_mask(self, uids: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """bool per id in ``uids`` (recorded in blocks ``keys``): the Gaussian has semantics from a
        fused view, or is gone from the map (what segmenting a pending keyframe would add nothing to)."""
        handles = self.store.locate(uids, keys)
        out = np.ones(len(uids), bool)
        if "labelled_views" in self.store:
            out[handles.index] = self.store.gather(handles, ["labelled_views"])["labelled_views"] > 0
        else:
            out[handles.index] = False
        return out

    def check_segmentation(self, shape: tuple[int, int], segmentation: Segmentation) -> None:
        """Raise InputError unless ``segmentation`` fits an image of ``shape`` (rows, cols) and this map."""
        if self.backend is None:
            raise InputError("segments were given to a map without semantics")
        if any(ids.shape != shape for ids in segmentation.levels):
            raise InputError("segment images and the color image differ in size")
        try:
            segmentation.validate(self.backend.dim)
        except ValueError as exc:
            raise InputError(f"segments do not fit the map's {self.backend.dim}-d semantics: {exc}") from None

    def _hold_out(self, frame: Frame) -> None:
        """Keep every ``refine.holdout_every``-th non-keyframe as a held-out view."""
        if self.held_out.maxlen:
            assert self.refine_config is not None
            if self._non_keyframes % self.refine_config.holdout_every == 0:
                self.held_out.append(training_view(frame, self.refine_config.scale, -1))
            self._non_keyframes += 1

    def _add_geometry(self, frame: Frame) -> tuple[IntegrationStats, PendingKeyframe | None]:
        """Keyframe test, depth, the blocks in view, their visibility, confidence and carving, new
        Gaussians. Returns the figures and the pending keyframe (None for a non-keyframe)."""
        problem = frame_problem(frame)
        if problem:
            raise InputError(problem)
        graph_posed = None if self._graph is None else self._graph.pose_frame(frame)
        jump = self.pose_filter.check(frame.stamp_ns, frame.T_world_cam if graph_posed is None else graph_posed.T_world_cam)
        if jump:
            raise InputError(jump)
        if graph_posed is not None:  # its map -> odom predates the graph: no re-anchoring on it
            frame, reanchored = graph_posed, None
        else:
            reanchored = self.reanchor(frame.T_world_odom)  # before the keyframe test: it judges corrected poses
        filled = None  # pixels of plane-filled depth: weaker evidence than measured depth
        stereo = frame.depth is None
        if stereo:  # color only: plane-sweep depth from recent posed views
            keyframe = self.selector.is_keyframe(frame.T_world_cam)
            estimate = self.stereo.estimate(frame) if keyframe else None
            self.stereo.observe(frame)
            if not keyframe:
                self._hold_out(frame)
                return IntegrationStats(keyframe=False, total=len(self.store), reanchored=reanchored), None
            if estimate is None:
                raise InputError("color-only frame: no earlier view with enough baseline for stereo depth yet")
            depth, filled = estimate
            frame = frame.with_depth(depth)
        elif not self.selector.is_keyframe(frame.T_world_cam):
            self._hold_out(frame)
            return IntegrationStats(keyframe=False, total=len(self.store), reanchored=reanchored), None
        self.selector.accept(frame.T_world_cam)
        kf = self.n_keyframes
        px = pixel_gaussians(frame, self.config.pixel_stride)
        cu, cv = px.grid.sample_pixels()
        filled_cells = None if filled is None else filled[cv, cu].reshape(-1)
        tol_per_m = self.config.stereo_tolerance_per_m if stereo else 0.0
        # only the blocks in the view frustum, up to the farthest surface seen: nothing else can be
        # explained or seen through by this view
        view = self.store.view(self.store.frustum_keys(frame.T_world_cam, frame.intrinsics,
                                                       self._far_depth(px, tol_per_m)))
        vis = map_visibility(view.read("means"), frame, px, self.config.surface_tolerance, filled_cells, tol_per_m)
        new_cells = np.flatnonzero(px.valid.reshape(-1) & ~vis.covered)
        conf = view["confidence"]
        # judged on Gaussians other views confirmed: a passer-by seen once says nothing about the pose
        disagreement = vis.disagreement(conf >= 2)
        agrees = disagreement <= self.config.max_disagreement
        measured = np.ones(vis.visible_idx.size, bool) if filled is None else ~filled[vis.visible_v, vis.visible_u]
        confirmed = vis.visible_idx[measured]
        if stereo and self.config.stereo_average_positions:  # running mean over the views that saw it
            stride = self.config.pixel_stride
            obs = px.means_world[vis.visible_v[measured] // stride, vis.visible_u[measured] // stride]
            seen = conf[confirmed].astype(np.float32)[:, None]
            means = view["means"]
            means[confirmed] += (obs - means[confirmed]) / (seen + 1)
        conf[confirmed] = np.minimum(conf[confirmed].astype(np.int16) + 1, MAX_CONFIDENCE)
        view["last_seen"][vis.visible_idx] = kf
        if self.field is not None and vis.in_front.size:  # e.g. the foot of a mug that has been moved away
            self.field.forget_fills(view, vis.in_front)
        new_u, new_v = cu.reshape(-1)[new_cells], cv.reshape(-1)[new_cells]
        guidance = None
        if self.backend is not None and self.backend.uses_depth_guidance:
            guidance = self._guidance(frame, view, vis, new_u, new_v)
        visible_uids = view.read("uid")[vis.visible_idx]
        visible_keys, visible_rows = view.keys_of(vis.visible_idx)
        removed = self._carve(view, vis, agrees)
        view.commit()
        # the keyframe is logged before its Gaussians are added: their ids name it as their anchor
        mount = None if frame.T_world_base is None else invert_transform(frame.T_world_base) @ frame.T_world_cam
        self.keyframes.append(frame.T_world_cam, frame.stamp_ns, self.store.next_uid, mount,
                              None if graph_posed is not None else frame.T_world_odom)
        fields = gaussian_fields(px, new_cells, self.config.initial_opacity)
        # a plane fill is a guess, not an observation: its Gaussians start unconfirmed (removed by the
        # first view through them) and unlabelled until a measured view sees them
        fields["confidence"] = (np.ones(new_cells.size, np.uint8) if filled_cells is None
                                else np.where(filled_cells[new_cells], 0, 1).astype(np.uint8))
        fields["last_seen"] = np.full(new_cells.size, kf, np.int32)
        if "min_depth" in self.store:
            fields["min_depth"] = px.depth.reshape(-1)[new_cells].astype(np.float16)
        new_uids, new_keys, new_rows = self.store.append(**fields)
        u = np.concatenate([vis.visible_u, new_u])
        v = np.concatenate([vis.visible_v, new_v])
        is_new = np.zeros(u.size, bool)
        is_new[vis.visible_idx.size :] = True
        abstain = None
        if self.config.occlusion_abstain_frac > 0:
            radius = int(round(self.config.occlusion_abstain_frac * frame.depth.shape[1]))
            abstain = behind_silhouette(frame.depth, radius, self.config.occlusion_depth_jump)[v, u]
        if filled is not None:  # a plane fill shapes free space and obstacles, but a guess carries no labels
            abstain = filled[v, u] if abstain is None else abstain | filled[v, u]
        pending = PendingKeyframe(kf, frame, np.concatenate([visible_uids, new_uids]),
                                  np.concatenate([visible_keys, new_keys]), np.concatenate([visible_rows, new_rows]),
                                  u, v, is_new, abstain, guidance, time.monotonic(), agrees_with_map=agrees,
                                  disagreement=disagreement)
        if self.views.maxlen:
            assert self.refine_config is not None
            self.views.append(training_view(frame, self.refine_config.scale, kf))
        if frame.T_world_base is not None:
            self.base_heights.append(float(frame.T_world_base[2, 3]))
        # out of the budget: the blocks used longest ago go to disk, a few per keyframe (not this view's)
        self.store.enforce_budget(protect=set(view.keys) | set(np.unique(new_keys).tolist()), max_blocks=4)
        return (IntegrationStats(keyframe=True, added=new_uids.size, visible=vis.visible_idx.size, removed=removed,
                                 total=len(self.store), agrees_with_map=agrees, reanchored=reanchored), pending)

    def _far_depth(self, px: PixelGaussians, tolerance_per_m: float) -> float:
        """Farthest depth (m) at which a map Gaussian can matter to this keyframe: explained by, or
        in front of, its farthest observed surface (with the visibility test's tolerance)."""
        d = px.depth[px.valid]
        if not d.size:
            return 0.0
        far = float(d.max())
        return far * (1.0 + max(self.config.surface_tolerance, tolerance_per_m * far)) + 0.02

    def _track_maps(self, seg: Segmentation, segment_tracks: list[np.ndarray | None] | None) -> np.ndarray | None:
        """[levels, H, W] map track of each pixel's segment (NO_SEGMENT; IGNORE near boundaries)."""
        if segment_tracks is None:
            return None
        out = np.full((len(seg.levels), *seg.levels[0].shape), IGNORE, np.int32)
        for level, (ids, seg_track) in enumerate(zip(seg.levels, segment_tracks)):
            if seg_track is None:
                continue
            out[level] = np.where(ids >= 0, seg_track[np.maximum(ids, 0)], NO_SEGMENT)
            if self.config.boundary_abstain_frac > 0:
                out[level][boundary_band(ids, self.config.boundary_abstain_frac)] = IGNORE
        return out

    def _carve(self, view: BlockView, vis: Visibility, trusted: bool) -> int:
        """Carve what ``vis`` saw through (only what no other view confirmed unless the view is
        ``trusted``: it agreed with the map); returns how many Gaussians go."""
        conf = view["confidence"]
        # a view through a Gaussian (a surface observed clearly behind it) is strong evidence that it is
        # gone (moved, removed): it halves its confidence (a Gaussian just in front of the surface, in
        # the depth noise of real sensors, keeps it: tested on SUN3D); a view that disagrees with what
        # other views confirmed (a pose off by drift sees through everything near an edge) only
        # removes what one view saw (a passer-by)
        through = vis.seen_through if trusted else vis.seen_through[conf[vis.seen_through] < 2]
        conf[through] //= 2
        gone = through[conf[through] == 0]
        view.remove(gone)
        return int(gone.size)
