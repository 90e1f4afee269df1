"""The backend of a mapping process whose segments are computed elsewhere (the split
``semantics_node``): each keyframe arrives with its :class:`Segmentation`, so only the text encoder
(for queries) runs here."""

from __future__ import annotations

from langgs_ros.config import ModelsConfig
from langgs_ros.errors import ConfigError, InputError
from langgs_ros.semantics.backend import Segmentation, SegmentationGuidance, SemanticBackend, create_text_encoder
from langgs_ros.types import Frame

__all__ = ["RemoteSegmentation", "NO_SEGMENTS"]

NO_SEGMENTS = ("this mapping process receives segments from the semantics node (SemanticFrame); "
               "frames without them cannot get semantics here")
"""Why a frame without segments is refused in split mode."""


class RemoteSegmentation(SemanticBackend):
    """Text encoder of backend ``name``; segmentations come with the frames (SemanticFrame)."""

    def __init__(self, name: str, models: ModelsConfig | None = None) -> None:
        encoder = create_text_encoder(name, models)
        if encoder is None:
            raise ConfigError("split semantics needs a semantic backend (clip or oracle), not 'none'")
        self.name = name
        self.text_encoder = encoder
        self._kinds = 1
        if name == "clip":
            from langgs_ros.semantics.clip_features import FEATURE_KINDS

            self._kinds = len(FEATURE_KINDS[(models or ModelsConfig()).feature_kinds])

    @property
    def dim(self) -> int:
        """Embedding width the semantics node sends: text width times feature kinds."""
        return self.text_encoder.dim * self._kinds

    def segment(self, frame: Frame, guidance: SegmentationGuidance | None = None) -> Segmentation:
        raise InputError(NO_SEGMENTS)
