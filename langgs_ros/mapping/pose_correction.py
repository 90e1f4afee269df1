"""Pose corrections from SLAM: re-posing keyframes, and the Gaussians anchored to them, rigidly.

A SLAM system (slam_toolbox, rtabmap, cartographer) corrects past poses when it closes a loop and
publishes its trajectory as a ``nav_msgs/Path`` of the robot base frame in the fixed frame. Each
keyframe whose stamp the path covers gets the base pose interpolated at its stamp (translation
linearly, rotation by slerp), composed with the keyframe's camera mount (base -> optical frame, from
TF when it was integrated). The Gaussians a keyframe created (its anchor: ids increase in creation
order, so the anchor follows from the keyframe log) move with the same rigid transform, and so do
their semantics, which are per Gaussian. Units: metres, REP-103/105 frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.keyframe_log import KeyframeLog

__all__ = ["PoseGraph", "CorrectionStats", "correct_map"]


@dataclass
class PoseGraph:
    """Corrected poses of the robot base frame: ``stamps_ns`` [P] (ROS time, increasing) and
    ``T_world_base`` [P, 4, 4] (base frame in the fixed frame)."""

    stamps_ns: np.ndarray
    T_world_base: np.ndarray  # noqa: N815

    @classmethod
    def from_poses(cls, stamps_ns: np.ndarray, T_world_base: np.ndarray) -> PoseGraph:  # noqa: N803
        """Sorted by stamp, duplicates and non-finite or non-rigid poses dropped; raises ValueError
        when fewer than one usable pose is left."""
        stamps = np.asarray(stamps_ns, np.int64)
        T = np.asarray(T_world_base, np.float64).reshape(-1, 4, 4)
        if stamps.shape != (len(T),):
            raise ValueError(f"{stamps.size} stamps for {len(T)} poses")
        R = T[:, :3, :3]
        ok = np.all(np.isfinite(T.reshape(len(T), -1)), axis=1)
        ok[ok] &= np.abs(np.linalg.det(R[ok]) - 1.0) < 1e-3
        order = np.argsort(stamps[ok], kind="stable")
        stamps, T = stamps[ok][order], T[ok][order]
        keep = np.r_[True, np.diff(stamps) > 0] if stamps.size else np.zeros(0, bool)
        if not keep.any():
            raise ValueError("the pose graph holds no usable pose (non-finite or not rigid)")
        return cls(stamps[keep], T[keep])

    def base_poses_at(self, stamps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(covered [M] bool, T_world_base [M, 4, 4]) at ``stamps_ns``: interpolated between the
        graph's poses; a stamp outside the graph's span is not covered (identity returned)."""
        stamps = np.asarray(stamps_ns, np.int64)
        out = np.tile(np.eye(4), (stamps.size, 1, 1))
        lo, hi = self.stamps_ns[0], self.stamps_ns[-1]
        covered = (stamps >= lo) & (stamps <= hi)
        if not covered.any():
            return covered, out
        t = (stamps[covered] - lo).astype(np.float64) / 1e9
        knots = (self.stamps_ns - lo).astype(np.float64) / 1e9
        if knots.size == 1:  # one pose covers exactly its own stamp
            out[covered] = self.T_world_base[0]
            return covered, out
        out[covered, :3, :3] = Slerp(knots, Rotation.from_matrix(self.T_world_base[:, :3, :3]))(t).as_matrix()
        for axis in range(3):
            out[covered, axis, 3] = np.interp(t, knots, self.T_world_base[:, axis, 3])
        return covered, out


@dataclass
class CorrectionStats:
    """What one pose graph changed."""

    keyframes_moved: int
    keyframes_without_mount: int
    """Covered keyframes that could not be re-posed: TF gave no base frame when they were integrated."""
    gaussians_moved: int
    max_shift_m: float
    """Largest displacement of a keyframe's camera (m)."""
    seconds: float

    def summary(self) -> str:
        """One line for logs."""
        text = (f"pose graph: {self.keyframes_moved} keyframe(s) re-posed (camera moved up to {self.max_shift_m:.3f} m), "
                f"{self.gaussians_moved} Gaussians moved in {1000 * self.seconds:.0f} ms")
        if self.keyframes_without_mount:
            text += f"; {self.keyframes_without_mount} keyframe(s) kept: no base frame in TF when integrated"
        return text


def _quat_mul_wxyz(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products a * b of quaternions (w, x, y, z), broadcast over the leading axis."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def correct_map(gmap: GaussianMap, log: KeyframeLog, graph: PoseGraph) -> tuple[CorrectionStats, np.ndarray]:
    """Re-pose every keyframe of ``log`` that ``graph`` covers and move its anchored Gaussians
    with it (in place; ``gmap`` needs ids). Returns the stats and the indices of the keyframes moved."""
    start = time.perf_counter()
    n = len(log)
    covered, T_base = graph.base_poses_at(np.asarray(log.stamps_ns, np.int64)) if n else (np.zeros(0, bool), None)
    has_mount = np.array([m is not None for m in log.mounts], bool) if n else np.zeros(0, bool)
    moved = np.flatnonzero(covered & has_mount)
    deltas = np.tile(np.eye(4), (n, 1, 1))
    shift = 0.0
    for k in moved:
        new = T_base[k] @ log.mounts[k]
        deltas[k] = new @ np.linalg.inv(log.poses[k])
        shift = max(shift, float(np.linalg.norm(new[:3, 3] - log.poses[k][:3, 3])))
        log.poses[k] = new
    gaussians = 0
    if moved.size and len(gmap):
        # rows are in id order, so each keyframe's anchored Gaussians are one contiguous run
        anchor = log.anchors(gmap["uid"])
        starts = np.searchsorted(anchor, moved, side="left")
        ends = np.searchsorted(anchor, moved, side="right")
        dq = Rotation.from_matrix(deltas[moved, :3, :3]).as_quat()[:, [3, 0, 1, 2]]  # xyzw -> wxyz
        means, quats = gmap["means"], gmap["quats"]
        for k, a, b, q in zip(moved, starts, ends, dq):
            if a == b:
                continue
            D = deltas[k]
            means[a:b] = (means[a:b].astype(np.float64) @ D[:3, :3].T + D[:3, 3]).astype(np.float32)
            rotated = _quat_mul_wxyz(q, quats[a:b].astype(np.float64))
            quats[a:b] = (rotated / np.linalg.norm(rotated, axis=1, keepdims=True)).astype(np.float16)
            gaussians += int(b - a)
        if gaussians:
            gmap.revision += 1  # caches (query engine, navigation grid) see the change
    stats = CorrectionStats(keyframes_moved=int(moved.size), keyframes_without_mount=int(np.sum(covered & ~has_mount)),
                            gaussians_moved=int(gaussians), max_shift_m=shift, seconds=time.perf_counter() - start)
    return stats, moved
