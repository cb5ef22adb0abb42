#!/usr/bin/env bash
# Sets up everything on a fresh Debian 12 machine with Python 3.11: system packages (when run as root or
# with sudo), a virtual environment in .venv with the pinned versions, and the package itself.
# Idempotent: a second run only checks (the Debian packages, and that .venv imports and was set up from the
# same requirements-lock.txt, setup.py and this script: their hash is kept in .venv/.setup-stamp).
set -euo pipefail
cd "$(dirname "$0")/.."

# mosquitto: the real broker the tests start (openssl makes their TLS certificates); mosquitto-clients:
# mosquitto_sub to watch the topics; fonts: rendered test labels; libgl1/libglib2.0-0: opencv-python;
# python3-opencv (4.6, with GStreamer, on numpy 1.24: like JetPack's), python3-numpy and the GStreamer
# base/good plugins: the system-Python install test (tests/test_install_system_python.py). gcc: the stub
# libraries that let tests import NVIDIA's TensorRT bindings for the API check (tests/trt_api/).
# gstreamer1.0-rtsp, python3-gi, gir1.2-gst-rtsp-server-1.0: the test RTSP server (tests/test_sources_rtsp.py).
# chromium, chromium-driver: the headless browser the page's tests drive through Selenium (tests/test_web_browser.py).
APT_PACKAGES="python3-venv mosquitto mosquitto-clients openssl fonts-dejavu-core fonts-noto-cjk libgl1 libglib2.0-0
  python3-opencv python3-numpy gstreamer1.0-plugins-base gstreamer1.0-plugins-good gcc
  gstreamer1.0-rtsp python3-gi gir1.2-gst-rtsp-server-1.0 chromium chromium-driver"
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

PYTHON="${PYTHON:-python3}"
# pip itself pinned too (26.3 runs on Python 3.10 and later), not whatever is newest on the day.
PIP_PIN="pip==26.3"
STAMP=.venv/.setup-stamp
want="$(cat requirements-lock.txt setup.py scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] &&
   .venv/bin/python -c 'import daemon, cv2, onnxruntime, pytest, importlib.util as u
assert u.find_spec("rapidocr") and u.find_spec("rapidocr_onnxruntime")' 2>/dev/null; then
  echo "setup: .venv is up to date (requirements-lock.txt, setup.py and scripts/setup.sh unchanged)"
  exit 0
fi
rm -f "$STAMP"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q "$PIP_PIN"
.venv/bin/python -m pip install -q -c requirements-lock.txt -e ".[opencv,test]"
# RapidOCR 3.10: the PP-OCRv6 small models (ocr.model_set: pp-ocrv6-small) and bench's second reference.
# --no-deps: it declares opencv-python-headless, whose cv2 would replace opencv-python's; what it imports
# at run time (omegaconf, colorlog, requests) is installed first, pinned in requirements-lock.txt.
.venv/bin/python -m pip install -q -c requirements-lock.txt omegaconf antlr4-python3-runtime colorlog requests
.venv/bin/python -m pip install -q -c requirements-lock.txt --no-deps rapidocr
echo "$want" > "$STAMP"
echo "setup done: .venv/bin/ocr-daemon"
