"""What integrating a frame yields: its figures and, for a keyframe whose semantics come later,
what fusing them needs, as it was when the geometry was integrated (pixels in the keyframe's image,
Gaussian ids of the map and their blocks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from langgs_ros.mapping.pose_correction import CorrectionStats
from langgs_ros.semantics.backend import Segmentation, SegmentationGuidance
from langgs_ros.types import Frame

__all__ = ["IntegrationStats", "PendingKeyframe", "FusionWork"]


@dataclass
class IntegrationStats:
    """What one call of :meth:`Mapper.integrate` did."""

    keyframe: bool
    added: int = 0
    visible: int = 0
    removed: int = 0
    agrees_with_map: bool = True
    """False: the keyframe disagreed with what the map's confirmed Gaussians say (``max_disagreement``)."""
    total: int = 0
    seconds: float = 0.0
    semantics_seconds: float = 0.0
    reanchored: CorrectionStats | None = None
    """Keyframes re-expressed with this frame's map -> odom before it was integrated (``reanchor_jump_m``)."""


@dataclass
class PendingKeyframe:
    """A keyframe whose geometry is in the map and whose semantics are not fused yet: what fusion
    needs, as it was at integration time."""

    keyframe: int
    """Keyframe index in the map."""
    frame: Frame
    """The frame, with depth (estimated by plane sweep for color-only frames)."""
    uids: np.ndarray
    """uint32 [M] ids of the Gaussians the view saw (visible ones first, then those it created)."""
    keys: np.ndarray
    """int64 [M] block of each (where fusion finds it)."""
    rows: np.ndarray
    """int64 [M] row of each in its block then (checked first; -1: unknown)."""
    u: np.ndarray
    """int [M] pixel column of each, in ``frame``."""
    v: np.ndarray
    """int [M] pixel row of each."""
    is_new: np.ndarray
    """bool [M] created by this keyframe."""
    abstain: np.ndarray | None
    """bool [M] observations just behind a depth silhouette (neither vote nor fill)."""
    guidance: SegmentationGuidance | None
    """GAGS prompt-density input of the backend, computed from the map at integration time."""
    mapped_at: float = 0.0
    """time.monotonic() when the geometry was integrated."""
    agrees_with_map: bool = True
    """The view's depth agreed with the map (``max_disagreement``): it may count as evidence that
    an object has gone."""
    disagreement: float = 0.0
    """Fraction of the confirmed Gaussians the view met that it saw through (see
    :meth:`~langgs_ros.mapping.visibility.Visibility.disagreement`)."""


@dataclass
class FusionWork:
    """A keyframe's semantic fusion between its steps (:meth:`Mapper.begin_fusion`,
    ``compute_fusion``, ``finish_fusion``): a copy of the semantics of the Gaussians it saw."""

    pending: PendingKeyframe
    segmentation: Segmentation
    index: np.ndarray
    """Positions in ``pending`` of the observations whose Gaussians were found, grouped by block."""
    keys: np.ndarray
    """int64 block of each found Gaussian."""
    rows: np.ndarray
    """Its row in that block when copied."""
    columns: dict[str, np.ndarray]
    """The semantic field's per-Gaussian arrays and ``labelled_views`` of those Gaussians (voted into)."""
    codes_before: np.ndarray | None
    """``codes`` as copied (only changed codes are written back), None for a field without codes."""
    segment_tracks: list[np.ndarray | None] | None = None
    """Per level, the map track each segment was associated with (after ``compute_fusion``)."""
    track_maps: np.ndarray | None = None
    """[levels, H, W] map track of each pixel's segment, for the refinement view of this keyframe
    (after ``compute_fusion``; None without refinement views or tracks)."""
