"""2D semantic backends: image -> segments at three granularities with unit-norm embeddings."""

from langgs_ros.semantics.backend import LEVELS, Segmentation, SemanticBackend, TextEncoder, create_backend

__all__ = ["LEVELS", "Segmentation", "SemanticBackend", "TextEncoder", "create_backend"]
