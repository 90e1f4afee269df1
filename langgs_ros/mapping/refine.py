"""Per-scene refinement of the feed-forward map by differentiable rendering.

Each iteration renders a random crop of one training view (a recent keyframe resized by
``scale``) with :func:`langgs_ros.rendering.render` and takes one Adam step on the Gaussians
inside the window's frustums: photometric and depth terms (3DGS), ``(1 - l) L1(rgb) +
l (1 - SSIM(rgb)) / 2 + w_d L1(depth)``, and with ``semantic_dim`` > 0 the semantic terms of
:mod:`langgs_ros.mapping.semantic_distillation` (CCL-LGS, GAGS).

Rounds run in three steps so the map stays queryable: :meth:`Refiner.prepare` copies what it
needs (under the caller's lock), :meth:`Refiner.optimise` works on the copy only, and
:meth:`Refiner.commit` writes every field back at once (under the lock), densifies (clone small,
split large Gaussians with large positional gradients, 3DGS) and prunes transparent ones.

A round never makes the map worse on frames it did not train on: given held-out views
(:mod:`langgs_ros.mapping.held_out`), it measures their loss on fixed crops before and after, and
a round whose held-out loss rose is rolled back (nothing is written; the decoder is restored).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from langgs_ros.config import RefineConfig
from langgs_ros.mapping.fusion import CodebookField, SemanticField
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.held_out import EVAL_TILE, HeldOutCrop, gaussian_params, render_params, view_loss
from langgs_ros.mapping.semantic_distillation import SemanticDistillation
from langgs_ros.mapping.training_views import (IGNORE, NO_SEGMENT, TrainingView, in_frustums, psnr, set_view_tracks,
                                               ssim, training_view)
from langgs_ros.rendering.projection import quat_to_rotmat
from langgs_ros.rendering.render import RenderOutput
from langgs_ros.types import Frame

__all__ = ["TrainingView", "training_view", "set_view_tracks", "RefineStats", "Refiner", "refine_map", "ssim", "psnr",
           "render_view", "IGNORE", "NO_SEGMENT"]


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


def _render_subset(params: dict[str, torch.Tensor], T: torch.Tensor, K: torch.Tensor, width: int, height: int,  # noqa: N803
                   backend: str, extra: torch.Tensor | None = None, tile: int = 16) -> RenderOutput:
    """Render only the Gaussians that can reach the view (autograd and memory for those only)."""
    sel = _in_view(params["means"].detach(), params["log_scales"].detach(), T, K, width, height)
    sub = {k: params[k][sel] for k in ("means", "quats", "log_scales", "opacity_logits", "colors")}
    return render_params(sub, T, K, width, height, backend, None if extra is None else extra[sel], tile)


@dataclass
class RefineStats:
    """What one refinement call did."""

    iterations: int = 0
    seconds: float = 0.0
    first_loss: float = float("nan")
    last_loss: float = float("nan")
    semantic_loss: float = float("nan")  # last iteration's semantic term (before its weight)
    held_out_before: float = float("nan")
    """Loss on the held-out crops before the round (NaN without held-out views)."""
    held_out_after: float = float("nan")
    """The same after the round's iterations; above ``held_out_before``, the round is rolled back."""
    refined: int = 0  # Gaussians optimised
    pruned: int = 0
    densified: int = 0
    codes_changed: int = 0
    committed: bool = True
    rolled_back: bool = False
    """The round made the held-out views worse: nothing was written."""


