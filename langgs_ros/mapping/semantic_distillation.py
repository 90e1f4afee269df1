"""Semantic terms of refinement: every Gaussian carries a low-dimensional feature, rendered with
its colour, and a small decoder turns a pixel's feature into codebook entries.

* CCL-LGS Sec. 3.4: per granularity level, a softmax over the codebook entries plus "in no
  segment", trained by cross-entropy against the view's codebook-index map (the code of the map
  track each segment was associated with);
* GAGS Sec. 3.2: the decoder also outputs granularity logits eta; ``alpha = softmax(eta)`` weights
  the per-level cross-entropies, with entropy regularisation of alpha; every term is region-aware
  (each segment of a view weighs the same, whatever its area).

A Gaussian whose own decoded feature is confident (``code_min_prob``) takes the decoded code as
its code at that level and leaves its track (until a later view votes it into one again), so
queries see the refined semantics.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from langgs_ros.config import RefineConfig
from langgs_ros.errors import InputError
from langgs_ros.mapping.fusion import CodebookField
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.training_views import IGNORE, NO_SEGMENT, TrainingView
from langgs_ros.semantics.backend import LEVELS

__all__ = ["SemanticDecoder", "SemanticDistillation", "region_weights"]

_CE_IGNORE = -100


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


class SemanticDistillation:
    """The decoder, its optimiser and the semantic losses of one map's codebook ``field``."""

    def __init__(self, config: RefineConfig, field: CodebookField, device: torch.device,
                 generator: torch.Generator) -> None:
        self.config, self.field, self.device, self._gen = config, field, device, generator
        self.classes = field.codebook.capacity + 1  # codebook entries + "in no segment"
        self.decoder = SemanticDecoder(config.semantic_dim, self.classes, len(LEVELS)).to(device)
        self._opt = torch.optim.Adam(self.decoder.parameters(), lr=config.lr_semantic * 0.1)
        self._lock = threading.Lock()  # a save may read the weights while a round updates them

    # -- decoder weights ------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The decoder's weights as float32 arrays (for the map file)."""
        with self._lock:
            return {k: v.detach().cpu().numpy().astype(np.float32, copy=True)
                    for k, v in self.decoder.state_dict().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> bool:
        """Continue from saved weights; False (nothing loaded) if their shapes differ from ours."""
        own = self.decoder.state_dict()
        if not state or set(state) != set(own) or any(tuple(state[k].shape) != tuple(own[k].shape) for k in own):
            return False
        with self._lock:
            self.decoder.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in state.items()})
        return True

    def snapshot(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Decoder and optimiser state, to :meth:`restore` when a round is rolled back."""
        with self._lock:
            return ({k: v.detach().clone() for k, v in self.decoder.state_dict().items()},
                    _clone(self._opt.state_dict()))

    def restore(self, snapshot: tuple[dict[str, torch.Tensor], dict]) -> None:
        with self._lock:
            self.decoder.load_state_dict(snapshot[0])
            self._opt.load_state_dict(snapshot[1])

    def attach(self, gmap: GaussianMap) -> None:
        """Register the per-Gaussian semantic feature (float16 [semantic_dim]) in ``gmap``."""
        try:
            gmap.add_field("semantic_features", np.float16, (self.config.semantic_dim,))
        except ValueError:
            have = gmap["semantic_features"].shape[1:]
            raise InputError(f"the map holds {have[0] if have else '?'}-d semantic features, "
                             f"refine.semantic_dim is {self.config.semantic_dim}") from None

    # -- one iteration ----------------------------------------------------------------------
    def targets(self, view: TrainingView) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per level: codebook class of each pixel (the code of its track now) and GAGS weights."""
        if view.tracks is None:
            return None
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
        return torch.from_numpy(classes).to(self.device), torch.from_numpy(weights).to(self.device)

    def loss(self, features: torch.Tensor, covered: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor],
             means: torch.Tensor, gaussian_features: torch.Tensor, depth: torch.Tensor, T: torch.Tensor,  # noqa: N803
             K: torch.Tensor) -> torch.Tensor | None:  # noqa: N803
        """The semantic loss of one rendered view (rendered ``features`` [h, w, D], ``covered``
        pixels), plus the Gaussians' own decoded features against the classes at their pixels."""
        rendered = self._rendered_loss(features, covered, *target)
        if rendered is None:
            return None
        own = self._gaussian_code_loss(means, gaussian_features, depth, T, K, target[0])
        return rendered + own if own is not None else rendered

    def zero_grad(self) -> None:
        self._opt.zero_grad()

    def step(self) -> None:
        with self._lock:
            self._opt.step()

    def _rendered_loss(self, features: torch.Tensor, covered: torch.Tensor, classes: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor | None:
        """Region-aware per-level cross-entropy (+ GAGS granularity-weighted term and entropy)."""
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

    # -- after a round ----------------------------------------------------------------------
    def decode_codes(self, gmap: GaussianMap, idx: np.ndarray, features: torch.Tensor, trained: np.ndarray) -> int:
        """Codes of trained Gaussians ``idx`` from their own decoded ``features``, where it is
        confident; returns how many (Gaussian, level) codes changed."""
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


def _clone(state: object) -> object:
    """A deep copy of an optimiser state dict (tensors cloned)."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _clone(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_clone(v) for v in state]
    return state
