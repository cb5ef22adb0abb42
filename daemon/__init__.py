"""Edge OCR daemon: camera frames -> fixed-shape DBNet + CTC OCR -> MQTT, with an on-disk outbox."""
__version__ = "0.1.0"
