"""Barcodes and 2D codes in a frame: reading them (reader.py, zxing-cpp) and parsing GS1 data (gs1.py, biip).

The format names a camera may list in ``cameras[].codes``; they are zxing-cpp's ``BarcodeFormat`` names, and
the payload's ``codes[].format`` uses the same names. Kept here, without importing zxing-cpp, so that the config
check does not load the native library.
"""
from __future__ import annotations

CODE_FORMATS = (
    "Code128", "Code39", "Code93", "Codabar", "ITF", "EAN13", "EAN8", "UPCA", "UPCE", "DataBar",
    "DataBarExpanded", "DataBarLimited", "QRCode", "MicroQRCode", "RMQRCode", "DataMatrix", "PDF417", "Aztec",
    "MaxiCode",
)
"""Every format the daemon reads; also the default ``cameras[].codes``."""

ANY_ANGLE_FORMATS = ("QRCode", "MicroQRCode", "RMQRCode", "Aztec", "MaxiCode")
"""The formats zxing-cpp finds at any angle without its turned search (reader.py reads them in their own pass)."""

ALWAYS_READ_FORMATS = ("Code128", "QRCode")
"""With the default list, the formats searched in every frame before one is seen (the default list before
every format was; reader.py says how the others are searched)."""
