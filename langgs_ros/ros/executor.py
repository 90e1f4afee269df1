"""Spinning a node until Ctrl-C or an external shutdown, then releasing it (both node entry points)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

__all__ = ["spin"]


def spin(node: Any, num_threads: int, release: Callable[[], bool] | None = None) -> None:
    """Spin ``node`` on a multi-threaded executor until Ctrl-C or shutdown, then ``release()``
    (stop the node's worker threads, save what must be saved; True when every worker stopped)
    before the executor, the node and rclpy go away.

    A Ctrl-C in a terminal reaches the node twice (the terminal's and launch's SIGINT), and launch
    follows with SIGTERM: while releasing, further SIGINT/SIGTERM are ignored, so the workers are
    joined instead of abandoned inside torch, which aborts the process at exit ("terminate called
    without an active exception", exit code -6). A worker that cannot stop (a model call of
    minutes) is left to the operating system with ``os._exit(0)`` after the release.
    """
    executor = MultiThreadedExecutor(num_threads=num_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopped = True
        if release is not None:
            try:
                stopped = bool(release())
            except Exception as exc:  # noqa: BLE001 - exit cleanly whatever the release hit
                node.get_logger().error(f"while stopping: {type(exc).__name__}: {exc}")
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        if not stopped:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
