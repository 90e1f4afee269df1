"""Configuration loading."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import REPO
from langgs_ros.config import PipelineConfig, config_to_dict, load_config
from langgs_ros.errors import ConfigError


def test_bundled_default_yaml_matches_the_code_defaults():
    loaded = config_to_dict(load_config(REPO / "config" / "default.yaml"))
    assert loaded == config_to_dict(PipelineConfig())


def test_overrides_types_and_unknown_keys(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"mapping": {"pixel_stride": 3}, "query": {"standoff": 1}}')
    cfg = load_config(f)
    assert cfg.mapping.pixel_stride == 3 and cfg.query.standoff == 1.0
    with pytest.raises(ConfigError, match="must be int"):
        load_config(overrides={"mapping": {"pixel_stride": "2"}})
    with pytest.raises(ConfigError, match="unknown key 'query.radius'"):
        load_config(overrides={"query": {"radius": 1.0}})
    (tmp_path / "bad.yaml").write_text("mapping: [1, 2")
    with pytest.raises(ConfigError, match="not valid"):
        load_config(tmp_path / "bad.yaml")
    assert dataclasses.is_dataclass(cfg)
