"""What an input path is: a rosbag2 directory, a frame folder, or something else, said clearly.

A user points the tool at a dataset root instead of its sequence folder, at a bag that a crashed
``ros2 bag record`` left without ``metadata.yaml``, at an empty directory or at a single file;
each gets an error naming the path, what was expected and, where it helps, what to pass instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from langgs_ros.errors import BagError, InputError

__all__ = ["classify_input", "is_frame_folder", "is_bag_dir", "BAG_STORAGE_SUFFIXES"]

BAG_STORAGE_SUFFIXES = (".mcap", ".db3")
_COLOR_GLOB = "frame-*.color.*"
_MAX_LISTED = 8


def is_frame_folder(path: Path) -> bool:
    """True if ``path`` is a directory holding ``frame-*.color.*`` images (7-Scenes layout)."""
    return path.is_dir() and any(path.glob(_COLOR_GLOB))


def is_bag_dir(path: Path) -> bool:
    """True if ``path`` is a rosbag2 directory (has ``metadata.yaml``)."""
    return path.is_dir() and (path / "metadata.yaml").is_file()


def _storage_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in BAG_STORAGE_SUFFIXES)


def _candidates(root: Path) -> list[str]:
    """Sub-folders (two levels deep) of ``root`` that look like frame folders or bags."""
    found: list[str] = []
    try:
        level1 = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return found
    for sub in level1:
        try:
            below = sorted(p for p in sub.iterdir() if p.is_dir())
        except OSError:
            below = []
        for d in [sub, *below]:
            if is_frame_folder(d):
                found.append(f"{d} (frame folder)")
            elif is_bag_dir(d):
                found.append(f"{d} (bag)")
            if len(found) > _MAX_LISTED:
                return found
    return found


def classify_input(path: str | Path) -> Literal["bag", "folder"]:
    """``"bag"`` for a rosbag2 directory (or a file inside one) or a ROS 1 ``.bag``, ``"folder"`` for a frame folder;
    otherwise raises InputError/BagError saying what the path is and what was expected."""
    path = Path(path)
    expected = ("a rosbag2 directory (with metadata.yaml), a ROS 1 .bag file or a frame folder (frame-*.color.png, "
                "*.depth.png, *.pose.txt)")
    if not path.exists():
        raise InputError(f"input {path} does not exist; expected {expected}")
    if path.is_file():
        if path.suffix == ".bag" or path.suffix == ".mcap":  # ROS 1 bag; an MCAP file is read (salvaged) as is
            return "bag"
        if path.suffix in BAG_STORAGE_SUFFIXES and (path.parent / "metadata.yaml").is_file():
            return "bag"
        if path.suffix in BAG_STORAGE_SUFFIXES:
            raise BagError(f"{path} is a bag storage file without metadata.yaml beside it (what a crashed "
                           f"'ros2 bag record' leaves); run 'ros2 bag reindex {path.parent}' and pass the directory")
        raise InputError(f"input {path} is a file; expected {expected}")
    if is_bag_dir(path):
        return "bag"
    if is_frame_folder(path):
        return "folder"
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise InputError(f"cannot list input directory {path}: {exc.strerror}") from None
    if not entries:
        raise InputError(f"input directory {path} is empty; expected {expected}")
    storage = _storage_files(path)
    if any(p.suffix == ".mcap" for p in storage):
        return "bag"  # without metadata.yaml: rebuilt from the MCAP data when read (io.bag_salvage)
    if storage:
        names = ", ".join(p.name for p in storage[:3])
        raise BagError(f"{path} holds bag storage ({names}) but no metadata.yaml: the recorder probably "
                       f"crashed before closing it; run 'ros2 bag reindex {path}' to rebuild metadata.yaml")
    candidates = _candidates(path)
    if candidates:
        listed = "\n  ".join(candidates[:_MAX_LISTED]) + ("\n  ..." if len(candidates) > _MAX_LISTED else "")
        raise InputError(f"{path} is not a bag or a frame folder, but these sub-folders look like one; "
                         f"pass one of them:\n  {listed}")
    raise InputError(f"{path} is neither {expected}; it holds {len(entries)} entries, none of them usable")
