#!/usr/bin/env bash
# Installs ocr-daemon as a systemd service: a venv in /opt/ocr-daemon, the config in /etc/ocr-daemon,
# the outbox and engines in /var/lib/ocr-daemon (the unit's StateDirectory and working directory).
#
#   sudo systemd/install.sh          # CPU (ONNX Runtime) or a camera-only box
#   sudo systemd/install.sh --gpu    # + GPU device nodes; the venv sees JetPack's tensorrt, pycuda and
#                                    #   GStreamer-enabled OpenCV (--system-site-packages)
# Then: edit /etc/ocr-daemon/config.yaml, `sudo systemctl reload ocr-daemon`, `journalctl -u ocr-daemon -f`.
set -euo pipefail

PREFIX=/opt/ocr-daemon
GPU=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    --prefix=*) PREFIX="${arg#--prefix=}" ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
command -v systemctl >/dev/null || { echo "systemd is required" >&2; exit 1; }
REPO="$(cd "$(dirname "$0")/.." && pwd)"

mkdir -p "$PREFIX"
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  if [ "$GPU" = 1 ]; then
    python3 -m venv --system-site-packages "$PREFIX/venv"
  else
    python3 -m venv "$PREFIX/venv"
  fi
fi
"$PREFIX/venv/bin/pip" install --upgrade "$REPO"
if [ "$GPU" = 1 ] && ! "$PREFIX/venv/bin/python" -c \
    'import sys; from daemon.sources.capture import gstreamer_available; sys.exit(0 if gstreamer_available() else 1)'; then
  echo "note: the venv's OpenCV lacks GStreamer (PyPI wheel); for CSI cameras run" >&2
  echo "      $PREFIX/venv/bin/pip uninstall -y opencv-python   # falls back to JetPack's system OpenCV" >&2
fi
install -m 0644 "$REPO/README.md" "$PREFIX/README.md" 2>/dev/null || true

install -d -m 0755 /etc/ocr-daemon
if [ ! -e /etc/ocr-daemon/config.yaml ]; then
  install -m 0644 "$REPO/config.yaml" /etc/ocr-daemon/config.yaml
fi
"$PREFIX/venv/bin/ocr-daemon" check-config /etc/ocr-daemon/config.yaml

install -m 0644 "$REPO/systemd/ocr-daemon.service" /etc/systemd/system/ocr-daemon.service
sed -i "s#/opt/ocr-daemon/#$PREFIX/#g" /etc/systemd/system/ocr-daemon.service
if [ "$GPU" = 1 ]; then
  install -d /etc/systemd/system/ocr-daemon.service.d
  install -m 0644 "$REPO/systemd/gpu.conf" /etc/systemd/system/ocr-daemon.service.d/gpu.conf
fi
systemctl daemon-reload
systemctl enable --now ocr-daemon.service
systemctl --no-pager --lines=5 status ocr-daemon.service || true
echo "installed: $(systemd-analyze security ocr-daemon.service 2>/dev/null | tail -1)"
