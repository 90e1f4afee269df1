"""The README's first command, as written, on the installed entry point (issue 14, item 1)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def readme_main_command() -> list[str]:
    """The last step of the README's first fresh-machine command (after the venv and install)."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    first = block.strip().splitlines()[0].split("#", 1)[0]
    return shlex.split(first.split("&&")[-1].strip())


def test_readme_demo_command_runs_end_to_end(tmp_path: Path) -> None:
    argv = readme_main_command()
    assert argv[0] == ".venv/bin/langgs" and argv[1] == "demo", argv
    exe = Path(sys.executable).with_name("langgs")  # this environment's .venv/bin/langgs
    assert exe.exists(), f"the console script is not installed next to {sys.executable}"
    proc = subprocess.run([str(exe), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    answer = json.loads((tmp_path / "out" / "demo" / "query.json").read_text())
    assert answer["query"] == "red mug"
    assert answer["objects"], answer["message"]
    assert answer["goal_pose"] is not None and len(answer["goal_pose"]["position"]) == 3
    png = tmp_path / "out" / "demo" / "query.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run reuses the bag and overwrites the answer in place
    again = subprocess.run([str(exe), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list((tmp_path / "out" / "demo").glob(".*tmp")), "temporary files left behind"
