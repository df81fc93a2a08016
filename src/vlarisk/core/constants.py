"""Names shared by every stage: the action dimensions a risk vector is indexed by."""

ACTION_DIMENSIONS = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
NUM_DIMENSIONS = len(ACTION_DIMENSIONS)
