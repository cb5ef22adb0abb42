#!/usr/bin/env bash
# Installs ocr-daemon as a systemd service: a venv in /opt/ocr-daemon, the config in /etc/ocr-daemon,
# the outbox and engines in /var/lib/ocr-daemon (the unit's StateDirectory and working directory).
#
#   sudo systemd/install.sh          # CPU (ONNX Runtime) or a camera-only box: PyPI OpenCV, requirements-lock.txt
#   sudo systemd/install.sh --gpu    # Jetson / GPU box: + GPU device nodes; the venv is built on the system
#                                    #   Python and keeps JetPack's tensorrt, numpy 1.x and GStreamer OpenCV,
#                                    #   pycuda from PyPI (systemd/make-venv.sh --gpu; --without-pycuda passes on)
# Then: edit /etc/ocr-daemon/config.yaml, `sudo systemctl reload ocr-daemon`, `journalctl -u ocr-daemon -f`.
set -euo pipefail

PREFIX=/opt/ocr-daemon
GPU=0
VENV_ARGS=()
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1; VENV_ARGS+=(--gpu) ;;
    --without-pycuda) VENV_ARGS+=(--without-pycuda) ;;
    --prefix=*) PREFIX="${arg#--prefix=}" ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
command -v systemctl >/dev/null || { echo "systemd is required" >&2; exit 1; }
REPO="$(cd "$(dirname "$0")/.." && pwd)"

mkdir -p "$PREFIX"
"$REPO/systemd/make-venv.sh" "${VENV_ARGS[@]}" "$PREFIX/venv"
install -m 0644 "$REPO/README.md" "$PREFIX/README.md" 2>/dev/null || true

install -d -m 0755 /etc/ocr-daemon
if [ ! -e /etc/ocr-daemon/config.yaml ]; then
  # state_dir: `sudo ocr-daemon calibrate|build-engine --config /etc/ocr-daemon/config.yaml` then writes
  # engines where the service (WorkingDirectory=/var/lib/ocr-daemon) reads them, not into the caller's cwd.
  # cpu_fold_dir: the unit's CacheDirectory, named, so that `sudo ocr-daemon doctor` looks where the service does.
  sed -e 's#^state_dir: null #state_dir: /var/lib/ocr-daemon #' \
      -e 's#^  cpu_fold_dir: null #  cpu_fold_dir: /var/cache/ocr-daemon/cpu-models #' \
      "$REPO/config.yaml" > /etc/ocr-daemon/config.yaml.new
  grep -q '^state_dir: /var/lib/ocr-daemon ' /etc/ocr-daemon/config.yaml.new ||
    { echo "config.yaml has no 'state_dir: null' line to set" >&2; rm -f /etc/ocr-daemon/config.yaml.new; exit 1; }
  grep -q '^  cpu_fold_dir: /var/cache/ocr-daemon/cpu-models ' /etc/ocr-daemon/config.yaml.new ||
    { echo "config.yaml has no 'cpu_fold_dir: null' line to set" >&2; rm -f /etc/ocr-daemon/config.yaml.new; exit 1; }
  chmod 0644 /etc/ocr-daemon/config.yaml.new
  mv /etc/ocr-daemon/config.yaml.new /etc/ocr-daemon/config.yaml
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
