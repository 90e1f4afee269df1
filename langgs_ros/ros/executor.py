"""Spinning a node until Ctrl-C or an external shutdown, then releasing it (both node entry points)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

__all__ = ["spin"]


def spin(node: Any, num_threads: int, release: Callable[[], None] | None = None) -> None:
    """Spin ``node`` on a multi-threaded executor until Ctrl-C or shutdown; then ``release()``
    (stop the node's worker threads, save what must be saved) before the executor, the node and
    rclpy go away. Worker threads still inside torch while the interpreter exits abort the process
    ("terminate called without an active exception"), so they are joined first."""
    executor = MultiThreadedExecutor(num_threads=num_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if release is not None:
            try:
                release()
            except Exception as exc:  # noqa: BLE001 - exit cleanly whatever the release hit
                node.get_logger().error(f"while stopping: {type(exc).__name__}: {exc}")
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
