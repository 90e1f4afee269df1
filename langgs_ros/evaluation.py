"""Scoring query answers against the synthetic scene's ground truth (used by tests and benchmarks).

* 3D IoU: occupied 5 cm voxels of the mask's points vs of the object's observed surface points,
  with the voxel precision and recall behind it and the distance of the mask's points to the surface
  (which says whether a low IoU is misplaced points, missing surface or noise across voxel faces);
* the answer's centroid must lie inside the object's box;
* the goal must be in free space (ground-truth clearance from every obstacle footprint in the robot's
  height slab), near the standoff distance where free space allows, and face the object;
* on real RGB-D data, the map's depth rendered into held-out views vs their observed depth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from langgs_ros.config import QueryConfig
from langgs_ros.query.engine import QueryEngine
from langgs_ros.synth.scene import Box, Cylinder, Scene, Sphere, default_scene
from langgs_ros.types import Frame

__all__ = ["voxel_iou", "voxel_overlap", "ObjectScore", "evaluate_queries", "load_ground_truth",
           "footprint_clearance", "depth_error_in_view"]


def _voxels(points: np.ndarray, voxel: float) -> set[tuple[int, int, int]]:
    return set(map(tuple, np.unique(np.floor(np.asarray(points) / voxel).astype(np.int64), axis=0).tolist()))


def voxel_overlap(pred: np.ndarray, truth: np.ndarray, voxel: float = 0.05) -> tuple[float, float, float]:
    """(IoU, precision, recall) of the sets of ``voxel``-sized cells (m) occupied by the point sets
    ``pred`` and ``truth`` [N, 3] (0 where a set is empty)."""
    a, b = _voxels(pred, voxel) if len(pred) else set(), _voxels(truth, voxel) if len(truth) else set()
    both, union = len(a & b), len(a | b)
    return (both / union if union else 0.0, both / len(a) if a else 0.0, both / len(b) if b else 0.0)


def voxel_iou(pred: np.ndarray, truth: np.ndarray, voxel: float = 0.05) -> float:
    """IoU of the sets of ``voxel``-sized cells occupied by two point sets [N, 3]."""
    return voxel_overlap(pred, truth, voxel)[0]


def load_ground_truth(path: str | Path) -> list[dict]:
    """Objects of a ``ground_truth.json`` written by ``langgs synth``."""
    return json.loads(Path(path).read_text())["objects"]


def footprint_clearance(xy: np.ndarray, scene: Scene, z_lo: float, z_hi: float) -> np.ndarray:
    """Horizontal distance (m) from points xy [N, 2] to the nearest obstacle footprint in the slab
    z_lo..z_hi (object parts and room walls); negative inside a footprint's interior is clipped to 0."""
    xy = np.atleast_2d(xy)
    lo, hi = np.asarray(scene.room_lo[:2]), np.asarray(scene.room_hi[:2])
    best = np.minimum((xy - lo).min(axis=1), (hi - xy).min(axis=1))
    for obj in scene.objects:
        for part in obj.parts:
            plo, phi = part.bounds()
            if phi[2] < z_lo or plo[2] > z_hi:
                continue
            if isinstance(part, Box):
                d = np.linalg.norm(np.maximum(np.maximum(plo[:2] - xy, xy - phi[:2]), 0), axis=1)
            elif isinstance(part, Cylinder):
                d = np.maximum(np.linalg.norm(xy - [part.x, part.y], axis=1) - part.radius, 0)
            else:
                assert isinstance(part, Sphere)
                d = np.maximum(np.linalg.norm(xy - np.asarray(part.centre[:2]), axis=1) - part.radius, 0)
            best = np.minimum(best, d)
    return np.maximum(best, 0)


