"""What a real arm and the simulator share: the model's proprioception (`proprio`)."""
