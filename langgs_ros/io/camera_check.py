"""The one validator of camera geometry: intrinsics, lens distortion, poses and whole frames.

Every frame source (bag reader, frame folder, the node's frame builder) and the mapper ask these
functions, so a frame with a degenerate camera is skipped with the same reason everywhere
instead of being mapped into garbage (points at infinity, a map scaled by 100, an OpenCV error).
Each function returns ``None`` when the input is usable, else a one-line reason.
"""

from __future__ import annotations

import numpy as np

from langgs_ros.types import CameraIntrinsics, Frame

__all__ = ["intrinsics_problem", "distortion_problem", "pose_problem", "frame_problem",
           "DISTORTION_LENGTHS", "MAX_TRANSLATION_M"]

# Focal length per pixel of image width: 0.1 is a field of view of about 157 degrees, 100 one of
# about 0.6 degrees; outside that a pinhole model of a robot camera is wrong, not unusual.
_FOCAL_PER_WIDTH = (0.1, 100.0)
_MAX_ASPECT = 5.0  # fx / fy
_MAX_SIDE_PX = 65535
_MIN_SIDE_PX = 8
# Coefficient counts OpenCV's undistortion accepts for each CameraInfo distortion model.
DISTORTION_LENGTHS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (4, 5, 8, 12, 14),
    "rational_polynomial": (8, 12, 14),
    "equidistant": (4,),
}
MAX_TRANSLATION_M = 1.0e5
"""Camera positions farther than this from the fixed frame's origin (m) are refused (100 km)."""
_ROTATION_TOLERANCE = 1e-3


def intrinsics_problem(K: CameraIntrinsics) -> str | None:  # noqa: N803
    """Why pinhole intrinsics (pixels) are unusable, or None: image size, focal lengths positive,
    finite and plausible for the image size, principal point near the image."""
    w, h = K.width, K.height
    if not (0 < w <= _MAX_SIDE_PX and 0 < h <= _MAX_SIDE_PX):
        return f"image size {w}x{h} is not positive (or over {_MAX_SIDE_PX} px a side)"
    if min(w, h) < _MIN_SIDE_PX:
        return f"image size {w}x{h} is too small to map (at least {_MIN_SIDE_PX} px a side)"
    values = (K.fx, K.fy, K.cx, K.cy)
    if not all(np.isfinite(values)):
        return f"intrinsics fx={K.fx}, fy={K.fy}, cx={K.cx}, cy={K.cy} are not finite"
    if K.fx <= 0 or K.fy <= 0:
        return f"focal lengths fx={K.fx}, fy={K.fy} are not positive"
    lo, hi = _FOCAL_PER_WIDTH
    longest = max(w, h)
    if not (lo * longest <= K.fx <= hi * longest and lo * longest <= K.fy <= hi * longest):
        return (f"focal lengths fx={K.fx:g}, fy={K.fy:g} are absurd for a {w}x{h} image "
                f"(expected {lo * longest:g}..{hi * longest:g} px)")
    if not 1 / _MAX_ASPECT <= K.fx / K.fy <= _MAX_ASPECT:
        return f"focal lengths fx={K.fx:g}, fy={K.fy:g} differ by more than {_MAX_ASPECT:g}x"
    if not (-0.5 * w <= K.cx <= 1.5 * w and -0.5 * h <= K.cy <= 1.5 * h):
        return f"principal point ({K.cx:g}, {K.cy:g}) is far outside the {w}x{h} image"
    return None


def distortion_problem(model: str, D: np.ndarray) -> str | None:  # noqa: N803
    """Why a CameraInfo distortion (model name, coefficients) is unusable, or None. All-zero
    coefficients are no distortion whatever the model."""
    D = np.asarray(D, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(D)):
        return "distortion coefficients contain NaN or inf"
    if not np.any(D != 0):
        return None
    if model not in DISTORTION_LENGTHS:
        return (f"unsupported distortion model '{model}' "
                f"(supported: {', '.join(DISTORTION_LENGTHS)}, or all-zero coefficients)")
    allowed = DISTORTION_LENGTHS[model]
    if D.size not in allowed:
        return (f"distortion model '{model}' with {D.size} coefficients "
                f"(expected {' or '.join(map(str, allowed))})")
    return None


def pose_problem(T: np.ndarray) -> str | None:  # noqa: N803
    """Why a 4x4 camera pose (fixed frame <- optical frame, metres) is not a rigid transform, or None."""
    T = np.asarray(T)
    if T.shape != (4, 4):
        return f"pose has shape {list(T.shape)}, expected 4x4"
    if not np.all(np.isfinite(T)):
        return "pose is not finite"
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
        return f"pose's last row is {T[3].tolist()}, expected [0, 0, 0, 1]"
    R = T[:3, :3]  # noqa: N806
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > _ROTATION_TOLERANCE or np.linalg.det(R) < 0:
        return (f"pose is not a rigid transform (rotation part off orthonormal by {err:.3g}, "
                f"determinant {np.linalg.det(R):.3g})")
    if np.linalg.norm(T[:3, 3]) > MAX_TRANSLATION_M:
        return f"camera position {np.linalg.norm(T[:3, 3]):.3g} m from the origin (over {MAX_TRANSLATION_M:g} m)"
    return None


def frame_problem(frame: Frame) -> str | None:
    """Why a frame cannot be mapped, or None: intrinsics, pose, and image arrays consistent with
    them (RGB uint8 [H, W, 3], depth float [H, W], instances [H, W])."""
    problem = intrinsics_problem(frame.intrinsics) or pose_problem(frame.T_world_cam)
    if problem:
        return problem
    shape = (frame.intrinsics.height, frame.intrinsics.width)
    rgb = np.asarray(frame.rgb)
    if rgb.dtype != np.uint8 or rgb.shape != (*shape, 3):
        return f"color image is {rgb.dtype}{list(rgb.shape)}, expected uint8{[*shape, 3]} from the intrinsics"
    if frame.depth is not None:
        depth = np.asarray(frame.depth)
        if depth.dtype.kind != "f" or depth.shape != shape:
            return f"depth image is {depth.dtype}{list(depth.shape)}, expected float{list(shape)}"
    if frame.instances is not None and np.asarray(frame.instances).shape != shape:
        return f"instance image is {list(np.asarray(frame.instances).shape)}, expected {list(shape)}"
    return None
