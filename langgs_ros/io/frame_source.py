"""What a frame source reports besides frames: counts of frames used and skipped, with reasons."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["SourceStats"]


@dataclass
class SourceStats:
    """Frames seen by a source and why some were not used."""

    frames_seen: int = 0
    frames_used: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    """Problems of the source that are not one frame's (corrupt chunks, unreadable messages)."""

    def skip(self, reason: str) -> None:
        """Count one skipped frame under ``reason``."""
        self.skipped[reason] += 1

    def summary(self) -> str:
        """One line per reason, most frequent first."""
        lines = [f"{self.frames_used}/{self.frames_seen} frames used"]
        lines += [f"  skipped {n}: {reason}" for reason, n in self.skipped.most_common()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)
