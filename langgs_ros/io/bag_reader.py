"""Frames from a ROS 2 bag (mcap or sqlite3) via ``rosbags``, without ROS.

Color images are paired with depth (and ground-truth instances) by header stamp within
``sync_tolerance_s``; intrinsics come from CameraInfo; the camera pose is the TF chain from the
fixed frame to the image's ``header.frame_id`` interpolated at the image stamp (or a PoseStamped /
Odometry topic chained through TF). A frame that cannot be paired is counted with its reason and
never used with a wrong pose.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from langgs_ros.config import InputConfig
from langgs_ros.errors import BagError, InputError
from langgs_ros.io.bag_salvage import SalvagedBag, needs_salvage, salvage_mcap_bag
from langgs_ros.io.frame_source import SourceStats
from langgs_ros.io.frame_builder import build_frame
from langgs_ros.io.image_codec import CameraModel, camera_model_from_info, stamp_to_ns
from langgs_ros.io.input_paths import classify_input
from langgs_ros.io.mcap_check import McapReport, check_mcap
from langgs_ros.io.path_message import pose_graph_from_path
from langgs_ros.io.stamp_check import StampCheck
from langgs_ros.io.tf_buffer import POSE_CHILD, TransformBuffer, TransformLookupError
from langgs_ros.io.topic_selection import select_topics
from langgs_ros.mapping.pose_correction import PoseGraph
from langgs_ros.types import Frame

__all__ = ["BagFrameReader"]

_PAIR_WINDOW_NS = 1_000_000_000  # how long (log time) a color image waits for its depth


def _open_reader(path: Path) -> tuple[Any, SalvagedBag | None]:
    """(an open rosbags AnyReader, the salvaged copy it reads if the bag ended badly)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    kind = classify_input(path)  # raises a clear error for anything but a bag
    if kind != "bag":
        raise BagError(f"{path} is a frame folder, not a bag")
    salvaged = None
    if path.suffix == ".bag":  # ROS 1: rosbags reads it, with the message definitions it carries
        target = path
    else:
        target = path.parent if path.is_file() else path
        if needs_salvage(target):
            try:
                salvaged = salvage_mcap_bag(target)
            except Exception as exc:  # noqa: BLE001 - rosbags' scan raises many types for garbage
                raise BagError(_open_failure(target, exc)) from None
    try:
        reader = AnyReader([salvaged.path if salvaged else target], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises many types for corrupt input
        if salvaged is not None:
            salvaged.cleanup()
        raise BagError(_open_failure(target, exc)) from None
    return reader, salvaged


def _open_failure(path: Path, exc: Exception) -> str:
    """A sentence a person understands for a bag that rosbags cannot open."""
    storage = sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    detail = str(exc) or type(exc).__name__
    for file in storage:
        size = file.stat().st_size
        if file.suffix == ".mcap":
            try:
                report = check_mcap(file)
            except (ValueError, OSError) as why:
                return (f"cannot open bag {path}: {file.name} is not a readable MCAP file ({why}; {size} bytes); "
                        "it may be cut short or not a bag at all")
            if report.truncated_at is not None:
                return (f"cannot open bag {path}: {file.name} is not a readable MCAP file: it is cut short at byte "
                        f"{report.truncated_at} of {size} (an interrupted recording or copy)")
        elif size < 100:
            return f"cannot open bag {path}: {file.name} is {size} bytes, too short for an SQLite bag"
    sqlite = any(file.suffix == ".db3" for file in storage)
    if sqlite and ("metadata" in detail.lower() or "yaml" in detail.lower()):
        return (f"cannot open bag {path}: its metadata.yaml is unreadable or does not match the storage files "
                f"({detail}); 'ros2 bag reindex {path}' rebuilds it")
    return f"cannot open bag {path}: {detail}"


class BagFrameReader:
    """Iterate posed, undistorted frames of a bag; ``stats`` says what was skipped and why."""

    def __init__(self, path: str | Path, config: InputConfig, *, with_instances: bool = False,
                 flags: dict[str, str] | None = None) -> None:
        """``flags``: the command-line flag of each ``input.*`` setting, named in errors."""
        self.path = Path(path)
        self.config = config
        self.with_instances = with_instances
        self.flags = flags or {}
        self.report: list[str] = []
        """What the replay uses and what it does not (:mod:`langgs_ros.io.topic_selection`)."""
        self.stats = SourceStats()
        self.labels: dict[int, str] = {}
        self.corrupt_messages: Counter[str] = Counter()
        """Messages per topic skipped because they do not deserialise (corrupt bytes)."""
        self._pose_graph: PoseGraph | None = None
        self._reader, self._salvaged = _open_reader(self.path)
        if self._salvaged is not None:
            self.stats.notes.extend(self._salvaged.notes)
            self.report.extend(f"salvaged: {note}" for note in self._salvaged.notes)
        try:
            self.integrity = self._check_integrity()
            self._resolve_topics()
        except BaseException:
            self.close()
            raise

    def _check_integrity(self) -> list[McapReport]:
        """Chunk CRCs of every MCAP file of the bag (SQLite bags carry no checksums)."""
        reports = []
        for file in getattr(self._reader, "paths", [self.path]):
            for mcap in (sorted(Path(file).glob("*.mcap")) if Path(file).is_dir() else []):
                try:
                    reports.append(check_mcap(mcap))
                except (ValueError, OSError) as exc:
                    raise BagError(f"bag file {mcap} is not a readable MCAP file: {exc}") from None
        for report in reports:
            if report.bad_chunks:
                self.stats.notes.append(f"{len(report.bad_chunks)} of {report.chunks} MCAP chunks failed their "
                                        "integrity check; messages logged in their time span are skipped")
            if report.truncated_at is not None:
                self.stats.notes.append(f"an MCAP file is cut short at byte {report.truncated_at}")
        return reports

    # -- topics -----------------------------------------------------------------------------
    def _topic_type(self, name: str) -> str | None:
        info = self._reader.topics.get(name)
        return info.msgtype if info is not None else None

    def _first_encoding(self, topic: str) -> str | None:
        """Encoding of the first Image message of ``topic`` (None if it cannot be read)."""
        conns = [c for c in self._reader.connections if c.topic == topic]
        try:
            for conn, _, raw in self._reader.messages(connections=conns):
                return str(self._reader.deserialize(raw, conn.msgtype).encoding)
        except Exception:  # noqa: BLE001 - an unreadable topic is simply not a candidate
            return None
        return None

    def _resolve_topics(self) -> None:
        topics = {name: (info.msgtype, int(info.msgcount)) for name, info in self._reader.topics.items()}
        choice = select_topics(topics, self.config, self.with_instances, self._first_encoding, self.flags)
        self.color_topic, self._color_compressed = choice.color, choice.color_compressed
        self.depth_topic, self.instances_topic = choice.depth, choice.instances
        self.pose_graph_topic = choice.pose_graph
        self.report.extend(choice.report)

    @property
    def has_depth(self) -> bool:
        """Whether the recording holds depth the replay uses."""
        return self.depth_topic is not None

    # -- pass 1: small messages -------------------------------------------------------------
    def _messages(self, topics: list[str], count_color: bool = False) -> Iterator[tuple[str, int, Any]]:
        conns = [c for c in self._reader.connections if c.topic in topics]
        if not conns:
            return
        # read around chunks that failed their CRC (rosbags would stop at the first one)
        windows = McapReport(bad_chunks=[c for r in self.integrity for c in r.bad_chunks]).good_windows()
        try:
            for start, stop in windows:
                for conn, logtime, raw in self._reader.messages(connections=conns, start=start, stop=stop):
                    try:
                        msg = self._reader.deserialize(raw, conn.msgtype)
                    except Exception:  # noqa: BLE001 - a garbled message is skipped, the bag goes on
                        self.corrupt_messages[conn.topic] += 1
                        if count_color and conn.topic == self.color_topic:
                            self.stats.frames_seen += 1
                            self.stats.skip("message does not deserialise (corrupt bytes)")
                        continue
                    yield conn.topic, logtime, msg
        except (BagError, InputError):
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt chunks surface as many types
            raise BagError(f"bag {self.path} is corrupt or truncated: {exc or type(exc).__name__}") from None

    def inspect(self) -> list[str]:
        """Read the small messages (TF, CameraInfo, labels) and the first color image's header, and
        add to :attr:`report` whether TF connects the fixed frame to the camera; returns the report."""
        self._read_static_data()
        first = next((msg for _, _, msg in self._messages([self.color_topic])), None)
        if first is not None:
            frame_id = str(first.header.frame_id).lstrip("/")
            source = POSE_CHILD if self.config.pose_topic and getattr(self, "_pose_child", None) == POSE_CHILD else frame_id
            stamp = stamp_to_ns(first.header.stamp)
            try:
                self.tf.lookup(self.config.fixed_frame, source, stamp)
                self.report.append(f"TF: '{self.config.fixed_frame}' -> '{frame_id}' (the images' frame) found")
            except TransformLookupError as exc:
                known = ", ".join(sorted(self.tf.frames)[:12]) or "none"
                self.report.append(f"TF: no pose of the first image ('{frame_id}' in '{self.config.fixed_frame}' at "
                                   f"{stamp / 1e9:.3f} s): {exc}; frames in TF: {known} (set input.fixed_frame)")
        return self.report

    def _read_static_data(self) -> None:
        if getattr(self, "tf", None) is not None:
            return  # read by inspect() already
        cfg = self.config
        self.tf = TransformBuffer(tolerance_ns=int(cfg.tf_tolerance_s * 1e9))
        self.camera_infos: list[tuple[int, CameraModel | InputError]] = []
        topics = ["/tf_static", cfg.camera_info_topic, cfg.labels_topic]
        topics.append(cfg.pose_topic if cfg.pose_topic else "/tf")
        for topic, _, msg in self._messages(topics):
            if topic == "/tf_static":
                self.tf.add_message(msg, static=True)
            elif topic == "/tf":
                self.tf.add_message(msg)
            elif topic == cfg.camera_info_topic:
                try:
                    model: CameraModel | InputError = camera_model_from_info(msg)
                except InputError as exc:
                    model = exc
                self.camera_infos.append((stamp_to_ns(msg.header.stamp), model))
            elif topic == cfg.labels_topic:
                self._parse_labels(msg)
            elif topic == cfg.pose_topic:
                self._add_pose(msg)
        self.camera_infos.sort(key=lambda x: x[0])
        self._info_stamps = np.array([s for s, _ in self.camera_infos], dtype=np.int64)

    def _parse_labels(self, msg: Any) -> None:
        try:
            labels = json.loads(msg.data)
            self.labels.update({int(k): str(v) for k, v in labels.items()})
        except (ValueError, AttributeError, TypeError) as exc:
            raise InputError(f"labels on '{self.config.labels_topic}' are not JSON {{id: label}}: {exc}") from None

    def _add_pose(self, msg: Any) -> None:
        self._pose_child = self.tf.add_pose_message(msg, self.config.pose_child_frame)

    # -- pass 2: images -----------------------------------------------------------------------
    def _camera_model(self, stamp_ns: int) -> CameraModel | str:
        if not self.camera_infos:
            return f"no CameraInfo on {self.config.camera_info_topic}"
        i = int(np.searchsorted(self._info_stamps, stamp_ns))
        candidates = [j for j in (i - 1, i) if 0 <= j < len(self.camera_infos)]
        j = min(candidates, key=lambda k: abs(int(self._info_stamps[k]) - stamp_ns))
        tol = self.config.camera_info_tolerance_s
        if tol >= 0 and abs(int(self._info_stamps[j]) - stamp_ns) > tol * 1e9:
            return "no CameraInfo within camera_info_tolerance_s"
        model = self.camera_infos[j][1]
        return f"bad CameraInfo: {model}" if isinstance(model, InputError) else model

    def _pose(self, frame_id: str, stamp_ns: int) -> np.ndarray | str:
        source = frame_id
        if self.config.pose_topic and getattr(self, "_pose_child", None) == POSE_CHILD:
            source = POSE_CHILD  # PoseStamped of the camera itself
        try:
            T = self.tf.lookup(self.config.fixed_frame, source, stamp_ns)
        except TransformLookupError as exc:
            return f"no pose: {exc}"
        if not np.all(np.isfinite(T)):
            return "no pose: non-finite transform"
        return T

    def _build_frame(self, color_msg: Any, depth_msg: Any | None, inst_msg: Any | None) -> Frame | str:
        stamp = stamp_to_ns(color_msg.header.stamp)
        frame_id = str(color_msg.header.frame_id).lstrip("/")
        model = self._camera_model(stamp)
        if isinstance(model, str):
            return model
        pose = self._pose(frame_id, stamp)
        if isinstance(pose, str):
            return pose
        return build_frame(color_msg, depth_msg, inst_msg, model, pose, self.config, self.labels,
                           self._optional_transform(frame_id, self.config.base_frame, stamp),
                           self._optional_transform(self.config.fixed_frame, self.config.odom_frame, stamp))

    def _optional_transform(self, target: str, source: str, stamp_ns: int) -> np.ndarray | None:
        """T_target_source at the stamp; None if ``source`` is unset (an optional frame of
        ``input``) or TF does not connect it."""
        if not source:
            return None
        try:
            return self.tf.lookup(target, source, stamp_ns)
        except TransformLookupError:
            return None

    def _add_pose_graph(self, msg: Any, logtime: int) -> None:
        try:
            self._pose_graph = pose_graph_from_path(msg, self.config.fixed_frame)
        except InputError as exc:
            self.stats.notes.append(f"pose graph logged at {logtime / 1e9:.3f} s skipped: {exc}")

    def take_pose_graph(self) -> PoseGraph | None:
        """The newest pose graph read since the last call (``input.pose_graph_topic``), or None.
        Frames are yielded as the bag is read, so a graph is taken where it was logged."""
        graph, self._pose_graph = self._pose_graph, None
        return graph

    def frames(self) -> Iterator[Frame]:
        """Yield usable frames in stamp order; skipped ones are counted in ``stats``; pose graphs
        read meanwhile wait in :meth:`take_pose_graph`."""
        self._read_static_data()
        stamps = StampCheck()
        tol = int(self.config.sync_tolerance_s * 1e9)
        partners = [t for t in (self.depth_topic, self.instances_topic) if t]
        buffers: dict[str, deque[tuple[int, int, Any]]] = {t: deque() for t in partners}
        pending: deque[tuple[int, int, Any]] = deque()  # (logtime, stamp, color msg)

        def match(topic: str, stamp: int) -> Any | None:
            best = min(buffers[topic], key=lambda e: abs(e[1] - stamp), default=None)
            return best[2] if best is not None and abs(best[1] - stamp) <= tol else None

        def complete(entry: tuple[int, int, Any], final: bool) -> Frame | str | None:
            _, stamp, msg = entry
            found = {t: match(t, stamp) for t in partners}
            missing = [t for t, m in found.items() if m is None]
            if missing and not final:
                return None
            if missing:
                return f"no {'/'.join(missing)} message within {self.config.sync_tolerance_s} s"
            return self._build_frame(msg, found.get(self.depth_topic), found.get(self.instances_topic))

        def flush(now: int, final: bool) -> Iterator[Frame]:
            while pending:
                entry = pending[0]
                result = complete(entry, final or now - entry[0] > _PAIR_WINDOW_NS)
                if result is None:
                    return
                pending.popleft()
                if isinstance(result, str):
                    self.stats.skip(result)
                else:
                    self.stats.frames_used += 1
                    yield result

        extra = [self.pose_graph_topic] if self.pose_graph_topic else []
        for topic, logtime, msg in self._messages([self.color_topic, *partners, *extra], count_color=True):
            if topic == self.pose_graph_topic:
                self._add_pose_graph(msg, logtime)
            elif topic == self.color_topic:
                self.stats.frames_seen += 1
                stamp = stamp_to_ns(msg.header.stamp)
                problem = stamps.add(stamp)
                if problem:  # posed like the image before it: it cannot be placed apart from it
                    self.stats.skip(problem)
                    continue
                pending.append((logtime, stamp, msg))
            else:
                buf = buffers[topic]
                buf.append((logtime, stamp_to_ns(msg.header.stamp), msg))
                while buf and logtime - buf[0][0] > 2 * _PAIR_WINDOW_NS:
                    buf.popleft()
            yield from flush(logtime, final=False)
        yield from flush(0, final=True)
        self.stats.notes.extend(stamps.notes())
        stamps.raise_if_all_equal()
        others = {t: n for t, n in self.corrupt_messages.items() if t != self.color_topic}
        if others:
            self.stats.notes.append("corrupt messages skipped: " + ", ".join(f"{n} on {t}" for t, n in others.items()))

    def close(self) -> None:
        """Close the bag (and remove a salvaged copy)."""
        self._reader.close()
        if self._salvaged is not None:
            self._salvaged.cleanup()

    def __enter__(self) -> BagFrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
