"""LDpose-LimbLoss data: keypoint schema, annotation loading and validation."""
