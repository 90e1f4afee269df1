"""ROS parameters of the mapping node: one per configuration field, with its docstring as the
description, plus the node's own settings. rclpy-free, so CI checks the table."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

from langgs_ros.config import (InputConfig, MappingConfig, ModelsConfig, PipelineConfig, QueryConfig, RefineConfig,
                               SemanticsConfig, field_range, load_config)
from langgs_ros.errors import ConfigError
from langgs_ros.io.camera_presets import PRESETS

__all__ = ["NODE_PARAMETERS", "NODE_RANGES", "parameter_table", "parameter_range", "check_node_parameters",
           "config_from_parameters", "config_from_node", "semantics_parameter_table"]

SECTIONS: dict[str, type] = {"input": InputConfig, "mapping": MappingConfig, "query": QueryConfig,
                             "models": ModelsConfig, "refine": RefineConfig, "semantics": SemanticsConfig}

NODE_PARAMETERS: dict[str, tuple[Any, str]] = {
    "semantics": ("clip", "2D semantics backend: clip (SAM/SAM2 + OpenCLIP), oracle (ground-truth "
                          "instances, synthetic data only) or none (geometry only)"),
    "camera": ("generic", "Camera driver whose default topics input.color_topic, input.depth_topic and "
                          "input.camera_info_topic take where they are 'auto': realsense, oakd, zed or generic"),
    "map_path": ("", "Directory of map.npz: loaded at configure if present, written by ~/save_map"),
    "save_on_shutdown": (False, "Save the map to map_path when the node is cleaned up or shut down"),
    "queue_size": (2, "Frames waiting for the mapping worker; when full the oldest is dropped"),
    "tf_timeout_s": (0.5, "How long a frame may wait for its camera pose in TF (or on the pose topic), seconds; "
                          "waiting frames do not block newer ones"),
    "map_publish_rate_hz": (0.5, "Rate of the map PointCloud2 on ~/map_cloud (0 = off)"),
    "map_publish_max_points": (200000, "Most Gaussians in ~/map_cloud (evenly subsampled)"),
    "status_rate_hz": (1.0, "Rate of the JSON status on ~/status"),
    "publish_occupancy_grid": (False, "Publish the mapped obstacles as nav_msgs/OccupancyGrid on ~/occupancy"),
    "default_threshold": (0.0, "Least relevancy (0..1) of a mask Gaussian when a request gives 0; 0 = config"),
    "default_max_objects": (50, "Objects per answer when a request gives 0 (a building may hold one per room)"),
    "answer_max_points": (5000, "Most points per object in answers (a sample spread evenly over its voxels; "
                                "the query reads no more)"),
    "sync_slop_s": (0.02, "Approximate-time pairing window of color and depth, seconds"),
    "input_timeout_s": (5.0, "/diagnostics turns WARN when nothing arrives on an input topic for this long, s"),
    "pose_topic_type": ("odometry", "Message type on input.pose_topic: odometry (nav_msgs/Odometry) or pose "
                                    "(geometry_msgs/PoseStamped); unused when input.pose_topic is empty"),
    "split": (False, "Take keyframes with their segments from the semantics node (SemanticFrame) instead of "
                     "running the 2D backend here; only its text encoder is loaded"),
    "semantic_frames_topic": ("/langgs/semantic_frames", "SemanticFrame topic of the split semantics node"),
}

NODE_RANGES: dict[str, tuple[float, float]] = {
    "queue_size": (1, 100), "tf_timeout_s": (0.0, 10.0), "map_publish_rate_hz": (0.0, 100.0),
    "map_publish_max_points": (1, 100_000_000), "status_rate_hz": (0.01, 100.0), "default_threshold": (0.0, 0.999),
    "default_max_objects": (0, 1000), "answer_max_points": (1, 10_000_000), "sync_slop_s": (0.0, 10.0),
    "input_timeout_s": (0.1, 3600.0),
}
"""Valid range (inclusive) of each numeric node setting; config fields use :data:`config.RANGES`."""
_CHOICES: dict[str, tuple[str, ...]] = {"semantics": ("clip", "oracle", "none"), "pose_topic_type": ("odometry", "pose"),
                                        "camera": tuple(PRESETS)}
AUTO = "auto"
"""Value of a topic parameter that takes the ``camera`` preset's topic."""


