"""EWA splatting of 3D Gaussians into a pinhole camera (Zwicker et al. 2001; 3DGS).

Frames: ``T_cam_world`` maps the fixed frame into the camera optical frame (x right, y down,
z forward); pixel (u, v) = (fx x / z + cx, fy y / z + cy) with integer pixel centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Projected", "project_gaussians", "gaussian_alpha", "quat_to_rotmat", "ALPHA_MIN", "ALPHA_MAX", "EPS2D"]

ALPHA_MIN = 1.0 / 255.0
"""Contributions with a smaller alpha are skipped (as in 3DGS and gsplat)."""
ALPHA_MAX = 0.99
"""Alpha is clamped below this (3DGS), so transmittance never reaches zero exactly."""
EPS2D = 0.3
"""Pixels^2 added to the 2D covariance (low-pass filter of 3DGS / gsplat ``eps2d``)."""


@dataclass
class Projected:
    """Gaussians in screen space (only those in front of the near plane)."""

    index: torch.Tensor
    """[M] indices into the input Gaussians."""
    means2d: torch.Tensor
    """[M, 2] pixel coordinates (u, v)."""
    conics: torch.Tensor
    """[M, 3] inverse 2D covariance (a, b, c): power = -0.5 (a dx^2 + 2 b dx dy + c dy^2)."""
    depths: torch.Tensor
    """[M] z in the camera optical frame, metres."""
    opacities: torch.Tensor
    """[M] opacity 0..1."""
    extent: torch.Tensor
    """[M, 2] half-size in pixels of the box outside which alpha < ALPHA_MIN (u, v)."""


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] rotations of (w, x, y, z) quaternions (normalised here)."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def project_gaussians(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                      T_cam_world: torch.Tensor, K: torch.Tensor, width: int, height: int,  # noqa: N803
                      near: float = 0.01) -> Projected:
    """Project Gaussians (means [N, 3] m, quats [N, 4] wxyz, scales [N, 3] std-dev in m,
    opacities [N]) with the EWA Jacobian of the pinhole model ``K`` [3, 3].

    As in 3DGS / gsplat, the Jacobian is evaluated with x/z and y/z clamped to 1.3 x the
    half field of view, so Gaussians beside the frustum do not smear across the image.
    """
    R, t = T_cam_world[:3, :3], T_cam_world[:3, 3]
    p = means @ R.T + t
    keep = torch.nonzero(p[:, 2] > near).squeeze(1)
    p, quats, scales, opacities = p[keep], quats[keep], scales[keep], opacities[keep]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = p.unbind(-1)
    M = quat_to_rotmat(quats) * scales[:, None, :]  # R_q S
    cov_cam = R @ (M @ M.transpose(1, 2)) @ R.T
    lim_x = 1.3 * torch.maximum(cx, width - 1 - cx) / fx
    lim_y = 1.3 * torch.maximum(cy, height - 1 - cy) / fy
    xj = torch.clamp(x / z, -lim_x, lim_x) * z
    yj = torch.clamp(y / z, -lim_y, lim_y) * z
    zeros = torch.zeros_like(z)
    J = torch.stack([fx / z, zeros, -fx * xj / z**2, zeros, fy / z, -fy * yj / z**2], dim=-1).reshape(-1, 2, 3)
    cov2d = J @ cov_cam @ J.transpose(1, 2)
    a = cov2d[:, 0, 0] + EPS2D
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + EPS2D
    det = (a * c - b * b).clamp_min(1e-12)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    # alpha >= ALPHA_MIN  <=>  Mahalanobis^2 <= 2 ln(opacity / ALPHA_MIN); its bounding box:
    power = (2.0 * torch.log((opacities / ALPHA_MIN).clamp_min(1.0))).detach()
    extent = torch.stack([torch.sqrt(power * a.detach()), torch.sqrt(power * c.detach())], dim=-1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return Projected(keep, means2d, conics, z, opacities, extent)


def gaussian_alpha(proj: Projected, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """[P, M] alpha of each of M projected Gaussians at P pixels (px, py [P])."""
    dx = px[:, None] - proj.means2d[None, :, 0]
    dy = py[:, None] - proj.means2d[None, :, 1]
    a, b, c = proj.conics.unbind(-1)
    power = -0.5 * (a * dx * dx + 2 * b * dx * dy + c * dy * dy)
    alpha = (proj.opacities * torch.exp(power.clamp_max(0.0))).clamp_max(ALPHA_MAX)
    return torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
