"""Per-scene refinement of the feed-forward map by differentiable rendering.

Each iteration renders one training view (a recent keyframe resized by ``scale``) with
:func:`langgs_ros.rendering.render` and takes one Adam step on the Gaussians inside the window's
frustums:

* photometric and depth (3DGS): ``(1 - l) L1(rgb) + l (1 - SSIM(rgb)) / 2 + w_d L1(depth)``;
* semantic (CCL-LGS Sec. 3.4): every Gaussian carries a low-dimensional feature, rendered with
  the colours; a small MLP decodes each pixel's feature, per granularity level, to a softmax over
  the codebook entries plus "in no segment", trained by cross-entropy against the view's
  codebook-index map (the code of the map track each segment was associated with);
* granularity-aware distillation (GAGS Sec. 3.2): the decoder also outputs granularity logits
  eta; ``alpha = softmax(eta)`` weights the per-level cross-entropies, with entropy
  regularisation of alpha; every loss term is region-aware (each segment of a view weighs the
  same, whatever its area).

Rounds run in three steps so the map stays queryable: :meth:`Refiner.prepare` copies what it
needs (under the caller's lock), :meth:`Refiner.optimise` works on the copy only, and
:meth:`Refiner.commit` writes every field back at once (under the lock), densifies (clone small,
split large Gaussians with large positional gradients, 3DGS) and prunes transparent ones. A
Gaussian whose own decoded feature is confident (``code_min_prob``) takes the decoded code as its
code at that level and leaves its track (until a later view votes it into one again), so queries
see the refined semantics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from langgs_ros.config import RefineConfig
from langgs_ros.errors import InputError
from langgs_ros.geometry import invert_transform
from langgs_ros.mapping.fusion import CodebookField, SemanticField
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.rendering import render
from langgs_ros.rendering.projection import quat_to_rotmat
from langgs_ros.semantics.backend import LEVELS
from langgs_ros.types import Frame

__all__ = ["TrainingView", "training_view", "set_view_tracks", "RefineStats", "Refiner", "refine_map", "ssim", "psnr",
           "render_view", "IGNORE", "NO_SEGMENT"]

NO_SEGMENT = -1
"""Track-map value of a pixel in no segment (decoded as the extra "none" class)."""
IGNORE = -2
"""Track-map value of a pixel that gives no semantic supervision (e.g. near a mask boundary)."""
_CE_IGNORE = -100


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


def _in_view(means: torch.Tensor, log_scales: torch.Tensor, T: torch.Tensor, K: torch.Tensor,  # noqa: N803
             width: int, height: int, near: float = 0.01) -> torch.Tensor:
    """Indices of the Gaussians whose 3-sigma footprint can reach a ``width`` x ``height`` view
    (fixed frame -> camera ``T``, intrinsics ``K``): the rest cannot change its pixels, and leaving
    them out of the differentiable render bounds its memory by what the view sees."""
    pc = means @ T[:3, :3].T + T[:3, 3]
    z = pc[:, 2]
    zc = z.clamp_min(near)
    u = K[0, 0] * pc[:, 0] / zc + K[0, 2]
    v = K[1, 1] * pc[:, 1] / zc + K[1, 2]
    reach = 3.0 * log_scales.max(dim=1).values.exp() * torch.maximum(K[0, 0], K[1, 1]) / zc + 1.0
    ok = (z > near) & (u + reach >= -0.5) & (u - reach <= width - 0.5) & (v + reach >= -0.5) & (v - reach <= height - 0.5)
    return torch.nonzero(ok).squeeze(1)


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


@dataclass
class RefineStats:
    """What one refinement call did."""

    iterations: int = 0
    seconds: float = 0.0
    first_loss: float = float("nan")
    last_loss: float = float("nan")
    semantic_loss: float = float("nan")  # last iteration's semantic term (before its weight)
    refined: int = 0  # Gaussians optimised
    pruned: int = 0
    densified: int = 0
    codes_changed: int = 0
    committed: bool = True


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


def _opacity_logits(opacity_u8: np.ndarray) -> np.ndarray:
    op = np.clip(opacity_u8.astype(np.float32) / 255, 1e-3, 1 - 1e-3)
    return np.log(op / (1 - op))


def _geometry(gmap: GaussianMap, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """Optimisable copies of the Gaussians ``idx`` (log-scales, opacity logits, colours 0..1)."""
    return {
        "means": torch.from_numpy(gmap["means"][idx].astype(np.float32)),
        "log_scales": torch.from_numpy(np.log(np.maximum(gmap["scales"][idx].astype(np.float32), 1e-5))),
        "quats": torch.from_numpy(gmap["quats"][idx].astype(np.float32)),
        "opacity_logits": torch.from_numpy(_opacity_logits(gmap["opacity"][idx])),
        "colors": torch.from_numpy(gmap["colors"][idx].astype(np.float32) / 255),
    }


def render_view(gmap: GaussianMap, frame: Frame, scale: float = 0.5, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(rgb [h, w, 3] 0..1 over black, depth [h, w] m, 0 = none) of the map seen from ``frame``."""
    view = training_view(frame, scale)
    p = _geometry(gmap, np.arange(len(gmap)))
    with torch.no_grad():
        out = render(p["means"], p["quats"], p["log_scales"].exp(), torch.sigmoid(p["opacity_logits"]), p["colors"],
                     torch.from_numpy(view.T_cam_world).float(), torch.from_numpy(view.K), view.width, view.height,
                     backend=backend)  # type: ignore[arg-type]
    return out.features.clamp(0, 1).numpy(), out.depth.numpy()


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


