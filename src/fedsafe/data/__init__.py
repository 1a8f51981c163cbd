"""Data: readers for real medical image sets, the embedded synthetic task, preprocessing, splits."""
