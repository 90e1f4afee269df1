"""``python -m langgs_ros`` runs the ``langgs`` CLI."""

from langgs_ros.cli import entrypoint

entrypoint()
