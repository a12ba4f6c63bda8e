"""Rendering: z-buffer rasterisation and shading, turntable views, report figures, soft silhouettes."""
