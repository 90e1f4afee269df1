"""Pure-PyTorch tile rasteriser (CPU or any device), differentiable by autograd.

The image is cut into square tiles; each Gaussian is listed in the tiles its alpha-support box
touches; per tile its Gaussians are sorted front to back and composited with
T_i = prod_{j<i} (1 - alpha_j), w_i = alpha_i T_i. Outputs: features sum w_i f_i, alpha sum w_i,
and expected depth sum w_i z_i / alpha. No early termination, so the result equals the
brute-force per-pixel composite exactly (up to float rounding).
"""

from __future__ import annotations

import torch

from langgs_ros.rendering.projection import Projected, gaussian_alpha

__all__ = ["rasterize_tiles"]


def _tile_lists(proj: Projected, width: int, height: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tile id, Gaussian) pairs sorted by tile, then depth (front first)."""
    tiles_x = (width + tile - 1) // tile
    tiles_y = (height + tile - 1) // tile
    m = proj.means2d.detach()
    lo = torch.floor((m - proj.extent) / tile).long()
    hi = torch.floor((m + proj.extent) / tile).long()
    lo[:, 0].clamp_(0, tiles_x - 1)
    lo[:, 1].clamp_(0, tiles_y - 1)
    on_screen = (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] * tile < width) & (lo[:, 1] * tile < height)
    on_screen &= ((m + proj.extent)[:, 0] >= -0.5) & ((m + proj.extent)[:, 1] >= -0.5)
    on_screen &= ((m - proj.extent)[:, 0] <= width - 0.5) & ((m - proj.extent)[:, 1] <= height - 0.5)
    hi[:, 0].clamp_(max=tiles_x - 1)
    hi[:, 1].clamp_(max=tiles_y - 1)
    idx = torch.nonzero(on_screen).squeeze(1)
    nx = (hi[idx, 0] - lo[idx, 0] + 1).clamp_min(0)
    ny = (hi[idx, 1] - lo[idx, 1] + 1).clamp_min(0)
    count = nx * ny
    owner = torch.repeat_interleave(idx, count)
    # offset of each pair within its Gaussian's block of tiles
    start = torch.cumsum(count, 0) - count
    k = torch.arange(int(count.sum()), device=owner.device) - torch.repeat_interleave(start, count)
    rnx = torch.repeat_interleave(nx, count)
    tx = lo[owner, 0] + k % rnx
    ty = lo[owner, 1] + k // rnx
    tile_id = ty * tiles_x + tx
    depth = proj.depths.detach()[owner]
    order = torch.argsort(depth, stable=True)
    order = order[torch.argsort(tile_id[order], stable=True)]
    return tile_id[order], owner[order]


def rasterize_tiles(proj: Projected, features: torch.Tensor, width: int, height: int,
                    tile: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite projected Gaussians with ``features`` [M, C] (rows of ``proj``).

    Returns (features [H, W, C], expected depth [H, W] (0 where alpha is 0), alpha [H, W]).
    """
    C = features.shape[1]
    dev, dtype = features.device, features.dtype
    tiles_x = (width + tile - 1) // tile
    out = torch.zeros(height, width, C + 2, device=dev, dtype=dtype)  # features, depth*alpha, alpha
    tile_id, owner = _tile_lists(proj, width, height, tile)
    if tile_id.numel() == 0:
        return out[..., :C], out[..., C], out[..., C + 1]
    uniq, counts = torch.unique_consecutive(tile_id, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    values = torch.cat([features, proj.depths[:, None], torch.ones_like(proj.depths)[:, None]], dim=1)
    pixel_ids, pixel_values = [], []
    for t, s, n in zip(uniq.tolist(), starts.tolist(), counts.tolist()):
        g = owner[s:s + n]
        y0, x0 = (t // tiles_x) * tile, (t % tiles_x) * tile
        y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
        py, px = torch.meshgrid(torch.arange(y0, y1, device=dev, dtype=dtype),
                                torch.arange(x0, x1, device=dev, dtype=dtype), indexing="ij")
        sub = Projected(g, proj.means2d[g], proj.conics[g], proj.depths[g], proj.opacities[g], proj.extent[g])
        alpha = gaussian_alpha(sub, px.reshape(-1), py.reshape(-1))  # [P, n], front to back
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
        pixel_ids.append((py.long() * width + px.long()).reshape(-1))
        pixel_values.append((alpha * trans) @ values[g])
    # one out-of-place scatter keeps the image differentiable
    pieces = out.reshape(-1, C + 2).index_add(0, torch.cat(pixel_ids), torch.cat(pixel_values))
    pieces = pieces.reshape(height, width, C + 2)
    acc = pieces[..., C + 1]
    depth = torch.where(acc > 0, pieces[..., C] / acc.clamp_min(1e-12), torch.zeros_like(acc))
    return pieces[..., :C], depth, acc
