"""ROS 2 integration: the thin rclpy node, message conversions, rosbag2 reading and writing."""
