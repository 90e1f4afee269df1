"""Every node parameter has a description; config/mapping_node.yaml matches the code defaults."""

from __future__ import annotations

import yaml

from conftest import REPO
from langgs_ros.io.camera_presets import PRESETS
from langgs_ros.ros.parameters import (config_from_node, config_from_parameters, parameter_table,
                                      semantics_parameter_table)


def test_parameters_are_described_and_the_yaml_matches_the_defaults():
    table = parameter_table()
    assert all(doc for _, _, doc in table), [n for n, _, d in table if not d]
    values = yaml.safe_load((REPO / "config" / "mapping_node.yaml").read_text())["/**"]["ros__parameters"]
    assert values == {name: default for name, default, _ in table}
    config = config_from_parameters(values)
    assert config.input.fixed_frame == "map" and config.mapping.fusion == "codebook"


def test_rviz_config_shows_topics_the_nodes_publish():
    rviz = yaml.safe_load((REPO / "config" / "langgs.rviz").read_text())["Visualization Manager"]
    assert rviz["Global Options"]["Fixed Frame"] == "map"
    topics = [d["Topic"]["Value"] for d in rviz["Displays"] if "Topic" in d]
    source = (REPO / "langgs_ros" / "ros" / "mapping_node.py").read_text()
    assert len(topics) == 6
    for topic in topics:
        assert f'"{topic.replace("/mapping_node/", "~/")}"' in source, topic


def test_launch_files_compile_and_declare_their_arguments():
    import ast

    source = (REPO / "launch" / "mapping.launch.py").read_text()
    tree = ast.parse(source)
    compile(tree, "mapping.launch.py", "exec")
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {"split", "start_semantics", "rviz", "depth_topic", "semantics_node", "mapping_node"} <= strings
    compile((REPO / "launch" / "replay.launch.py").read_text(), "replay.launch.py", "exec")
    assert (REPO / "scripts" / "semantics_node").stat().st_mode & 0o111
    assert "scripts/semantics_node" in (REPO / "CMakeLists.txt").read_text()


def test_semantics_node_parameters_are_a_described_subset():
    from langgs_ros.ros.parameters import semantics_parameter_table

    names = {name for name, _, _ in semantics_parameter_table()}
    assert {"semantics", "semantic_frames_topic", "pose_topic_type", "mapping.keyframe_translation_m",
            "models.clip_model", "input.color_topic"} <= names
    assert not names & {"map_path", "split", "mapping.ram_budget_mb", "refine.window"}


def test_node_parameters_have_ranges_and_are_checked():
    import pytest

    from langgs_ros.errors import ConfigError
    from langgs_ros.ros.parameters import check_node_parameters, parameter_range

    for name, default, _ in parameter_table():
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            lo, hi = parameter_range(name)
            assert lo <= default <= hi, name
    check_node_parameters({name: default for name, default, _ in parameter_table() if "." not in name})
    with pytest.raises(ConfigError, match="queue_size"):
        check_node_parameters({"queue_size": 0})
    with pytest.raises(ConfigError, match="semantics"):
        check_node_parameters({"semantics": "magic"})
    with pytest.raises(ConfigError, match="mapping.pixel_stride"):
        config_from_parameters({"mapping.pixel_stride": 0})


def test_camera_parameter_sets_the_auto_topics_of_both_nodes():
    """``camera:=realsense`` with the topics left 'auto' (as mapping.launch.py passes them) gives the
    driver's topics; a topic set explicitly wins. Both nodes build their config this way."""
    for table in (parameter_table(), semantics_parameter_table()):
        values = {name: default for name, default, _ in table}
        values.update({"camera": "realsense", "input.color_topic": "auto", "input.depth_topic": "auto",
                       "input.camera_info_topic": "/my/info"})
        config = config_from_node(values.__getitem__, table)
        assert config.input.color_topic == PRESETS["realsense"].color_topic
        assert config.input.depth_topic == PRESETS["realsense"].depth_topic
        assert config.input.camera_info_topic == "/my/info"
