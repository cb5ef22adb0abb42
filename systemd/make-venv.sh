#!/usr/bin/env bash
# Builds the daemon's virtual environment (what systemd/install.sh runs; CI runs it too).
#
#   systemd/make-venv.sh VENV_DIR                      # CPU: PyPI OpenCV, pins of requirements-lock.txt
#   systemd/make-venv.sh --gpu VENV_DIR                # Jetson / GPU box: system Python's venv (below)
#   systemd/make-venv.sh --gpu --without-pycuda DIR    # the same without pycuda (CI, no CUDA toolkit)
#   options: --python PY (default: python3; /usr/bin/python3 with --gpu), --repo DIR (default: this checkout)
#
# --gpu: `PY -m venv --system-site-packages`, so the venv sees JetPack's tensorrt, numpy 1.x and
# GStreamer-enabled OpenCV; pip installs the rest under systemd/constraints-system-python.txt plus a pin of
# the system numpy, never numpy 2 or PyPI's OpenCV; then pycuda from PyPI, compiled against that numpy
# with nvcc from CUDA_ROOT (default /usr/local/cuda). Afterwards it checks that numpy and cv2 in the venv
# are the system ones, that cv2 has GStreamer, and that onnx, onnxruntime (and pycuda) import; exit 1
# with the reason otherwise. Both modes also install the rapidocr 3.10 wheel with --no-deps: it carries the
# default model set's recognizer (PP-OCRv6 small). Idempotent: a second run reinstalls the package and re-checks.
set -euo pipefail

GPU=0
PYCUDA=1
PY=""
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) GPU=1 ;;
    --without-pycuda) PYCUDA=0 ;;
    --python) PY="$2"; shift ;;
    --python=*) PY="${1#--python=}" ;;
    --repo) REPO="$2"; shift ;;
    --repo=*) REPO="${1#--repo=}" ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "make-venv: unknown option: $1" >&2; exit 2 ;;
    *) [ -z "$VENV" ] || { echo "make-venv: one venv directory, got '$VENV' and '$1'" >&2; exit 2; }; VENV="$1" ;;
  esac
  shift
done
[ -n "$VENV" ] || { echo "usage: make-venv.sh [--gpu] [--without-pycuda] [--python PY] VENV_DIR" >&2; exit 2; }
# The system interpreter: a python3 earlier on PATH (pyenv, conda) does not see /usr/lib/python3/dist-packages.
[ -n "$PY" ] || { if [ "$GPU" = 1 ]; then PY=/usr/bin/python3; else PY=python3; fi; }
command -v "$PY" >/dev/null || { echo "make-venv: $PY not found" >&2; exit 1; }
# setup.py's python_requires (pip does not apply it to a local directory: it fails later, as ResolutionImpossible).
"$PY" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 13))' ||
  { echo "make-venv: $PY is Python $("$PY" -c 'import platform; print(platform.python_version())'); ocr-daemon runs on" \
         "3.10 to 3.12 (rapidocr-onnxruntime 1.4.4, which carries the PP-OCRv4 models, requires <3.13): --python PY" >&2
    exit 1; }
CUDA_ROOT="${CUDA_ROOT:-/usr/local/cuda}"
# PyPI's onnxruntime wheels require numpy>=1.21.6; JetPack 6 (Ubuntu 22.04) ships 1.21.5. Below this floor
# the venv gets the newest 1.21.x patch release (same C-API as the system's, so JetPack's cv2 still loads).
NUMPY_FLOOR=1.21.6
PYCUDA_REQ="pycuda>=2024.1"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
die() { echo "make-venv: $*" >&2; exit 1; }

if [ "$GPU" = 0 ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -c "$REPO/requirements-lock.txt" --upgrade "$REPO[opencv]"
  # the default model set's recognizer file (see the --gpu branch below)
  "$VENV/bin/python" -m pip install -q -c "$REPO/requirements-lock.txt" --no-deps rapidocr
  "$VENV/bin/python" -c 'import cv2, onnx, onnxruntime, daemon' || die "the installed venv $VENV does not import"
  "$VENV/bin/python" -c 'from daemon.config import Config; from daemon.ocr import models; models.resolve(Config())' ||
    die "the default model set's files are not in $VENV"
  echo "make-venv: $VENV ready (CPU)"
  exit 0
fi

# ---- --gpu: the system's numpy and OpenCV first; without them there is nothing to keep.
"$PY" -c 'import numpy, cv2' 2>/dev/null || die "$PY cannot import numpy and cv2 (the system OpenCV).
  Jetson: sudo apt-get install nvidia-opencv python3-numpy (both part of nvidia-jetpack)
  Debian/Ubuntu PC: sudo apt-get install python3-opencv python3-numpy"
SYS_NUMPY="$("$PY" -c 'import numpy; print(numpy.__version__)')"
case "$SYS_NUMPY" in 1.*) ;; *) die "the system numpy is $SYS_NUMPY; the constraints expect the NumPy 1.x of JetPack/Debian" ;; esac

