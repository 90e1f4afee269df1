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


def test_every_numeric_setting_has_a_range_that_holds_its_default():
    from langgs_ros.config import RANGES

    config = PipelineConfig()
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        for fld in dataclasses.fields(values):
            value = getattr(values, fld.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lo, hi = RANGES[section.name][fld.name]
                assert lo <= value <= hi, f"{section.name}.{fld.name}"


@pytest.mark.parametrize("section, key, value", [
    ("mapping", "pixel_stride", 0), ("mapping", "ram_budget_mb", -5.0), ("query", "grid_resolution_m", 0.0),
    ("query", "temperature", float("nan")), ("input", "max_depth_m", float("inf")), ("refine", "scale", 2.0),
    ("models", "points_per_side", 0), ("oracle", "label_swap_prob", 1.5),
])
def test_out_of_range_values_name_their_field(tmp_path, section, key, value):
    with pytest.raises(ConfigError, match=f"'{section}.{key}' must be in"):
        load_config(overrides={section: {key: value}})
    f = tmp_path / "c.yaml"
    f.write_text(f"{section}:\n  {key}: {value if value == value else '.nan'}\n".replace("inf", ".inf"))
    with pytest.raises(ConfigError, match=f"{section}.{key}"):
        load_config(f)


def test_a_removed_setting_says_what_replaced_it(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("mapping:\n  capacity: 3000000\n")  # a config file written for an earlier version
    with pytest.raises(ConfigError, match="'mapping.capacity' was removed.*ram_budget_mb"):
        load_config(f)


def test_contradicting_pairs_are_refused():
    with pytest.raises(ConfigError, match="min_depth_m"):
        load_config(overrides={"input": {"min_depth_m": 5.0, "max_depth_m": 2.0}})


@pytest.mark.parametrize("topic", ["", "goal pose", "/goal_pose/", "/1goal"])
def test_a_navigate_topic_that_is_no_topic_name_is_refused(topic):
    with pytest.raises(ConfigError, match="navigate_topic"):
        load_config(overrides={"query": {"navigate_topic": topic}})
    assert load_config(overrides={"query": {"navigate_topic": "/robot1/goal_pose"}}).query.navigate_topic


def test_cli_reports_a_bad_range_before_any_work(small_bag, tmp_path):
    from test_cli_bad_input import assert_clean_failure, run_cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text("query:\n  grid_resolution_m: 0\n")  # used to hang the goal planner forever
    proc = run_cli("replay", small_bag(), "--out", tmp_path / "m", "--semantics", "none", "--config", cfg)
    assert_clean_failure(proc, "query.grid_resolution_m")
    assert not (tmp_path / "m").exists()
