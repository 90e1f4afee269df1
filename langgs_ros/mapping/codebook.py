"""Contrastive codebook learning (CCL-LGS, Sec. 3.3), made incremental.

Prototypes T_j are learned from segment features F_i carrying association labels y_i (the map
track a segment was associated with; -1 = unmatched):

* matching (eq. 4-5): j* = argmax_j cos(F_i, T_j), L_max = 1 - cos(F_i, T_j*);
* pull (eq. 6): same label -> 1 - cos(T_ji, T_jk), here only for prototypes already closer than
  the push margin m (near-duplicates; farther ones are a label swap that pulling would blend);
* push (eq. 7): different labels -> ReLU(cos(T_ji, T_jk) - m);
* total (eq. 8): L_max + lambda_pull L_pull + lambda_push L_push.

Online, a feature far from every prototype (cosine below ``spawn_cos``) spawns a new prototype
while capacity lasts, and training replays a bounded buffer of recent labelled features.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["ContrastiveCodebook"]


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread. The codebook's matrices are small; with torch's
    thread pool next to numpy's, a keyframe's 4 steps took 20-80 ms instead of a steady 10 ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ContrastiveCodebook:
    """Learned prototypes in the backend's embedding space, with a replay buffer."""

    def __init__(self, dim: int, capacity: int = 256, spawn_cos: float = 0.75, lr: float = 0.01,
                 pull: float = 0.25, push: float = 0.25, margin: float = 0.7,
                 replay_size: int = 2048, seed: int = 0) -> None:
        self.dim, self.capacity, self.spawn_cos = dim, capacity, spawn_cos
        self.pull, self.push, self.margin = pull, push, margin
        self.prototypes = torch.zeros(capacity, dim, requires_grad=True)
        self.size = 0
        self._optim = torch.optim.Adam([self.prototypes], lr=lr)
        self._replay_f = np.zeros((replay_size, dim), np.float32)
        self._replay_y = np.full(replay_size, -1, np.int64)
        self._replay_n = 0
        self._replay_next = 0
        self._rng = np.random.default_rng(seed)

    def normalized(self) -> np.ndarray:
        """[size, D] float32 unit-norm prototypes."""
        with torch.no_grad():
            T = self.prototypes[: self.size]
            return torch.nn.functional.normalize(T, dim=1).numpy().copy()

    def assign(self, features: np.ndarray) -> np.ndarray:
        """j* (eq. 4) for unit-norm features [S, D]; spawns prototypes for unexplained ones."""
        protos = self.normalized()
        out = np.empty(len(features), dtype=np.int64)
        for i, f in enumerate(features):
            j = int(np.argmax(protos @ f)) if len(protos) else -1
            if (j < 0 or float(protos[j] @ f) < self.spawn_cos) and self.size < self.capacity:
                with torch.no_grad():
                    self.prototypes[self.size] = torch.from_numpy(np.asarray(f, np.float32))
                protos = np.vstack([protos, f[None].astype(np.float32)])
                j = self.size
                self.size += 1
            out[i] = j
        return out

    def remember(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Add labelled features to the replay buffer (oldest overwritten)."""
        cap = len(self._replay_y)
        for f, y in zip(features, labels):
            self._replay_f[self._replay_next] = f
            self._replay_y[self._replay_next] = y
            self._replay_next = (self._replay_next + 1) % cap
            self._replay_n = min(self._replay_n + 1, cap)

    def loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Eq. 8 on a batch of unit-norm features [B, D] with labels [B]."""
        T = torch.nn.functional.normalize(self.prototypes[: self.size], dim=1)
        with torch.no_grad():  # j* needs no gradient; the chosen cosines below carry all of it
            best = (features @ T.T).argmax(dim=1)
        sel = T[best]
        l_max = (1 - (features * sel).sum(dim=1)).mean()
        pair = sel @ sel.T
        known = labels >= 0
        both = known[:, None] & known[None, :]
        same = (labels[:, None] == labels[None, :]) & both
        same.fill_diagonal_(False)
        diff = (labels[:, None] != labels[None, :]) & both
        zero = l_max.new_zeros(())
        # pull only prototypes that are already alike (cosine above the push margin): near-duplicates
        # of one concept. One object's features on far-apart prototypes are a label swap (a view in
        # which CLIP saw the neighbour), and pulling those together would blend the two concepts.
        same &= pair.detach() > self.margin
        l_pull = (1 - pair[same]).mean() if same.any() else zero
        l_push = torch.relu(pair[diff] - self.margin).mean() if diff.any() else zero
        return l_max + self.pull * l_pull + self.push * l_push

    def train(self, steps: int, batch: int = 256) -> float:
        """``steps`` Adam steps on minibatches of the replay buffer; returns the last loss."""
        if self.size == 0 or self._replay_n == 0:
            return 0.0
        last = 0.0
        with _one_torch_thread():
            for _ in range(steps):
                idx = self._rng.choice(self._replay_n, size=min(batch, self._replay_n), replace=False)
                loss = self.loss(torch.from_numpy(self._replay_f[idx]), torch.from_numpy(self._replay_y[idx]))
                self._optim.zero_grad()
                loss.backward()
                self._optim.step()
                last = float(loss.detach())
        return last

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to save (prototypes only; the replay buffer is transient)."""
        return {"prototypes": self.prototypes[: self.size].detach().numpy().copy()}

    def load_state(self, prototypes: np.ndarray) -> None:
        """Restore prototypes saved by :meth:`state`."""
        n = min(len(prototypes), self.capacity)
        with torch.no_grad():
            self.prototypes[:n] = torch.from_numpy(np.asarray(prototypes[:n], np.float32))
        self.size = n
