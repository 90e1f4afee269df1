"""Spinning a node until Ctrl-C or an external shutdown, then releasing it (both node entry points)."""

from __future__ import annotations

from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

__all__ = ["spin"]


def spin(node: Any, num_threads: int) -> None:
    """Spin ``node`` on a multi-threaded executor; destroy it and shut rclpy down afterwards."""
    executor = MultiThreadedExecutor(num_threads=num_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
