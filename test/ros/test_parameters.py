"""Every node parameter has a description; config/mapping_node.yaml matches the code defaults."""

from __future__ import annotations

import yaml

from conftest import REPO
from langgs_ros.ros.parameters import config_from_parameters, parameter_table


def test_parameters_are_described_and_the_yaml_matches_the_defaults():
    table = parameter_table()
    assert all(doc for _, _, doc in table), [n for n, _, d in table if not d]
    values = yaml.safe_load((REPO / "config" / "mapping_node.yaml").read_text())["/**"]["ros__parameters"]
    assert values == {name: default for name, default, _ in table}
    config = config_from_parameters(values)
    assert config.input.fixed_frame == "map" and config.mapping.fusion == "codebook"
