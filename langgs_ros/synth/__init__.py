"""Synthetic room scene, ray-cast into color/depth/instance images and written as a ROS 2 bag."""
