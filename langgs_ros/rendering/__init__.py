"""Differentiable rendering of the Gaussian map: gsplat (CUDA) or a pure-PyTorch rasteriser (CPU)."""

from langgs_ros.rendering.render import RenderOutput, render

__all__ = ["RenderOutput", "render"]
