"""Rigid transforms and pinhole projection (numpy, vectorised).

Quaternions follow the ROS message order ``(x, y, z, w)`` at the API boundary; transforms3d uses
``(w, x, y, z)`` internally.
"""

from __future__ import annotations

import numpy as np
import transforms3d.quaternions as tq

from langgs_ros.types import CameraIntrinsics

__all__ = [
    "quat_xyzw_to_matrix",
    "matrix_to_quat_xyzw",
    "make_transform",
    "invert_transform",
    "transform_points",
    "backproject",
    "project",
    "yaw_to_quat_xyzw",
    "quat_wxyz_from_normals",
    "normals_from_quat_wxyz",
    "column_bounds",
]


def quat_xyzw_to_matrix(q: np.ndarray | list[float]) -> np.ndarray:
    """3x3 rotation matrix of a quaternion given as (x, y, z, w); it is normalised first."""
    x, y, z, w = (float(v) for v in q)
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"quaternion {list(q)} has zero or non-finite norm")
    return tq.quat2mat(np.array([w, x, y, z]) / norm)


def matrix_to_quat_xyzw(R: np.ndarray) -> np.ndarray:  # noqa: N803
    """Quaternion (x, y, z, w), w >= 0, of a 3x3 rotation matrix."""
    w, x, y, z = tq.mat2quat(np.asarray(R, dtype=np.float64))
    q = np.array([x, y, z, w])
    return q if w >= 0 else -q


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:  # noqa: N803
    """4x4 homogeneous transform from a rotation matrix and a translation (metres)."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:  # noqa: N803
    """Inverse of a rigid 4x4 transform."""
    R = T[:3, :3]
    return make_transform(R.T, -R.T @ T[:3, 3])


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:  # noqa: N803
    """Apply a 4x4 transform to points [N, 3]; keeps the input float dtype."""
    R = T[:3, :3].astype(points.dtype)
    t = T[:3, 3].astype(points.dtype)
    return points @ R.T + t


def backproject(u: np.ndarray, v: np.ndarray, z: np.ndarray, K: CameraIntrinsics) -> np.ndarray:  # noqa: N803
    """Pixel coordinates and optical-axis depth (metres) -> points [N, 3] in the optical frame."""
    x = (u - K.cx) / K.fx * z
    y = (v - K.cy) / K.fy * z
    return np.stack([x, y, z], axis=-1)


def project(points_cam: np.ndarray, K: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: N803
    """Optical-frame points [N, 3] -> (u, v, z): pixel coordinates and depth; z <= 0 gives NaN u, v."""
    z = points_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(z > 0, 1.0 / z, np.nan).astype(points_cam.dtype)
    u = points_cam[:, 0] * inv * K.fx + K.cx
    v = points_cam[:, 1] * inv * K.fy + K.cy
    return u, v, z


def yaw_to_quat_xyzw(yaw: float) -> np.ndarray:
    """Quaternion (x, y, z, w) of a rotation by ``yaw`` radians about +z."""
    w, x, y, z = tq.axangle2quat([0.0, 0.0, 1.0], yaw)
    return np.array([x, y, z, w])


def quat_wxyz_from_normals(normals: np.ndarray) -> np.ndarray:
    """Quaternions [N, 4] (w, x, y, z) rotating +z onto each unit normal [N, 3].

    A surface Gaussian is symmetric about its tangent plane, so the normal's sign is free: it is
    flipped to ``n_z >= 0`` first, which keeps the half-angle formula away from its singularity.
    """
    n = np.where(normals[:, 2:3] < 0, -normals, normals)
    q = np.stack([1.0 + n[:, 2], -n[:, 1], n[:, 0], np.zeros_like(n[:, 0])], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def normals_from_quat_wxyz(q: np.ndarray) -> np.ndarray:
    """Third column of the rotation of each quaternion [N, 4] (w, x, y, z): the Gaussian's normal."""
    q = q.astype(np.float32)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack(
        [2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], axis=1
    )


def column_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(min, max, mean) of each column of ``values`` [N, k], N >= 1.

    Reduces a contiguous transposed copy: numpy's axis-0 reductions over a few columns run an
    order of magnitude slower than this on large N.
    """
    cols = np.ascontiguousarray(values.T)
    return cols.min(axis=1), cols.max(axis=1), cols.mean(axis=1)
