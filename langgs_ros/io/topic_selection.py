"""Which topics of a recording a replay uses, which it does not, and why: said before any mapping.

A recording rarely has the default topic names: realsense-ros records depth under
``/camera/camera/aligned_depth_to_color/image_raw``, image_transport records depth only as
``.../compressedDepth``, SLAM logs a ``nav_msgs/Path`` nobody configured. The rules:

* color: ``input.color_topic`` (Image or CompressedImage), else ``<color_topic>/compressed``;
  missing, an error listing the image topics there are;
* depth: ``input.depth_topic`` (Image), else ``<depth_topic>/compressedDepth`` (image_transport).
  Missing while the recording has something that looks like depth (an Image topic with a depth
  encoding or "depth" in its name, a ``/compressedDepth`` topic), an error naming it and the
  setting, never a silent color-only run. Color-only when asked for (``depth_topic: ''``) or when
  the recording holds no depth at all, and the report says so;
* camera_info: ``input.camera_info_topic``, else an error listing the CameraInfo topics;
* what is there and unused: a ``nav_msgs/Path`` (``input.pose_graph_topic`` would re-pose the map
  with it), odometry or pose topics (``input.pose_topic``), other image topics (how to choose one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from langgs_ros.config import InputConfig
from langgs_ros.errors import InputError

__all__ = ["TopicChoice", "select_topics", "IMAGE", "COMPRESSED", "CAMERA_INFO", "TF", "POSE_TYPES", "PATH"]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF = ("tf2_msgs/msg/TFMessage", "tf/msg/tfMessage")  # ROS 2, and ROS 1 bags as TUM RGB-D recorded them
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "nav_msgs/msg/Odometry", "geometry_msgs/msg/PoseWithCovarianceStamped")
PATH = "nav_msgs/msg/Path"
_DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


@dataclass
class TopicChoice:
    """The topics a replay uses, and a short report of what it found."""

    color: str
    color_compressed: bool
    camera_info: str
    depth: str | None
    depth_compressed: bool
    instances: str | None
    pose_graph: str | None
    report: list[str] = field(default_factory=list)
    """One line per decision: used topics with their type and count, what is not used and the
    setting that would use it."""


def _describe(name: str, topics: dict[str, tuple[str, int]]) -> str:
    msgtype, count = topics[name]
    return f"{name} ({msgtype.replace('/msg/', '/')}, {count} messages)"


def select_topics(topics: dict[str, tuple[str, int]], config: InputConfig, with_instances: bool,
                  encoding_of: Callable[[str], str | None], flags: dict[str, str] | None = None) -> TopicChoice:
    """Choose the topics of a recording holding ``topics`` (name -> (type, message count)).
    ``encoding_of(topic)``: the encoding of a topic's first Image message (None if unreadable);
    ``flags``: how a user sets each setting here (``input.depth_topic`` -> ``--depth-topic``).
    Raises InputError naming candidates and the setting when a needed topic is missing."""
    how = flags or {}

    def setting(name: str) -> str:
        key = f"input.{name}"
        return f"{how[key]} or {key}" if key in how else key

    def of(*types: str) -> list[str]:
        return sorted(n for n, (t, _) in topics.items() if t in types)

    if not topics:
        raise InputError("the recording contains no topics")
    lines: list[str] = []
    # color
    color = config.color_topic
    if topics.get(color, ("",))[0] not in (IMAGE, COMPRESSED):
        alt = color.rstrip("/") + "/compressed"
        if topics.get(alt, ("",))[0] == COMPRESSED:
            color = alt
        else:
            candidates = [n for n in of(IMAGE, COMPRESSED) if not n.endswith("compressedDepth")]
            raise InputError(f"no color image topic '{config.color_topic}' (or '{alt}') in the recording; image "
                             f"topics: {', '.join(candidates) or 'none'} (choose one with {setting('color_topic')})")
    lines.append(f"color: {_describe(color, topics)}")
    # camera info
    if topics.get(config.camera_info_topic, ("",))[0] != CAMERA_INFO:
        raise InputError(f"no CameraInfo topic '{config.camera_info_topic}' in the recording; CameraInfo topics: "
                         f"{', '.join(of(CAMERA_INFO)) or 'none'} (choose one with {setting('camera_info_topic')})")
    lines.append(f"camera_info: {_describe(config.camera_info_topic, topics)}")
    # depth
    depth, depth_compressed = _depth(topics, config, color, encoding_of, setting, lines)
    # ground truth
    instances = None
    if with_instances:
        if topics.get(config.instances_topic, ("",))[0] != IMAGE:
            raise InputError(f"the oracle backend needs ground-truth instances on '{config.instances_topic}', "
                             "which the recording lacks; use --semantics none for geometry only")
        instances = config.instances_topic
        lines.append(f"ground truth (oracle): {_describe(instances, topics)}")
    elif topics.get(config.instances_topic, ("",))[0] == IMAGE:
        lines.append(f"not used: {config.instances_topic} (ground-truth instances: only --semantics oracle reads them)")
    # poses
    pose_graph = _poses(topics, config, setting, lines, of)
    # other images: which were chosen, and how to choose another
    used = {color, depth, instances}
    others = [n for n in of(IMAGE, COMPRESSED) if n not in used and n != color.rstrip("/") + "/compressed"]
    if others:
        lines.append(f"other image topics not used: {', '.join(others)} (choose with {setting('color_topic')} / "
                     f"{setting('depth_topic')})")
    return TopicChoice(color=color, color_compressed=topics[color][0] == COMPRESSED, camera_info=config.camera_info_topic,
                       depth=depth, depth_compressed=depth_compressed, instances=instances, pose_graph=pose_graph,
                       report=lines)


def _depth(topics: dict[str, tuple[str, int]], config: InputConfig, color: str,
           encoding_of: Callable[[str], str | None], setting: Callable[[str], str],
           lines: list[str]) -> tuple[str | None, bool]:
    configured = config.depth_topic
    if configured:
        kind = topics.get(configured, ("",))[0]
        if kind == IMAGE:
            lines.append(f"depth: {_describe(configured, topics)}")
            return configured, False
        compressed = configured if configured.endswith("/compressedDepth") else configured.rstrip("/") + "/compressedDepth"
        if topics.get(compressed, ("",))[0] == COMPRESSED:
            lines.append(f"depth: {_describe(compressed, topics)} (image_transport compressedDepth)")
            return compressed, True
    candidates = []
    for name, (msgtype, _) in sorted(topics.items()):
        if name in (color, config.instances_topic):
            continue
        if msgtype == COMPRESSED and name.endswith("/compressedDepth"):
            candidates.append(name)
        elif msgtype == IMAGE and ("depth" in name.lower() or encoding_of(name) in _DEPTH_ENCODINGS):
            candidates.append(name)
    if configured:
        if candidates:
            raise InputError(
                f"the depth topic '{configured}' (or '{configured.rstrip('/')}/compressedDepth') is not in the "
                f"recording, but {', '.join(candidates)} looks like depth: choose it with {setting('depth_topic')}, "
                f"or map from color alone with an empty {setting('depth_topic')} ('')")
        lines.append(f"depth: none - the recording holds no depth topic ('{configured}' absent, nothing like "
                     "depth either): color only, depth by plane sweep")
    else:
        note = f" (depth-like topics there: {', '.join(candidates)})" if candidates else ""
        lines.append(f"depth: none - input.depth_topic is empty: color only, depth by plane sweep{note}")
    return None, False


def _poses(topics: dict[str, tuple[str, int]], config: InputConfig, setting: Callable[[str], str],
           lines: list[str], of: Callable[..., list[str]]) -> str | None:
    pose_graph = None
    if config.pose_graph_topic:
        kind = topics.get(config.pose_graph_topic, ("",))[0]
        if not kind:
            lines.append(f"pose graph: '{config.pose_graph_topic}' is not in the recording: poses are not corrected")
        elif kind != PATH:
            raise InputError(f"pose graph topic '{config.pose_graph_topic}' is {kind}, not nav_msgs/Path; "
                             f"Path topics: {', '.join(of(PATH)) or 'none'}")
        else:
            pose_graph = config.pose_graph_topic
            lines.append(f"pose graph (SLAM corrections): {_describe(pose_graph, topics)}")
    for name in of(PATH):
        if name != pose_graph:
            lines.append(f"not used: {_describe(name, topics)}: set {setting('pose_graph_topic')} to {name} to re-pose "
                         "the map with it (a SLAM trajectory of the base frame)")
    if config.pose_topic:
        if topics.get(config.pose_topic, ("",))[0] not in POSE_TYPES:
            raise InputError(f"pose topic '{config.pose_topic}' is missing or not PoseStamped/Odometry; pose topics: "
                             f"{', '.join(of(*POSE_TYPES)) or 'none'}")
        lines.append(f"poses: {_describe(config.pose_topic, topics)}, chained to the camera through TF")
    else:
        tf = [n for n in ("/tf", "/tf_static") if topics.get(n, ("",))[0] in TF]
        if not tf:
            raise InputError("the recording has no camera poses: no /tf or /tf_static, and no pose_topic configured "
                             f"(pose topics there: {', '.join(of(*POSE_TYPES)) or 'none'}; set {setting('pose_topic')})")
        lines.append("poses: " + ", ".join(_describe(n, topics) for n in tf) + f", fixed frame '{config.fixed_frame}'")
        for name in of(*POSE_TYPES):
            lines.append(f"not used: {_describe(name, topics)}: poses come from TF; set {setting('pose_topic')} to use it")
    return pose_graph
