"""Training views of refinement: keyframes resized for rendering, with their semantic targets,
and the image metrics that compare a rendered view with its photograph.

Frames: ``T_cam_world`` maps the fixed frame (``map``) into the camera optical frame; ``K`` has
integer pixel centres; depth in metres along the optical axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from langgs_ros.geometry import invert_transform
from langgs_ros.types import Frame

__all__ = ["TrainingView", "training_view", "set_view_tracks", "in_frustums", "ssim", "psnr", "IGNORE", "NO_SEGMENT"]

NO_SEGMENT = -1
"""Track-map value of a pixel in no segment (decoded as the extra "none" class)."""
IGNORE = -2
"""Track-map value of a pixel that gives no semantic supervision (e.g. near a mask boundary)."""


@dataclass
class TrainingView:
    """A keyframe kept for refinement, already resized (pixels of the resized image)."""

    keyframe: int
    T_cam_world: np.ndarray  # [4, 4] fixed frame -> camera optical frame
    K: np.ndarray  # [3, 3]
    width: int
    height: int
    rgb: np.ndarray  # [h, w, 3] uint8
    depth: np.ndarray | None  # [h, w] float32 metres, NaN = invalid
    tracks: np.ndarray | None = None  # [levels, h, w] int32 map track per pixel, NO_SEGMENT, IGNORE


def _nearest_rows_cols(shape: tuple[int, int], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.minimum(((np.arange(height) + 0.5) * shape[0] / height).astype(np.int64), shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * shape[1] / width).astype(np.int64), shape[1] - 1)
    return rows, cols


def training_view(frame: Frame, scale: float, keyframe: int = 0, tracks: np.ndarray | None = None) -> TrainingView:
    """Resize ``frame`` (and its full-resolution ``tracks`` [levels, H, W]) by ``scale``."""
    import cv2

    K = frame.intrinsics.scaled(scale) if scale != 1.0 else frame.intrinsics
    resize = scale != 1.0
    rgb = cv2.resize(frame.rgb, (K.width, K.height), interpolation=cv2.INTER_AREA) if resize else frame.rgb
    rows, cols = _nearest_rows_cols(frame.rgb.shape[:2], K.height, K.width)
    depth = None if frame.depth is None else frame.depth[np.ix_(rows, cols)].astype(np.float32)
    view = TrainingView(keyframe, invert_transform(frame.T_world_cam), K.K.astype(np.float32), K.width, K.height,
                        np.array(rgb, np.uint8), depth)
    if tracks is not None:
        set_view_tracks(view, tracks)
    return view


def set_view_tracks(view: TrainingView, tracks: np.ndarray) -> None:
    """Give ``view`` its keyframe's full-resolution map ``tracks`` [levels, H, W], resized like
    its image (they may come later than the view: semantics run behind geometry)."""
    rows, cols = _nearest_rows_cols(tracks.shape[1:], view.height, view.width)
    view.tracks = tracks[:, rows][:, :, cols].astype(np.int32)


def in_frustums(means: np.ndarray, views: list[TrainingView], margin_px: float = 8.0) -> np.ndarray:
    """bool [N]: the mean projects into at least one view (in front of it, ``margin_px`` slack)."""
    inside = np.zeros(len(means), bool)
    for view in views:
        T = view.T_cam_world.astype(np.float32)
        pc = means @ T[:3, :3].T + T[:3, 3]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = view.K[0, 0] * pc[:, 0] / z + view.K[0, 2]
            v = view.K[1, 1] * pc[:, 1] / z + view.K[1, 2]
            inside |= (z > 0.01) & (u > -margin_px) & (u < view.width + margin_px) \
                & (v > -margin_px) & (v < view.height + margin_px)
    return inside


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Mean SSIM of [H, W, C] images in 0..1 (Gaussian window, sigma 1.5)."""
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    g = torch.exp(-((torch.arange(window, dtype=a.dtype, device=a.device) - window // 2) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(x.shape[1], 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k, padding=window // 2, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))).mean()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in 0..1."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
