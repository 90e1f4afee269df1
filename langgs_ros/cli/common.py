"""What the ``langgs`` subcommands share: logging to stderr, the config a command runs with
(file, then presets and flags), and the flags that set ``input.*`` topics and frames."""

from __future__ import annotations

import argparse
import sys

from langgs_ros.config import PipelineConfig, load_config, override

__all__ = ["log", "command_config", "INPUT_FLAGS", "add_input_flags"]

INPUT_FLAGS = {
    "input.color_topic": "--color-topic",
    "input.depth_topic": "--depth-topic",
    "input.camera_info_topic": "--camera-info-topic",
    "input.fixed_frame": "--fixed-frame",
    "input.base_frame": "--base-frame",
    "input.pose_graph_topic": "--pose-graph-topic",
    "input.pose_topic": "--pose-topic",
}
"""``input.*`` settings a replay can take from the command line (named in errors about topics)."""


def log(msg: str) -> None:
    """One line (or several) on stderr, flushed: progress and reports, never the answer."""
    print(msg, file=sys.stderr, flush=True)


def add_input_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of :data:`INPUT_FLAGS` (each overrides the config file's value)."""
    for key, flag in INPUT_FLAGS.items():
        name = key.split(".", 1)[1]
        extra = " ('' for a color-only camera)" if name == "depth_topic" else ""
        parser.add_argument(flag, dest=name, metavar="NAME", help=f"{key}{extra} (default: the config's)")


def command_config(args: argparse.Namespace) -> PipelineConfig:
    """The config file (``--config``), then the presets and flags a command line gives."""
    config = load_config(getattr(args, "config", None))
    if getattr(args, "noise", None) == "realistic":
        from langgs_ros.config import OracleNoiseConfig

        config.oracle = OracleNoiseConfig.realistic(seed=config.oracle.seed)
    if getattr(args, "fusion", None):
        config.mapping.fusion = args.fusion
    if getattr(args, "camera", None):
        from langgs_ros.io.camera_presets import apply_preset

        apply_preset(config.input, args.camera)
    overrides = {k.split(".", 1)[1]: getattr(args, k.split(".", 1)[1], None) for k in INPUT_FLAGS}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return override(config, {"input": overrides}) if overrides else config