class SemanticDecoder(torch.nn.Module):
    """Rendered low-dimensional feature -> per level logits over codebook entries + "none", and
    GAGS granularity logits (one per level)."""

    def __init__(self, dim: int, classes: int, levels: int, hidden: int = 64) -> None:
        super().__init__()
        self.classes, self.levels = classes, levels
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, levels * classes + levels))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mlp(features)
        logits = out[:, : self.levels * self.classes].reshape(-1, self.levels, self.classes)
        return logits, out[:, self.levels * self.classes:]


def region_weights(tracks: np.ndarray) -> np.ndarray:
    """GAGS region-aware weights of one level's track map [h, w]: each region (track, or "no
    segment") weighs 1 / (regions x its area); ignored pixels 0. Sums to 1 over the image."""
    weights = np.zeros(tracks.shape, np.float32)
    ok = tracks != IGNORE
    if not ok.any():
        return weights
    _, inverse, counts = np.unique(tracks[ok], return_inverse=True, return_counts=True)
    weights[ok] = 1.0 / (len(counts) * counts[inverse])
    return weights


@dataclass
class _Round:
    """A refinement round's private copy of the map (see :class:`Refiner`)."""

    gmap_id: int
    revision: int
    idx: np.ndarray
    params: dict[str, torch.Tensor]
    views: list[tuple[torch.Tensor, torch.Tensor, int, int, torch.Tensor, torch.Tensor | None]]
    targets: list[tuple[torch.Tensor, torch.Tensor] | None]  # per view: classes [L, h, w], weights [L, h, w]
    grad_sum: torch.Tensor
    grad_count: torch.Tensor
    stats: RefineStats = field(default_factory=RefineStats)


