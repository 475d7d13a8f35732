"""Instance ids that persist across the frames of a video (numpy + scipy; no torch, no ROS)."""
