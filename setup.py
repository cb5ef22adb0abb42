"""Edge OCR daemon: fixed-shape DBNet + CTC OCR, published over MQTT with an on-disk outbox."""
from setuptools import find_packages, setup

setup(
    name="ocr-daemon",
    version="0.1.0",
    description="Edge OCR daemon for NVIDIA Jetson: INT8 TensorRT / ONNX Runtime OCR published over MQTT",
    packages=find_packages(include=["daemon", "daemon.*"]),
    # models/: the shipped CPU INT8 copy of PP-OCRv6 small's detector (daemon/quantize/cpu_int8.py).
    package_data={"daemon": ["samples/*.png", "samples/labels.jsonl", "models/*.onnx", "models/*.json",
                             "schema/*.json", "gpu/*.cu",
                             "web/templates/*.html", "web/static/*.js", "web/static/*.css",
                             "publish/sinks/sparkplug_b/*.proto"]},
    # <3.13: rapidocr-onnxruntime 1.4.4 (below; it carries the PP-OCRv4 models) requires Python <3.13.
    python_requires=">=3.10,<3.13",
    install_requires=[
        "numpy>=1.21",
        "paho-mqtt>=2.0,<3",
        "pyyaml>=6.0",
        "onnxruntime>=1.17",
        "onnx>=1.15",
        "pyclipper>=1.3",
        "pillow>=10.0",
        "prometheus-client>=0.19",
        "tqdm>=4.66",
        # Carries the PP-OCRv4 mobile det/rec/cls ONNX models and their dictionary: no download at run time.
        # The default recognizer (PP-OCRv6 small) is in rapidocr==3.10.0, which cannot be listed here: its
        # declared opencv-python-headless would replace opencv-python's cv2. scripts/setup.sh and
        # systemd/make-venv.sh install it with --no-deps; without it the daemon names that pip command.
        "rapidocr-onnxruntime==1.4.4",
        # Barcodes and 2D codes (cameras[].codes), GS1 element strings, check digits (accept_formats).
        "zxing-cpp>=2.3",
        "biip>=5.0",
        "python-stdnum>=1.20",
        # The local page (daemon/web): Flask for the routes (served by daemon/http_server.py).
        "flask>=3.1,<3.2",
        # Sparkplug B payloads (daemon/publish/sinks/sparkplug_b): the generated module needs protobuf >= 7.35.1,
        # the protoc of grpcio-tools 1.85.1 that wrote it (grpcio-tools is only needed to regenerate it).
        "protobuf>=7.35.1,<8",
        # The OPC UA server (daemon/publish/sinks/opcua.py) and its certificates (cryptography, which asyncua uses).
        "asyncua==2.1.0",
        "cryptography>=44",
        # The Modbus TCP server for PLCs (daemon/publish/sinks/modbus.py): pinned, its server API moves between
        # minor versions.
        "pymodbus==3.16.1",
        # User patterns (accept_patterns, expect_regex) are matched by RE2: linear time, so no pattern can hang the
        # daemon as a backtracking one did with Python's re (daemon/patterns.py).
        "google-re2>=1.1",
    ],
    extras_require={
        # Not a hard requirement: the GPU install (systemd/make-venv.sh --gpu) keeps the system OpenCV
        # (JetPack's, built with GStreamer), which pip cannot see; CPU installs ask for .[opencv].
        "opencv": ["opencv-python>=4.8"],
        # TensorRT comes from JetPack (python3-libnvinfer); pycuda from PyPI, built by make-venv.sh --gpu.
        "gpu": ["pycuda>=2024.1"],
        # selenium drives Debian's chromium + chromium-driver (scripts/setup.sh) in tests/test_web_browser.py.
        # TensorRT-RTX: NVIDIA's real ONNX parser and builder, which need no GPU, for
        # tests/test_tensorrt_rtx_build.py (x86-64 wheels only; the cu13 build is what plain tensorrt-rtx pulls).
        "test": ["pytest>=8", "jsonschema>=4.20", "selenium>=4.30,<4.52",
                 "tensorrt-rtx-cu12==1.7.1.116; platform_machine == 'x86_64'"],
        # An x86-64 PC with an RTX GPU: the TensorRT-RTX edition (pycuda from the gpu extra).
        "rtx": ["tensorrt-rtx-cu12>=1.7,<2; platform_machine == 'x86_64'"],
    },
    entry_points={"console_scripts": ["ocr-daemon=daemon.cli:main"]},
)
