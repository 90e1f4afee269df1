"""The msg/ and srv/ files parse (as rosidl would) and their messages survive a CDR round trip."""

from __future__ import annotations

import numpy as np

from langgs_ros.ros.interfaces import typestore_with_interfaces
from langgs_ros.ros.messages import RosbagsMessages


def test_interfaces_parse_and_round_trip_through_cdr():
    store = typestore_with_interfaces()
    f = RosbagsMessages(store)
    assert [name for name, _ in store.fielddefs["langgs_ros/srv/Query_Request"][1]] == ["text", "threshold",
                                                                                         "max_objects", "max_age_s",
                                                                                         "navigate"]
    assert [name for name, _ in store.fielddefs["langgs_ros/srv/Query_Response"][1]] == [
        "success", "message", "objects", "has_goal", "goal_pose", "goal_object", "path_length_m"]
    mask = f.make("langgs_ros/msg/ObjectMask", label="mug", score=0.9,
                  centroid=f.make("geometry_msgs/msg/Point", x=1.0, y=2.0, z=3.0))
    resp = f.make("langgs_ros/srv/Query_Response", success=True, message="ok", objects=[mask, mask], has_goal=True,
                  goal_object=1, path_length_m=2.5)
    back = store.deserialize_cdr(store.serialize_cdr(resp, resp.__msgtype__), resp.__msgtype__)
    assert back.success and back.message == "ok" and len(back.objects) == 2
    assert back.goal_object == 1 and back.path_length_m == 2.5
    assert back.objects[1].label == "mug" and back.objects[1].centroid.z == 3.0
    frame = f.make("langgs_ros/msg/SemanticFrame", embedding_dim=4, segment_counts=np.array([1, 2, 1], np.uint32),
                   embeddings=np.arange(16, dtype=np.float32))
    back = store.deserialize_cdr(store.serialize_cdr(frame, frame.__msgtype__), frame.__msgtype__)
    assert back.embeddings.tolist() == list(range(16)) and back.segment_counts.tolist() == [1, 2, 1]