@dataclass
class ObjectScore:
    """How well one object's label query was answered."""

    label: str
    iou: float
    centroid_in_box: bool
    goal_found: bool
    precision: float = 0.0
    """Share of the answer's voxels that the object's surface occupies."""
    recall: float = 0.0
    """Share of the surface's voxels that the answer occupies."""
    surface_error_p50_m: float = float("nan")
    """Median distance of the answer's points to the object's surface points (m)."""
    surface_error_p90_m: float = float("nan")
    """...and its 90th percentile (m); both NaN without an answer."""
    goal_clearance: float = float("nan")
    goal_distance: float = float("nan")
    standoff_feasible: bool = False
    yaw_error_deg: float = float("nan")


def evaluate_queries(engine: QueryEngine, truth: list[dict], config: QueryConfig | None = None,
                     scene: Scene | None = None) -> list[ObjectScore]:
    """Query every ground-truth label and score the best answer."""
    cfg = config or engine.config
    scene = scene or default_scene()
    # floor positions where a robot fits, for deciding whether the standoff is achievable
    xs = np.arange(scene.room_lo[0], scene.room_hi[0], 0.05)
    ys = np.arange(scene.room_lo[1], scene.room_hi[1], 0.05)
    floor = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    fits = floor[footprint_clearance(floor, scene, 0.05, cfg.robot_height) >= cfg.robot_radius + 0.05]
    scores = []
    for obj in truth:
        surface = np.asarray(obj["surface_points"])
        lo, hi = np.asarray(obj["bbox_min"]), np.asarray(obj["bbox_max"])
        result = engine.query(obj["label"])
        if not result.objects:
            scores.append(ObjectScore(obj["label"], 0.0, False, False))
            continue
        best = result.objects[0]
        iou, precision, recall = voxel_overlap(best.points, surface)
        error = cKDTree(surface).query(best.points)[0]
        score = ObjectScore(obj["label"], iou,
                            bool(np.all(best.centroid >= lo - 1e-6) and np.all(best.centroid <= hi + 1e-6)),
                            result.goal_pose is not None, precision, recall,
                            float(np.median(error)), float(np.percentile(error, 90)))
        if result.goal_pose is not None:
            g = result.goal_pose
            score.goal_clearance = float(footprint_clearance(g.position[None, :2], scene, 0.05, cfg.robot_height)[0])
            score.goal_distance = float(cKDTree(surface[:, :2]).query(g.position[:2])[0])
            dist_fits = cKDTree(surface[:, :2]).query(fits)[0]
            score.standoff_feasible = bool(np.any(np.abs(dist_fits - cfg.standoff) <= 0.05))
            centre = (lo + hi) / 2
            want = np.arctan2(centre[1] - g.position[1], centre[0] - g.position[0])
            score.yaw_error_deg = float(np.degrees(abs((g.yaw - want + np.pi) % (2 * np.pi) - np.pi)))
        scores.append(score)
    return scores


def depth_error_in_view(points: np.ndarray, frame: Frame) -> np.ndarray:
    """|map depth - observed depth| (m) at every pixel of ``frame`` where both exist.

    Map depth is the nearest of ``points`` [N, 3] (fixed frame) projecting into each pixel.
    """
    K = frame.intrinsics
    T = np.linalg.inv(frame.T_world_cam)
    pc = points @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
    pc = pc[pc[:, 2] > 1e-3]
    u = np.round(pc[:, 0] / pc[:, 2] * K.fx + K.cx).astype(np.int64)
    v = np.round(pc[:, 1] / pc[:, 2] * K.fy + K.cy).astype(np.int64)
    inside = (u >= 0) & (v >= 0) & (u < K.width) & (v < K.height)
    zbuf = np.full(K.height * K.width, np.inf, np.float32)
    np.minimum.at(zbuf, v[inside] * K.width + u[inside], pc[inside, 2])
    observed = frame.depth.reshape(-1) if frame.depth is not None else np.full(zbuf.size, np.nan)
    valid = np.isfinite(zbuf) & np.isfinite(observed)
    return np.abs(zbuf[valid] - observed[valid])
