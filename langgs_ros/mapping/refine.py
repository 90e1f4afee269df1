"""Per-scene refinement of the feed-forward map by differentiable rendering (photometric + depth).

The Gaussians seen by a window of recent keyframes are optimised with Adam against those
keyframes: L = (1 - lambda) L1(rgb) + lambda (1 - SSIM(rgb)) / 2 + w_depth L1(depth) on valid
depth (3DGS losses), each iteration rendering one keyframe of the window at ``scale`` of its size.
Means, log-scales, rotations, opacity logits and colours are refined; Gaussians whose opacity
falls below ``prune_opacity`` are removed when the result is written back. Write-back replaces
whole fields at once (a consistent snapshot for queries running between refinement rounds).

Not included yet: the semantic losses (codebook cross-entropy, GAGS granularity distillation),
densification, and a background thread with a per-second iteration budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from langgs_ros.geometry import invert_transform
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.rendering import render
from langgs_ros.types import Frame

__all__ = ["RefineConfig", "RefineStats", "refine_map", "ssim", "psnr", "render_view"]


@dataclass
class RefineConfig:
    """Refinement settings."""

    iterations: int = 100
    time_budget_s: float = 60.0
    scale: float = 0.5
    lr_means: float = 1e-4
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 2e-2
    lr_colors: float = 1e-2
    ssim_weight: float = 0.2
    depth_weight: float = 0.5
    prune_opacity: float = 0.02
    backend: str = "auto"


@dataclass
class RefineStats:
    iterations: int
    seconds: float
    first_loss: float
    last_loss: float
    pruned: int


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


def _view(frame: Frame, scale: float) -> tuple[torch.Tensor, torch.Tensor, int, int, torch.Tensor, torch.Tensor | None]:
    import cv2

    K = frame.intrinsics.scaled(scale) if scale != 1.0 else frame.intrinsics
    rgb = cv2.resize(frame.rgb, (K.width, K.height), interpolation=cv2.INTER_AREA) if scale != 1.0 else frame.rgb
    depth = None
    if frame.depth is not None:
        depth = torch.tensor(cv2.resize(frame.depth, (K.width, K.height), interpolation=cv2.INTER_NEAREST))
    T = torch.from_numpy(invert_transform(frame.T_world_cam)).float()
    return T, torch.tensor(K.K, dtype=torch.float32), K.width, K.height, torch.tensor(rgb, dtype=torch.float32) / 255, depth


def _params(gmap: GaussianMap, idx: np.ndarray) -> dict[str, torch.Tensor]:
    op = np.clip(gmap["opacity"][idx].astype(np.float32) / 255, 1e-3, 1 - 1e-3)
    return {
        "means": torch.from_numpy(gmap["means"][idx].astype(np.float32)),
        "log_scales": torch.from_numpy(np.log(np.maximum(gmap["scales"][idx].astype(np.float32), 1e-5))),
        "quats": torch.from_numpy(gmap["quats"][idx].astype(np.float32)),
        "opacity_logits": torch.from_numpy(np.log(op / (1 - op))),
        "colors": torch.from_numpy(gmap["colors"][idx].astype(np.float32) / 255),
    }


def render_view(gmap: GaussianMap, frame: Frame, scale: float = 0.5, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(rgb [h, w, 3] 0..1 over black, depth [h, w] m, 0 = none) of the map seen from ``frame``."""
    T, K, w, h, _, _ = _view(frame, scale)
    p = _params(gmap, np.arange(len(gmap)))
    with torch.no_grad():
        out = render(p["means"], p["quats"], p["log_scales"].exp(), torch.sigmoid(p["opacity_logits"]),
                     p["colors"], T, K, w, h, backend=backend)  # type: ignore[arg-type]
    return out.features.clamp(0, 1).numpy(), out.depth.numpy()


def refine_map(gmap: GaussianMap, keyframes: list[Frame], config: RefineConfig | None = None,
               seed: int = 0) -> RefineStats:
    """Refine the Gaussians of ``gmap`` against ``keyframes`` in place (see module docstring)."""
    cfg = config or RefineConfig()
    idx = np.arange(len(gmap))
    params = {k: v.requires_grad_(True) for k, v in _params(gmap, idx).items()}
    lrs = {"means": cfg.lr_means, "log_scales": cfg.lr_scales, "quats": cfg.lr_quats,
           "opacity_logits": cfg.lr_opacity, "colors": cfg.lr_colors}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lrs[k]} for k in params])
    views = [_view(f, cfg.scale) for f in keyframes]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    losses = []
    for it in range(cfg.iterations):
        if time.perf_counter() - start > cfg.time_budget_s:
            break
        T, K, w, h, rgb, depth = views[rng.integers(len(views))]
        out = render(params["means"], params["quats"], params["log_scales"].exp(),
                     torch.sigmoid(params["opacity_logits"]), params["colors"], T, K, w, h,
                     backend=cfg.backend)  # type: ignore[arg-type]
        pred = out.features
        loss = (1 - cfg.ssim_weight) * (pred - rgb).abs().mean() + cfg.ssim_weight * (1 - ssim(pred, rgb)) / 2
        if depth is not None and cfg.depth_weight > 0:
            valid = torch.isfinite(depth) & (out.alpha > 0.5)
            if valid.any():
                loss = loss + cfg.depth_weight * (out.depth[valid] - depth[valid]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        opacity = torch.sigmoid(params["opacity_logits"]).numpy()
        keep = opacity >= cfg.prune_opacity
        quats = F.normalize(params["quats"], dim=1).numpy()
        # write whole fields at once: readers see either the old or the new map
        gmap["means"][idx] = params["means"].numpy()
        gmap["scales"][idx] = params["log_scales"].exp().numpy().astype(np.float16)
        gmap["quats"][idx] = quats.astype(np.float16)
        gmap["opacity"][idx] = np.round(np.clip(opacity, 0, 1) * 255).astype(np.uint8)
        gmap["colors"][idx] = np.round(np.clip(params["colors"].numpy(), 0, 1) * 255).astype(np.uint8)
        gmap.revision += 1  # moved Gaussians: caches keyed on the revision rebuild
    pruned = int((~keep).sum())
    if pruned:
        gmap.keep(keep)
    return RefineStats(len(losses), time.perf_counter() - start, losses[0] if losses else float("nan"),
                       losses[-1] if losses else float("nan"), pruned)
