"""Rendered parcel-label images with ground truth (render.py) and the bundled samples."""
