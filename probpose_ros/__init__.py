"""probpose_ros: the thin ROS 2 adapter around probpose_core (nodes arrive with the ROS issue)."""
