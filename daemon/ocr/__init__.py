"""Fixed-shape OCR shared by every backend: pre-processing, DB post-processing, crops, CTC decoding."""
