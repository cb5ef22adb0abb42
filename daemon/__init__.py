"""Edge OCR daemon: camera frames -> fixed-shape DBNet + CTC OCR -> MQTT, with an on-disk outbox."""
import os

# ONNX Runtime's Linux wheels send usage telemetry to Microsoft and keep a store in ~/.cache/Microsoft unless
# ORT_DISABLE_TELEMETRY is truthy when it initializes. It is set here, where anything that uses the package (every
# command, the tests, the benches) passes before it can import ONNX Runtime. An explicit value (0: an opt-in) is
# kept; an empty one counts as unset.
if not os.environ.get("ORT_DISABLE_TELEMETRY"):
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.1.0"