def render_view(gmap: GaussianMap, frame: Frame, scale: float = 0.5, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(rgb [h, w, 3] 0..1 over black, depth [h, w] m, 0 = none) of the map seen from ``frame``."""
    view = training_view(frame, scale)
    with torch.no_grad():
        out = render_params(gaussian_params(gmap, np.arange(len(gmap))), torch.from_numpy(view.T_cam_world).float(),
                            torch.from_numpy(view.K), view.width, view.height, backend, tile=EVAL_TILE)
    return out.features.clamp(0, 1).numpy(), out.depth.numpy()


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
    held_out: list[HeldOutCrop] = field(default_factory=list)
    decoder_snapshot: object = None
    stats: RefineStats = field(default_factory=RefineStats)


class Refiner:
    """Refines a map against training views; keeps the semantic decoder between rounds."""

    def __init__(self, config: RefineConfig | None = None, semantic_field: SemanticField | None = None,
                 seed: int = 0) -> None:
        from langgs_ros.semantics.models import resolve_device

        self.config = config or RefineConfig()
        self.device = resolve_device(self.config.device, "refine.device")
        self._rng = np.random.default_rng(seed)
        self._gen = torch.Generator().manual_seed(seed)
        self.semantics: SemanticDistillation | None = None
        if isinstance(semantic_field, CodebookField) and self.config.semantic_dim > 0:
            torch.manual_seed(seed)
            self.semantics = SemanticDistillation(self.config, semantic_field, self.device, self._gen)

    @property
    def written_fields(self) -> list[str]:
        """Per-Gaussian fields a committed round changes (what goes back into a block-stored map)."""
        names = ["means", "scales", "quats", "opacity", "colors"]
        if self.semantics is not None:
            names += ["semantic_features", "codes", "tracks", "track_votes"]
        return names

    @property
    def decoder(self) -> torch.nn.Module | None:
        """The semantic decoder (None without semantic refinement)."""
        return None if self.semantics is None else self.semantics.decoder

    def decoder_state(self) -> dict[str, np.ndarray]:
        """The semantic decoder's weights as float32 arrays (for the map file); empty without one."""
        return {} if self.semantics is None else self.semantics.state()

    def load_decoder_state(self, state: dict[str, np.ndarray]) -> bool:
        """Continue from a saved decoder. False (nothing loaded) if there is no decoder here or the
        saved one has other shapes (another ``semantic_dim`` or codebook capacity)."""
        return self.semantics is not None and self.semantics.load_state(state)

    # -- round: prepare (lock held) -> optimise (no lock) -> commit (lock held) -------------
    def prepare(self, gmap: GaussianMap, views: list[TrainingView],
                held_out: list[TrainingView] | None = None) -> _Round | None:
        """Copy the Gaussians inside the views' frustums (and the held-out views', which judge the
        round) and the views' targets; None if nothing to do."""
        if not views or len(gmap) == 0:
            return None
        held_out = list(held_out or [])
        idx = np.flatnonzero(in_frustums(gmap["means"], views + held_out))
        if idx.size == 0:
            return None
        dev = self.device
        params = {k: v.to(dev) for k, v in gaussian_params(gmap, idx).items()}
        if self.semantics is not None:
            self.semantics.attach(gmap)
            params["semantic"] = torch.from_numpy(gmap["semantic_features"][idx].astype(np.float32)).to(dev)
        tensors = []
        targets: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for v in views:
            depth = None if v.depth is None else torch.from_numpy(v.depth).to(dev)
            tensors.append((torch.from_numpy(v.T_cam_world).float().to(dev), torch.from_numpy(v.K).to(dev),
                            v.width, v.height, torch.from_numpy(v.rgb).to(dev).float() / 255, depth))
            targets.append(None if self.semantics is None else self.semantics.targets(v))
        n = idx.size
        crops = [HeldOutCrop.of(v, self.config.crop_px, self._rng, dev) for v in held_out]
        snapshot = None if self.semantics is None or not crops else self.semantics.snapshot()
        return _Round(id(gmap), gmap.revision, idx, params, tensors, targets,
                      torch.zeros(n, device=dev), torch.zeros(n, device=dev), crops, snapshot)

    def held_out_loss(self, rnd: _Round) -> float:
        """Mean loss of the round's current parameters on its held-out crops (NaN without any)."""
        if not rnd.held_out:
            return float("nan")
        losses = []
        with torch.no_grad():
            for c in rnd.held_out:
                out = _render_subset(rnd.params, c.T_cam_world, c.K, c.width, c.height, self.config.backend,
                                     tile=EVAL_TILE)
                losses.append(float(view_loss(out, c.rgb, c.depth, self.config)))
        return float(np.mean(losses))

    def optimise(self, rnd: _Round, iterations: int, should_stop: Callable[[], bool] | None = None,
                 time_budget_s: float = float("inf")) -> RefineStats:
        """Up to ``iterations`` Adam steps on the round's copy; stops early when ``should_stop()``.
        With held-out views, their loss is measured before the first and after the last step."""
        cfg = self.config
        stats = rnd.stats
        if rnd.held_out and np.isnan(stats.held_out_before):
            stats.held_out_before = self.held_out_loss(rnd)
        p = {k: v.requires_grad_(True) for k, v in rnd.params.items()}
        lrs = {"means": cfg.lr_means, "log_scales": cfg.lr_scales, "quats": cfg.lr_quats,
               "opacity_logits": cfg.lr_opacity, "colors": cfg.lr_colors, "semantic": cfg.lr_semantic}
        opt = torch.optim.Adam([{"params": [p[k]], "lr": lrs[k]} for k in p])
        start = time.perf_counter()
        done_before = stats.iterations
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
            out = _render_subset(p, T, K, w, h, cfg.backend, p.get("semantic"))
            loss = view_loss(out, rgb, depth, cfg)
            if target is not None and self.semantics is not None and cfg.semantic_weight > 0:
                sem = self.semantics.loss(out.features[..., 3:], out.alpha.detach() > 0.5, target, p["means"].detach(),
                                          p["semantic"], out.depth.detach(), T, K)
                if sem is not None:
                    loss = loss + cfg.semantic_weight * sem
                    stats.semantic_loss = float(sem.detach())
            opt.zero_grad()
            if self.semantics is not None:
                self.semantics.zero_grad()
            loss.backward()
            opt.step()
            if self.semantics is not None:
                self.semantics.step()
            with torch.no_grad():
                g = p["means"].grad.norm(dim=1)
                rnd.grad_sum += g
                rnd.grad_count += (g > 0).float()
            value = float(loss.detach())
            if stats.iterations == 0:
                stats.first_loss = value
            stats.last_loss = value
            stats.iterations += 1
        for v in p.values():
            v.requires_grad_(False)
        if rnd.held_out and stats.iterations > done_before:
            stats.held_out_after = self.held_out_loss(rnd)
        stats.seconds += time.perf_counter() - start
        return stats

    def commit(self, gmap: GaussianMap, rnd: _Round) -> RefineStats:
        """Write the round back, then densify and prune; nothing is written if the map changed
        since :meth:`prepare` or the round made its held-out views worse (then rolled back)."""
        stats = rnd.stats
        stats.refined = int(rnd.idx.size)
        if id(gmap) != rnd.gmap_id or gmap.revision != rnd.revision:
            stats.committed = False
            return stats
        if stats.held_out_after > stats.held_out_before:  # False while either is NaN
            stats.committed, stats.rolled_back = False, True
            if self.semantics is not None and rnd.decoder_snapshot is not None:
                self.semantics.restore(rnd.decoder_snapshot)  # type: ignore[arg-type]
            return stats
        cfg, idx = self.config, rnd.idx
        p = {k: v.detach().cpu() for k, v in rnd.params.items()}
        opacity = torch.sigmoid(p["opacity_logits"]).numpy()
        gmap["means"][idx] = p["means"].numpy()
        gmap["scales"][idx] = p["log_scales"].exp().numpy().astype(np.float16)
        gmap["quats"][idx] = F.normalize(p["quats"], dim=1).numpy().astype(np.float16)
        gmap["opacity"][idx] = np.round(np.clip(opacity, 0, 1) * 255).astype(np.uint8)
        gmap["colors"][idx] = np.round(np.clip(p["colors"].numpy(), 0, 1) * 255).astype(np.uint8)
        if self.semantics is not None:
            gmap["semantic_features"][idx] = p["semantic"].numpy().astype(np.float16)
            stats.codes_changed = self.semantics.decode_codes(gmap, idx, p["semantic"],
                                                              rnd.grad_count.cpu().numpy() > 0)
        gmap.revision += 1  # moved Gaussians: caches keyed on the revision rebuild
        grad = torch.where(rnd.grad_count >= 3, rnd.grad_sum / rnd.grad_count.clamp_min(1), 0.0)
        stats.densified = self._densify(gmap, idx, p, grad.cpu().numpy())
        keep = np.ones(len(gmap), bool)
        keep[idx[opacity < cfg.prune_opacity]] = False
        stats.pruned = int((~keep).sum())
        if stats.pruned:
            gmap.keep(keep)
        return stats

    def _densify(self, gmap: GaussianMap, idx: np.ndarray, p: dict[str, torch.Tensor], grad: np.ndarray) -> int:
        """Clone (small) or split (large) the Gaussians with the largest mean positional gradients."""
        cfg = self.config
        cand = np.flatnonzero(grad > cfg.densify_grad)
        limit = int(cfg.densify_max_fraction * idx.size)
        if cand.size == 0 or limit == 0:
            return 0
        cand = cand[np.argsort(-grad[cand])[:limit]]
        parents = idx[cand]
        # children get ids of their own (ids increase in creation order; a copied id breaks rows_of)
        children = {name: gmap[name][parents].copy() for name in gmap.fields if name != "uid"}
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
               should_stop: Callable[[], bool] | None = None, held_out: list[TrainingView] | None = None) -> RefineStats:
        """prepare + optimise + commit in one call (no concurrent readers)."""
        rnd = self.prepare(gmap, views, held_out)
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