def parameter_range(name: str) -> tuple[float, float] | None:
    """(least, greatest) valid value of a numeric node parameter, None for others."""
    return NODE_RANGES.get(name) or field_range(name)


def check_node_parameters(values: dict[str, Any]) -> None:
    """Raise ConfigError naming the first node setting (no ``section.``) outside its range or choices."""
    for name, value in values.items():
        bounds = NODE_RANGES.get(name)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ConfigError(f"parameter '{name}' must be in [{bounds[0]:g}, {bounds[1]:g}], got {value!r}")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ConfigError(f"parameter '{name}' must be one of {', '.join(_CHOICES[name])}, got {value!r}")


@cache
def _docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal after each field) of a config dataclass."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def parameter_table(config: PipelineConfig | None = None) -> list[tuple[str, Any, str]]:
    """(name, default, description) of every node parameter; config fields as ``section.field``."""
    config = config or PipelineConfig()
    rows = [(name, default, doc) for name, (default, doc) in NODE_PARAMETERS.items()]
    for section, cls in SECTIONS.items():
        values = getattr(config, section)
        docs = _docs(cls)
        for fld in dataclasses.fields(cls):
            rows.append((f"{section}.{fld.name}", getattr(values, fld.name), docs.get(fld.name, "")))
    return rows


_SEMANTICS_NODE = ("semantics", "camera", "queue_size", "tf_timeout_s", "sync_slop_s", "pose_topic_type",
                   "semantic_frames_topic", "status_rate_hz")


def semantics_parameter_table() -> list[tuple[str, Any, str]]:
    """Parameters of semantics_node: its own settings, the input and models sections and the
    keyframe rule of the mapping section (the rows of :func:`parameter_table` it uses)."""
    prefixes = ("input.", "models.", "mapping.keyframe_", "mapping.association_iou")
    return [row for row in parameter_table() if row[0] in _SEMANTICS_NODE or row[0].startswith(prefixes)]


def config_from_parameters(values: dict[str, Any]) -> PipelineConfig:
    """PipelineConfig from ``section.field`` parameter values (topics that are 'auto' take the
    ``camera`` preset's); raises ConfigError on bad values."""
    nested: dict[str, dict[str, Any]] = {}
    preset = PRESETS.get(str(values.get("camera", "generic")))
    if preset is None:
        raise ConfigError(f"parameter 'camera' must be one of {', '.join(PRESETS)}, got {values.get('camera')!r}")
    for name, value in values.items():
        section, _, key = name.partition(".")
        if section in SECTIONS and key:
            if section == "input" and value == AUTO and hasattr(preset, key):
                value = getattr(preset, key)
            nested.setdefault(section, {})[key] = list(value) if isinstance(value, (list, tuple)) else value
    return load_config(None, nested)


def config_from_node(get: Callable[[str], Any], table: list[tuple[str, Any, str]]) -> PipelineConfig:
    """PipelineConfig of a node whose parameter ``name`` has the value ``get(name)``: the
    ``section.field`` rows of ``table`` and the ``camera`` preset their 'auto' topics take."""
    return config_from_parameters({n: get(n) for n, _, _ in table if "." in n or n == "camera"})


def declare_parameters(node: Any, table: list[tuple[str, Any, str]]) -> None:
    """Declare every row of ``table`` on an rclpy ``node``, with its description and, for numbers,
    its valid range (rcl_interfaces IntegerRange / FloatingPointRange), so ``ros2 param set``
    refuses values outside it and ``ros2 param describe`` shows it."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    for name, default, description in table:
        descriptor = ParameterDescriptor(description=description)
        bounds = parameter_range(name)
        if bounds is not None and isinstance(default, bool):
            bounds = None
        if bounds is not None and isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
        elif bounds is not None and isinstance(default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]),
                                                                  to_value=float(bounds[1]), step=0.0)]
        node.declare_parameter(name, default, descriptor)
