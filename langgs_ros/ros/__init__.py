"""ROS 2 layer: message construction and conversion (plain Python over message fields), the
rclpy-free mapping runtime the nodes wrap, and the rclpy nodes themselves.

Only ``mapping_node`` imports rclpy; everything else here is tested without ROS 2.
"""