if [ "$PYCUDA" = 1 ]; then
  # pycuda is an sdist: it needs the CUDA toolkit's nvcc, Python's headers and a C++ compiler.
  [ -x "$CUDA_ROOT/bin/nvcc" ] || die "nvcc not found at $CUDA_ROOT/bin/nvcc (set CUDA_ROOT).
  Jetson: sudo apt-get install nvidia-jetpack   (or only the CUDA toolkit: sudo apt-get install cuda-toolkit-12-6,
  the version of your JetPack's CUDA)
  GPU PC: NVIDIA's cuda-toolkit package. Without CUDA, add --without-pycuda (the daemon then runs on ONNX Runtime)."
  if ! "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    echo "make-venv: Python.h missing for $PY: installing python3-dev" >&2
    command -v apt-get >/dev/null || die "Python headers missing and no apt-get: install python3-dev"
    $SUDO apt-get update -q && $SUDO apt-get install -y -q python3-dev
  fi
  command -v g++ >/dev/null || die "g++ not found: sudo apt-get install build-essential"
fi

if [ -x "$VENV/bin/python" ]; then
  grep -qi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" ||
    die "$VENV exists without --system-site-packages (a CPU venv?); remove it and run again"
else
  "$PY" -m venv --system-site-packages "$VENV"
fi
VPY="$VENV/bin/python"

# numpy or OpenCV wheels inside the venv (an older install.sh put numpy 2 and opencv-python there) would
# shadow the system ones: remove them. pip refuses to touch anything outside the venv.
"$VPY" - "$VENV" <<'EOF' | xargs -r "$VPY" -m pip uninstall -q -y
import os, sys
from importlib import metadata
venv = os.path.realpath(sys.argv[1])
for name in ("numpy", "opencv-python", "opencv-python-headless", "opencv-contrib-python",
             "opencv-contrib-python-headless"):
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    where = os.path.realpath(str(dist.locate_file("")))
    if where.startswith(venv + os.sep) and "+system" not in dist.version:
        print(name)
EOF

# pip cannot see the system cv2 (Debian and JetPack install it without package metadata), so
# rapidocr-onnxruntime's `opencv-python` requirement would pull PyPI's wheel over it. A metadata-only
# record naming the system version satisfies it; its RECORD lists only itself, so uninstalling it
# removes nothing else.
"$VPY" - <<'EOF'
import cv2, os, sysconfig
version = cv2.__version__ + "+system"
site = sysconfig.get_paths()["purelib"]
info = os.path.join(site, f"opencv_python-{version}.dist-info")
for old in os.listdir(site):
    if old.startswith("opencv_python-") and old.endswith("+system.dist-info") and old != os.path.basename(info):
        for f in os.listdir(os.path.join(site, old)):
            os.remove(os.path.join(site, old, f))
        os.rmdir(os.path.join(site, old))
os.makedirs(info, exist_ok=True)
files = {
    "METADATA": f"Metadata-Version: 2.1\nName: opencv-python\nVersion: {version}\n"
                f"Summary: metadata only, written by systemd/make-venv.sh: cv2 is the system OpenCV {cv2.__file__}\n",
    "INSTALLER": "make-venv.sh\n",
}
for name, text in files.items():
    with open(os.path.join(info, name), "w") as f:
        f.write(text)
base = os.path.basename(info)
with open(os.path.join(info, "RECORD"), "w") as f:
    f.write("".join(f"{base}/{n},,\n" for n in (*files, "RECORD")))
EOF

# The static constraints plus the system numpy, kept in the venv for later `pip install -c`.
CONSTRAINTS="$VENV/constraints-system-python.txt"
if "$PY" -c "import sys; from numpy.lib import NumpyVersion as V; sys.exit(V('$SYS_NUMPY') < '$NUMPY_FLOOR')"; then
  NUMPY_PIN="numpy==$SYS_NUMPY"
else
  NUMPY_PIN="numpy~=$NUMPY_FLOOR"
fi
{
  cat "$REPO/systemd/constraints-system-python.txt"
  echo "# added by make-venv.sh for $PY (system numpy $SYS_NUMPY)"
  echo "$NUMPY_PIN"
} > "$CONSTRAINTS"

"$VPY" -m pip install -q -c "$CONSTRAINTS" --upgrade "$REPO"
# The default model set's recognizer (PP-OCRv6 small) is a file inside the rapidocr 3.10 wheel, which the
# daemon locates and never imports. --no-deps: its declared opencv-python-headless would shadow the system cv2.
"$VPY" -m pip install -q -c "$CONSTRAINTS" --no-deps "rapidocr==3.10.0"

if [ "$PYCUDA" = 1 ]; then
  # No build isolation: pycuda compiles against the numpy it will run with, not a numpy 2 from PyPI.
  "$VPY" -m pip install -q -c "$CONSTRAINTS" "setuptools>=61" wheel
  PATH="$CUDA_ROOT/bin:$PATH" CUDA_ROOT="$CUDA_ROOT" \
    "$VPY" -m pip install -q -c "$CONSTRAINTS" --no-build-isolation "$PYCUDA_REQ" ||
    die "pycuda did not build against $CUDA_ROOT (the compiler's first error is above). It needs the whole
  CUDA toolkit, curand headers included: on a Jetson sudo apt-get install nvidia-jetpack"
fi

# ---- checks: what a run of the daemon relies on.
SYS_NUMPY_FILE="$("$PY" -c 'import numpy; print(numpy.__file__)')"
SYS_CV2_FILE="$("$PY" -c 'import cv2; print(cv2.__file__)')"
"$VPY" - "$SYS_NUMPY" "$SYS_NUMPY_FILE" "$SYS_CV2_FILE" "$PYCUDA" "$NUMPY_PIN" <<'EOF'
import sys
sys_numpy, sys_numpy_file, sys_cv2_file = sys.argv[1:4]
want_pycuda, numpy_pin = sys.argv[4] == "1", sys.argv[5]
problems = []
import numpy
if numpy.__file__ != sys_numpy_file:
    if numpy_pin.startswith("numpy~=") and numpy.__version__.split(".")[:2] == sys_numpy.split(".")[:2]:
        print(f"make-venv: note: numpy {numpy.__version__} from PyPI ({numpy.__file__}) replaces the system's "
              f"{sys_numpy}, which is older than onnxruntime's wheels accept; same C-API, the system cv2 loads")
    else:
        problems.append(f"numpy {numpy.__version__} at {numpy.__file__} shadows the system's {sys_numpy} at {sys_numpy_file}")
import cv2
if cv2.__file__ != sys_cv2_file:
    problems.append(f"cv2 {cv2.__version__} at {cv2.__file__} shadows the system OpenCV at {sys_cv2_file}")
from daemon.sources.capture import gstreamer_available
if not gstreamer_available():
    problems.append(f"cv2 {cv2.__version__} at {cv2.__file__} has no GStreamer (CSI cameras need JetPack's OpenCV)")
from daemon.config import Config
from daemon.ocr import models
try:
    models.resolve(Config())        # the default model set's files, from both wheels
except models.ModelFileError as exc:
    problems.append(str(exc))
for name in ("onnx", "onnxruntime") + (("pycuda.driver",) if want_pycuda else ()):
    try:
        __import__(name)
    except Exception as exc:  # an ImportError, or numpy's C-API RuntimeError
        problems.append(f"import {name} fails: {exc}")
if problems:
    sys.exit("make-venv: the venv is not usable:\n  " + "\n  ".join(problems))
import onnx, onnxruntime
try:
    import tensorrt
    trt = f", tensorrt {tensorrt.__version__}"
except ImportError:
    trt = ", no tensorrt (the daemon runs on ONNX Runtime)"
print(f"make-venv: {sys.prefix} ready: system numpy {numpy.__version__}, system cv2 {cv2.__version__} with GStreamer, "
      f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}{trt}")
EOF
