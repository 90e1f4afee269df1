"""What every frame source (a rosbag2 reader, a frame folder) offers: frames in time order, counts
of frames used and skipped with reasons, and the pose corrections read on the way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from langgs_ros.mapping.pose_correction import PoseGraph
    from langgs_ros.types import Frame

__all__ = ["FrameSource", "SourceStats"]


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


class FrameSource(Protocol):
    """A recording read frame by frame (a context manager that closes it)."""

    stats: SourceStats

    def frames(self) -> Iterator[Frame]:
        """Usable frames in time order; the others are counted in :attr:`stats` with their reason."""
        ...

    def inspect(self) -> list[str]:
        """Lines saying what the recording holds, what a replay uses of it and what it does not."""
        ...

    def take_pose_graph(self) -> PoseGraph | None:
        """The newest pose graph read since the last call (SLAM's correction), or None."""
        ...

    def close(self) -> None:
        """Release the files."""
        ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, *exc: object) -> None: ...
