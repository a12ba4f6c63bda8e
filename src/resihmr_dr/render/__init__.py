"""Rendering: shaded images and masks (PyTorch3D), figures."""
