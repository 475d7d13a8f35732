"""rosbag2 without a ROS install (through ``rosbags``): one reader/writer layer (``io``), the node's offline twin
(``offline``: `panopticdepth bag`), extraction of training sets (``extraction``: `panopticdepth extract`), the
synthetic sample recordings (``synthetic``: `panopticdepth synth --bag`) and a tf buffer for recorded /tf.

Every failure a user can cause raises :class:`errors.BagError` naming the bag, topic or option.
"""
