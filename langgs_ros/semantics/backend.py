"""The interface every 2D semantic backend implements, and the backend registry.

A backend turns a frame into segments at three granularity levels (subpart, part, whole; each an
H x W id map, -1 = no segment) with one unit-norm embedding per segment, and encodes text into the
same embedding space. The oracle backend (ground-truth instances) serves synthetic and annotated
data; the SAM/SAM2 + OpenCLIP backend ('clip', :mod:`langgs_ros.semantics.foundation`) serves
robots. Embeddings may concatenate several feature kinds of the text encoder's width (see
:func:`langgs_ros.mapping.fusion.kind_margins`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from langgs_ros.config import ModelsConfig, OracleNoiseConfig, SemanticsConfig
from langgs_ros.errors import ConfigError
from langgs_ros.types import Frame

__all__ = ["LEVELS", "Segmentation", "SegmentationGuidance", "TextEncoder", "SemanticBackend",
           "create_backend", "create_text_encoder", "BACKEND_NAMES"]

LEVELS: tuple[str, str, str] = ("subpart", "part", "whole")
BACKEND_NAMES = ("oracle", "clip", "none")


@dataclass
class Segmentation:
    """Segments of one image at the three levels of :data:`LEVELS`."""

    levels: list[np.ndarray]
    """Per level, [H, W] int32 segment ids 0..S-1; -1 where no segment."""
    embeddings: list[np.ndarray]
    """Per level, [S, D] float32 unit-norm embedding of each segment."""
    tracks: list[np.ndarray] | None = None
    """Per level, [S] int64 id of each segment that is stable across views (a tracker's
    association); None lets the map associate segments geometrically."""
    abstain: np.ndarray | None = None
    """[H, W] bool pixels the segments say nothing about (prompted sparsely where the map labels
    the surface already, and in no segment): they neither vote nor fill. None: every pixel counts."""

    def validate(self, dim: int) -> None:
        """Raise ValueError if ids and embeddings disagree (for backend tests)."""
        if len(self.levels) != len(LEVELS) or len(self.embeddings) != len(LEVELS):
            raise ValueError("a segmentation needs exactly three levels")
        for ids, emb in zip(self.levels, self.embeddings):
            if emb.ndim != 2 or emb.shape[1] != dim:
                raise ValueError(f"embeddings must be [S, {dim}]")
            if ids.size and ids.max() >= emb.shape[0]:
                raise ValueError("segment id without an embedding")
        if self.tracks is not None and [len(t) for t in self.tracks] != [len(e) for e in self.embeddings]:
            raise ValueError("one track id per segment is needed")
        if self.abstain is not None and self.levels and self.abstain.shape != self.levels[0].shape:
            raise ValueError("the abstain mask must have the size of the segment id maps")


@dataclass
class SegmentationGuidance:
    """What the map tells a backend about a view before it segments it."""

    depth_ratio: np.ndarray | None = None
    """[h, w] float32 D^2 / MD^2: squared observed depth over the squared nearest depth the map has
    seen the surface from (>= 1; NaN where unknown), at any resolution (GAGS eq. 1)."""
    labelled_views: np.ndarray | None = None
    """[h, w] float32 views whose semantics the map has fused at the surface seen there (0: new
    surface; NaN: no depth), same resolution as ``depth_ratio``: a backend may prompt less where
    the map labels the surface already."""


class TextEncoder(ABC):
    """Text -> unit-norm embeddings in a backend's space."""

    name: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[T, D] float32 unit-norm embeddings; all-zero rows for texts with no usable tokens."""


class SemanticBackend(ABC):
    """Image -> multi-level segments with embeddings; text -> embeddings."""

    name: str
    text_encoder: TextEncoder
    uses_depth_guidance: bool = False
    """True if :meth:`segment` uses :attr:`SegmentationGuidance.depth_ratio`."""

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.text_encoder.dim

    @abstractmethod
    def segment(self, frame: Frame, guidance: SegmentationGuidance | None = None) -> Segmentation:
        """Segments of ``frame`` (same H x W as its image)."""


def create_text_encoder(name: str, models: ModelsConfig | None = None) -> TextEncoder | None:
    """The text encoder a map built with backend ``name`` must be queried with (None: no semantics).

    For ``clip`` only the OpenCLIP model of ``models`` is loaded (no SAM).
    """
    if name == "none":
        return None
    if name == "oracle":
        from langgs_ros.semantics.oracle import TokenTextEncoder

        return TokenTextEncoder()
    if name == "clip":
        from langgs_ros.semantics.clip_features import ClipTextEncoder
        from langgs_ros.semantics.models import load_clip, resolve_device

        models = models or ModelsConfig()
        return ClipTextEncoder(*load_clip(models, resolve_device(models.device)), models.clip_model)
    raise ConfigError(f"unknown semantic backend '{name}' (choose from {', '.join(BACKEND_NAMES)})")


def create_backend(name: str, noise: OracleNoiseConfig | None = None, models: ModelsConfig | None = None,
                   association_iou: float = 0.5, semantics: SemanticsConfig | None = None) -> SemanticBackend | None:
    """Backend by name: ``oracle``, ``clip`` (SAM/SAM2 + OpenCLIP) or ``none`` (returns None).

    Raises :class:`~langgs_ros.errors.BackendUnavailableError` naming the file when a model's weights are missing.
    """
    if name == "none":
        return None
    if name == "oracle":
        from langgs_ros.semantics.oracle import OracleBackend

        return OracleBackend(noise or OracleNoiseConfig())
    if name == "clip":
        from langgs_ros.semantics.foundation import FoundationBackend

        return FoundationBackend(models or ModelsConfig(), association_iou=association_iou,
                                 semantics=semantics or SemanticsConfig())
    raise ConfigError(f"unknown semantic backend '{name}' (choose from {', '.join(BACKEND_NAMES)})")