class Refiner:
    """Refines a map against training views; keeps the semantic decoder between rounds."""

    def __init__(self, config: RefineConfig | None = None, semantic_field: SemanticField | None = None,
                 seed: int = 0) -> None:
        from langgs_ros.semantics.models import resolve_device

        self.config = config or RefineConfig()
        self.device = resolve_device(self.config.device, "refine.device")
        self.field = semantic_field if isinstance(semantic_field, CodebookField) else None
        self.semantic = self.field is not None and self.config.semantic_dim > 0
        self._rng = np.random.default_rng(seed)
        self._gen = torch.Generator().manual_seed(seed)
        self.decoder: SemanticDecoder | None = None
        self._decoder_lock = threading.Lock()  # a save may read the weights while a round updates them
        if self.semantic:
            assert self.field is not None
            torch.manual_seed(seed)
            self.classes = self.field.codebook.capacity + 1  # codebook entries + "in no segment"
            self.decoder = SemanticDecoder(self.config.semantic_dim, self.classes, len(LEVELS))
            self.decoder.to(self.device)
            self._decoder_opt = torch.optim.Adam(self.decoder.parameters(), lr=self.config.lr_semantic * 0.1)

    def decoder_state(self) -> dict[str, np.ndarray]:
        """The semantic decoder's weights as float32 arrays (for the map file); empty without one."""
        if self.decoder is None:
            return {}
        with self._decoder_lock:
            return {k: v.detach().cpu().numpy().astype(np.float32, copy=True) for k, v in self.decoder.state_dict().items()}

    def load_decoder_state(self, state: dict[str, np.ndarray]) -> bool:
        """Continue from a saved decoder. False (nothing loaded) if there is no decoder here or the
        saved one has other shapes (another ``semantic_dim`` or codebook capacity)."""
        if self.decoder is None or not state:
            return False
        own = self.decoder.state_dict()
        if set(state) != set(own) or any(tuple(state[k].shape) != tuple(own[k].shape) for k in own):
            return False
        with self._decoder_lock:
            self.decoder.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in state.items()})
        return True

    def attach(self, gmap: GaussianMap) -> None:
        """Register the per-Gaussian semantic feature (float16 [semantic_dim]) in ``gmap``."""
        if self.semantic:
            try:
                gmap.add_field("semantic_features", np.float16, (self.config.semantic_dim,))
            except ValueError:
                have = gmap["semantic_features"].shape[1:]
                raise InputError(f"the map holds {have[0] if have else '?'}-d semantic features, "
                                 f"refine.semantic_dim is {self.config.semantic_dim}") from None

    # -- round: prepare (lock held) -> optimise (no lock) -> commit (lock held) -------------
    def prepare(self, gmap: GaussianMap, views: list[TrainingView]) -> _Round | None:
        """Copy the Gaussians inside the views' frustums and the views' targets; None if nothing to do."""
        if not views or len(gmap) == 0:
            return None
        idx = np.flatnonzero(in_frustums(gmap["means"], views))
        if idx.size == 0:
            return None
        dev = self.device
        params = {k: v.to(dev) for k, v in _geometry(gmap, idx).items()}
        if self.semantic:
            self.attach(gmap)
            params["semantic"] = torch.from_numpy(gmap["semantic_features"][idx].astype(np.float32)).to(dev)
        tensors = []
        targets: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for v in views:
            depth = None if v.depth is None else torch.from_numpy(v.depth).to(dev)
            tensors.append((torch.from_numpy(v.T_cam_world).float().to(dev), torch.from_numpy(v.K).to(dev),
                            v.width, v.height, torch.from_numpy(v.rgb).to(dev).float() / 255, depth))
            targets.append(self._targets(v) if self.semantic else None)
        n = idx.size
        return _Round(id(gmap), gmap.revision, idx, params, tensors, targets,
                      torch.zeros(n, device=dev), torch.zeros(n, device=dev))

    def _targets(self, view: TrainingView) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per level: codebook class of each pixel (the code of its track now) and GAGS weights."""
        if view.tracks is None:
            return None
        assert self.field is not None
        classes = np.full(view.tracks.shape, _CE_IGNORE, np.int64)
        weights = np.zeros(view.tracks.shape, np.float32)
        for level, tracks in enumerate(view.tracks):
            seg = tracks >= 0
            codes = np.full(tracks.shape, -1, np.int64)
            if seg.any():
                codes[seg] = self.field.track_codes(level, tracks[seg])
            classes[level][tracks == NO_SEGMENT] = self.classes - 1
            classes[level][codes >= 0] = codes[codes >= 0]
            weights[level] = region_weights(np.where(classes[level] == _CE_IGNORE, IGNORE, tracks))
        dev = self.device
        return torch.from_numpy(classes).to(dev), torch.from_numpy(weights).to(dev)

    def optimise(self, rnd: _Round, iterations: int, should_stop: Callable[[], bool] | None = None,
                 time_budget_s: float = float("inf")) -> RefineStats:
        """Up to ``iterations`` Adam steps on the round's copy; stops early when ``should_stop()``."""
        cfg = self.config
        p = {k: v.requires_grad_(True) for k, v in rnd.params.items()}
        lrs = {"means": cfg.lr_means, "log_scales": cfg.lr_scales, "quats": cfg.lr_quats,
               "opacity_logits": cfg.lr_opacity, "colors": cfg.lr_colors, "semantic": cfg.lr_semantic}
        opt = torch.optim.Adam([{"params": [p[k]], "lr": lrs[k]} for k in p])
        stats = rnd.stats
        start = time.perf_counter()
        for _ in range(iterations):
            if (should_stop is not None and should_stop()) or time.perf_counter() - start > time_budget_s:
                break
            view = int(self._rng.integers(len(rnd.views)))
            T, K, w, h, rgb, depth = rnd.views[view]
            target = rnd.targets[view]
            if 0 < cfg.crop_px < max(w, h):  # a random crop: memory and time per iteration bounded by its pixels
                cw, ch = min(w, cfg.crop_px), min(h, cfg.crop_px)
                x0, y0 = int(self._rng.integers(w - cw + 1)), int(self._rng.integers(h - ch + 1))
                K = K.clone()
                K[0, 2] -= x0
                K[1, 2] -= y0
                rgb = rgb[y0:y0 + ch, x0:x0 + cw]
                depth = None if depth is None else depth[y0:y0 + ch, x0:x0 + cw]
                if target is not None:
                    target = tuple(t[..., y0:y0 + ch, x0:x0 + cw] for t in target)
                w, h = cw, ch
            colors = torch.cat([p["colors"], p["semantic"]], 1) if self.semantic else p["colors"]
            sel = _in_view(p["means"].detach(), p["log_scales"].detach(), T, K, w, h)  # autograd only for these
            out = render(p["means"][sel], p["quats"][sel], p["log_scales"][sel].exp(),
                         torch.sigmoid(p["opacity_logits"][sel]), colors[sel], T, K, w, h, backend=cfg.backend)
            pred = out.features[..., :3]
            loss = (1 - cfg.ssim_weight) * (pred - rgb).abs().mean() + cfg.ssim_weight * (1 - ssim(pred, rgb)) / 2
            if depth is not None and cfg.depth_weight > 0:
                valid = torch.isfinite(depth) & (out.alpha > 0.5)
                if valid.any():
                    loss = loss + cfg.depth_weight * (out.depth[valid] - depth[valid]).abs().mean()
            if target is not None and cfg.semantic_weight > 0:
                sem = self._semantic_loss(out.features[..., 3:], out.alpha.detach() > 0.5, *target)
                own = self._gaussian_code_loss(p["means"].detach(), p["semantic"], out.depth.detach(), T, K, target[0])
                if sem is not None:
                    sem = sem + own if own is not None else sem
                    loss = loss + cfg.semantic_weight * sem
                    stats.semantic_loss = float(sem.detach())
            opt.zero_grad()
            if self.decoder is not None:
                self._decoder_opt.zero_grad()
            loss.backward()
            opt.step()
            if self.decoder is not None:
                with self._decoder_lock:
                    self._decoder_opt.step()
            with torch.no_grad():
                g = p["means"].grad.norm(dim=1)
                rnd.grad_sum += g
                rnd.grad_count += (g > 0).float()
            value = float(loss.detach())
            if stats.iterations == 0:
                stats.first_loss = value
            stats.last_loss = value
            stats.iterations += 1
        stats.seconds += time.perf_counter() - start
        for v in p.values():
            v.requires_grad_(False)
        return stats

    def _semantic_loss(self, features: torch.Tensor, covered: torch.Tensor, classes: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor | None:
        """Region-aware per-level cross-entropy (+ GAGS granularity-weighted term and entropy)."""
        assert self.decoder is not None
        sel = covered & (weights.sum(0) > 0)
        if not sel.any():
            return None
        logits, eta = self.decoder(features[sel])
        t = classes[:, sel].T  # [P, L]
        w = weights[:, sel].T
        ce = F.cross_entropy(logits.reshape(-1, self.classes), t.reshape(-1), ignore_index=_CE_IGNORE,
                             reduction="none").reshape(t.shape)
        w = w / w.sum(0, keepdim=True).clamp_min(1e-12)  # each level's weights sum to 1
        per_level = (ce * w).sum(0)
        loss = per_level.mean()
        if self.config.granularity_weight > 0:
            alpha = torch.softmax(eta, dim=1)
            weighted = (alpha * ce * w).sum()
            entropy = -(alpha * torch.log(alpha.clamp_min(1e-12))).sum(1).mean()
            loss = loss + self.config.granularity_weight * (weighted + self.config.entropy_weight * entropy)
        return loss

    def _gaussian_code_loss(self, means: torch.Tensor, features: torch.Tensor, depth: torch.Tensor,
                            T: torch.Tensor, K: torch.Tensor, classes: torch.Tensor, sample: int = 4096  # noqa: N803
                            ) -> torch.Tensor | None:
        """Cross-entropy of the Gaussians' own decoded features against the classes at their pixels
        (Gaussians on the rendered surface only), so that a Gaussian's code can be read from its
        feature alone (direct 3D querying, CCL-LGS supplement D)."""
        assert self.decoder is not None
        h, w = depth.shape
        pc = means @ T[:3, :3].T + T[:3, 3]
        z = pc[:, 2]
        u = torch.round(K[0, 0] * pc[:, 0] / z.clamp_min(1e-6) + K[0, 2]).long()
        v = torch.round(K[1, 1] * pc[:, 1] / z.clamp_min(1e-6) + K[1, 2]).long()
        inside = (z > 0.01) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        idx = torch.nonzero(inside)[:, 0]
        d = depth[v[idx], u[idx]]
        idx = idx[(d > 0) & ((z[idx] - d).abs() < 0.02 * d + 0.01)]
        if idx.numel() == 0:
            return None
        if idx.numel() > sample:
            idx = idx[torch.randperm(idx.numel(), generator=self._gen)[:sample].to(idx.device)]
        t = classes[:, v[idx], u[idx]].T  # [P, L]
        logits, _ = self.decoder(features[idx])
        if (t == _CE_IGNORE).all():
            return None
        return F.cross_entropy(logits.reshape(-1, self.classes), t.reshape(-1), ignore_index=_CE_IGNORE)

    def commit(self, gmap: GaussianMap, rnd: _Round) -> RefineStats:
        """Write the round back (if the map did not change since :meth:`prepare`), then densify and prune."""
        stats = rnd.stats
        stats.refined = int(rnd.idx.size)
        if id(gmap) != rnd.gmap_id or gmap.revision != rnd.revision:
            stats.committed = False
            return stats
        cfg, idx = self.config, rnd.idx
        p = {k: v.detach().cpu() for k, v in rnd.params.items()}
        opacity = torch.sigmoid(p["opacity_logits"]).numpy()
        gmap["means"][idx] = p["means"].numpy()
        gmap["scales"][idx] = p["log_scales"].exp().numpy().astype(np.float16)
        gmap["quats"][idx] = F.normalize(p["quats"], dim=1).numpy().astype(np.float16)
        gmap["opacity"][idx] = np.round(np.clip(opacity, 0, 1) * 255).astype(np.uint8)
        gmap["colors"][idx] = np.round(np.clip(p["colors"].numpy(), 0, 1) * 255).astype(np.uint8)
        if self.semantic:
            gmap["semantic_features"][idx] = p["semantic"].numpy().astype(np.float16)
            stats.codes_changed = self._decode_codes(gmap, idx, p["semantic"], rnd.grad_count.cpu().numpy() > 0)
        gmap.revision += 1  # moved Gaussians: caches keyed on the revision rebuild
        grad = torch.where(rnd.grad_count >= 3, rnd.grad_sum / rnd.grad_count.clamp_min(1), 0.0)
        stats.densified = self._densify(gmap, idx, p, grad.cpu().numpy())
        keep = np.ones(len(gmap), bool)
        keep[idx[opacity < cfg.prune_opacity]] = False
        stats.pruned = int((~keep).sum())
        if stats.pruned:
            gmap.keep(keep)
        return stats

    def _decode_codes(self, gmap: GaussianMap, idx: np.ndarray, features: torch.Tensor, trained: np.ndarray) -> int:
        """Codes of trained Gaussians from their own decoded feature, where it is confident."""
        assert self.decoder is not None and self.field is not None
        with torch.no_grad():
            logits, _ = self.decoder(features.to(self.device))
            prob, cls = torch.softmax(logits, dim=2).max(dim=2)
        prob, cls = prob.cpu().numpy(), cls.cpu().numpy()
        code = np.where(cls == self.classes - 1, -1, cls)
        known = (cls < self.field.codebook.size) | (cls == self.classes - 1)
        ok = trained[:, None] & (prob >= self.config.code_min_prob) & known
        current = self.field.resolved_codes(gmap)[idx]
        change = ok & (code != current)
        rows, levels = np.nonzero(change)
        gmap["codes"][idx[rows], levels] = code[rows, levels]
        # the decoded code holds until a later view votes the Gaussian into a track again
        gmap["tracks"][idx[rows], levels] = -1
        gmap["track_votes"][idx[rows], levels] = 0
        return int(change.sum())

    def _densify(self, gmap: GaussianMap, idx: np.ndarray, p: dict[str, torch.Tensor], grad: np.ndarray) -> int:
        """Clone (small) or split (large) the Gaussians with the largest mean positional gradients."""
        cfg = self.config
        cand = np.flatnonzero(grad > cfg.densify_grad)
        limit = int(cfg.densify_max_fraction * idx.size)
        if cand.size == 0 or limit == 0:
            return 0
        cand = cand[np.argsort(-grad[cand])[:limit]]
        parents = idx[cand]
        children = {name: gmap[name][parents].copy() for name in gmap.fields}
        scales = p["log_scales"][cand].exp()
        split = (scales.max(dim=1).values > cfg.split_scale_m).numpy()
        if split.any():
            # mirror-sampled offsets from the Gaussian's own covariance, both halves 1.6x smaller
            R = quat_to_rotmat(p["quats"][cand][split])
            noise = torch.randn(int(split.sum()), 3, generator=self._gen) * scales[split]
            offset = (R @ noise[:, :, None])[:, :, 0].numpy()
            smaller = (scales[split] / 1.6).numpy().astype(np.float16)
            children["means"][split] += offset
            children["scales"][split] = smaller
            gmap["means"][parents[split]] -= offset
            gmap["scales"][parents[split]] = smaller
        gmap.append(**children)
        return int(cand.size)

    def refine(self, gmap: GaussianMap, views: list[TrainingView], iterations: int,
               should_stop: Callable[[], bool] | None = None) -> RefineStats:
        """prepare + optimise + commit in one call (no concurrent readers)."""
        rnd = self.prepare(gmap, views)
        if rnd is None:
            return RefineStats()
        self.optimise(rnd, iterations, should_stop, self.config.time_budget_s)
        return self.commit(gmap, rnd)


def refine_map(gmap: GaussianMap, keyframes: list[Frame], config: RefineConfig | None = None,
               seed: int = 0) -> RefineStats:
    """Refine the geometry and colours of ``gmap`` against ``keyframes`` in place (no semantics)."""
    cfg = config or RefineConfig()
    views = [training_view(f, cfg.scale, i) for i, f in enumerate(keyframes)]
    return Refiner(cfg, None, seed).refine(gmap, views, cfg.iterations)
