"""probpose_core: ProbPose (Purkrabek & Matas, CVPR 2025) as a plain Python library.

Knows nothing of ROS. See README.md and ../shared/design/ARCHITECTURE.md for the layout.
"""
__version__ = "0.1.0"
