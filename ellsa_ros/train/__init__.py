"""Training: datasets of the data engine -> teacher-forced sequences -> model checkpoints."""
