"""Small shared pieces below the stages: names, video decoding, frame sampling, files and W&B."""
