"""The interface every 2D semantic backend implements, and the backend registry.

A backend turns a frame into segments at three granularity levels (subpart, part, whole; each an
H x W id map, -1 = no segment) with one unit-norm embedding per segment, and encodes text into the
same embedding space. The oracle backend (ground-truth instances) serves synthetic and annotated
data; the SAM/SAM2 + OpenCLIP backend plugs in here too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from langgs_ros.config import OracleNoiseConfig
from langgs_ros.errors import BackendUnavailableError, ConfigError
from langgs_ros.types import Frame

__all__ = ["LEVELS", "Segmentation", "TextEncoder", "SemanticBackend", "create_backend",
           "create_text_encoder", "BACKEND_NAMES"]

LEVELS: tuple[str, str, str] = ("subpart", "part", "whole")
BACKEND_NAMES = ("oracle", "clip", "none")


@dataclass
class Segmentation:
    """Segments of one image at the three levels of :data:`LEVELS`."""

    levels: list[np.ndarray]
    """Per level, [H, W] int32 segment ids 0..S-1; -1 where no segment."""
    embeddings: list[np.ndarray]
    """Per level, [S, D] float32 unit-norm embedding of each segment."""

    def validate(self, dim: int) -> None:
        """Raise ValueError if ids and embeddings disagree (for backend tests)."""
        if len(self.levels) != len(LEVELS) or len(self.embeddings) != len(LEVELS):
            raise ValueError("a segmentation needs exactly three levels")
        for ids, emb in zip(self.levels, self.embeddings):
            if emb.ndim != 2 or emb.shape[1] != dim:
                raise ValueError(f"embeddings must be [S, {dim}]")
            if ids.size and ids.max() >= emb.shape[0]:
                raise ValueError("segment id without an embedding")


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

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.text_encoder.dim

    @abstractmethod
    def segment(self, frame: Frame) -> Segmentation:
        """Segments of ``frame`` (same H x W as its image)."""


def create_text_encoder(name: str) -> TextEncoder | None:
    """The text encoder a map built with backend ``name`` must be queried with (None: no semantics)."""
    if name == "none":
        return None
    if name == "oracle":
        from langgs_ros.semantics.oracle import TokenTextEncoder

        return TokenTextEncoder()
    return create_backend(name).text_encoder  # type: ignore[union-attr]


def create_backend(name: str, noise: OracleNoiseConfig | None = None) -> SemanticBackend | None:
    """Backend by name: ``oracle``, ``clip`` (SAM/SAM2 + OpenCLIP) or ``none`` (returns None)."""
    if name == "none":
        return None
    if name == "oracle":
        from langgs_ros.semantics.oracle import OracleBackend

        return OracleBackend(noise or OracleNoiseConfig())
    if name == "clip":
        raise BackendUnavailableError(
            "the SAM/SAM2 + OpenCLIP semantic backend ('clip') is not part of this release yet; "
            "use --semantics oracle for synthetic or annotated bags (ground-truth /camera/instances) "
            "or --semantics none for a geometry-only map"
        )
    raise ConfigError(f"unknown semantic backend '{name}' (choose from {', '.join(BACKEND_NAMES)})")
