"""One rendering function, two backends: gsplat on CUDA, the PyTorch tile rasteriser elsewhere.

Conventions: ``T_cam_world`` [4, 4] maps the fixed frame (``map``) into the camera optical frame;
``K`` [3, 3] has integer pixel centres (this project's convention; gsplat's pixel centres are at
+0.5, so its K is shifted by half a pixel). Scales are standard deviations in metres; quaternions
are (w, x, y, z); opacities are 0..1 (not logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from langgs_ros.errors import BackendUnavailableError
from langgs_ros.rendering.projection import EPS2D, project_gaussians
from langgs_ros.rendering.torch_rasterizer import rasterize_tiles

__all__ = ["RenderOutput", "render", "select_backend"]

Backend = Literal["auto", "gsplat", "torch"]


@dataclass
class RenderOutput:
    """A rendered view."""

    features: torch.Tensor
    """[H, W, C] alpha-composited features (over a zero background)."""
    depth: torch.Tensor
    """[H, W] expected depth along the optical axis (metres; 0 where alpha is 0)."""
    alpha: torch.Tensor
    """[H, W] accumulated opacity 0..1."""
    backend: str


def select_backend(backend: Backend, device: torch.device) -> str:
    """'gsplat' on CUDA when gsplat's CUDA kernels load; 'torch' otherwise (or when asked)."""
    if backend == "torch" or (backend == "auto" and device.type != "cuda"):
        return "torch"
    if device.type != "cuda":
        raise BackendUnavailableError("the gsplat renderer needs tensors on a CUDA device")
    try:
        import gsplat  # noqa: F401
    except ImportError as exc:
        if backend == "gsplat":
            raise BackendUnavailableError(f"gsplat is not installed ({exc}); pip install -e . installs it") from None
        return "torch"
    return "gsplat"


def _render_gsplat(means, quats, scales, opacities, features, T_cam_world, K, width, height, near):  # noqa: ANN001, N803
    from gsplat import rasterization

    K = K.clone()
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    colors, alphas, _ = rasterization(
        means, quats, scales, opacities, features, T_cam_world[None], K[None], width, height,
        near_plane=near, eps2d=EPS2D, packed=False, render_mode="RGB+ED")
    alpha = alphas[0, ..., 0]
    depth = torch.where(alpha > 0, colors[0, ..., -1], torch.zeros_like(alpha))
    return colors[0, ..., :-1], depth, alpha


def render(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
           features: torch.Tensor, T_cam_world: torch.Tensor, K: torch.Tensor, width: int, height: int,  # noqa: N803
           backend: Backend = "auto", near: float = 0.01, tile: int = 16) -> RenderOutput:
    """Render Gaussians (means [N, 3] in the fixed frame, quats [N, 4], scales [N, 3], opacities
    [N], features [N, C]) into a ``width`` x ``height`` pinhole view; differentiable in every input."""
    name = select_backend(backend, means.device)
    if name == "gsplat":
        feats, depth, alpha = _render_gsplat(means, quats, scales, opacities, features, T_cam_world, K,
                                             width, height, near)
    else:
        proj = project_gaussians(means, quats, scales, opacities, T_cam_world, K, width, height, near)
        feats, depth, alpha = rasterize_tiles(proj, features[proj.index], width, height, tile)
    return RenderOutput(feats, depth, alpha, name)
