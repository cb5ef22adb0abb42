#!/usr/bin/env bash
# Installs ocr-daemon as a systemd service: a venv in /opt/ocr-daemon, the config in /etc/ocr-daemon,
# the outbox and engines in /var/lib/ocr-daemon (the unit's StateDirectory and working directory).
#
#   sudo systemd/install.sh          # CPU (ONNX Runtime) or a camera-only box: PyPI OpenCV, requirements-lock.txt
#   sudo systemd/install.sh --gpu    # Jetson / GPU box: + GPU device nodes; the venv is built on the system
#                                    #   Python and keeps JetPack's tensorrt, numpy 1.x and GStreamer OpenCV,
#                                    #   pycuda from PyPI (systemd/make-venv.sh --gpu; --without-pycuda passes on)
# The CLI is linked as /usr/local/bin/ocr-daemon. The config (only when missing) sets backend: onnxruntime (CPU).
# Then: edit /etc/ocr-daemon/config.yaml, `sudo systemctl reload ocr-daemon`, `journalctl -u ocr-daemon -f`.
set -euo pipefail

# The config written when /etc/ocr-daemon/config.yaml is missing: the repository's, with
# state_dir: `sudo ocr-daemon calibrate|build-engine --config /etc/ocr-daemon/config.yaml` then writes
#   engines where the service (WorkingDirectory=/var/lib/ocr-daemon) reads them, not into the caller's cwd;
# cpu_fold_dir: the unit's CacheDirectory, named, so that `sudo ocr-daemon doctor` looks where the service does;
# backend (CPU install only): onnxruntime, so that a box without TensorRT is not reported degraded
#   (`backend: auto` falls back to the CPU and says so in /healthz and doctor); --gpu keeps auto.
# write_config SRC DEST GPU(0|1)
write_config() {
  local src="$1" dest="$2" gpu="$3"
  local -a edits=(-e 's#^state_dir: null #state_dir: /var/lib/ocr-daemon #'
                  -e 's#^  cpu_fold_dir: null #  cpu_fold_dir: /var/cache/ocr-daemon/cpu-models #')
  local -a wants=('^state_dir: /var/lib/ocr-daemon ' '^  cpu_fold_dir: /var/cache/ocr-daemon/cpu-models ')
  if [ "$gpu" = 0 ]; then
    edits+=(-e 's#^backend: auto        #backend: onnxruntime #')
    wants+=('^backend: onnxruntime ')
  fi
  sed "${edits[@]}" "$src" > "$dest.new"
  local want
  for want in "${wants[@]}"; do
    grep -q "$want" "$dest.new" ||
      { echo "install: $src has no line to set for '${want#^}'" >&2; rm -f "$dest.new"; return 1; }
  done
  chmod 0644 "$dest.new"
  mv "$dest.new" "$dest"
}

# `sudo ocr-daemon ...` as the docs write it: sudo's PATH (secure_path) has /usr/local/bin, not the venv.
# A link that is already there is kept; anything else at LINK is left alone, with a note saying so.
# link_cli TARGET LINK
link_cli() {
  local target="$1" link="$2"
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then
    return 0
  elif [ -e "$link" ] || [ -L "$link" ]; then
    echo "install: note: $link exists and is not a link to $target; left as it is (the CLI is $target;" \
         "to use it as ocr-daemon: sudo ln -sfn $target $link)" >&2
  else
    mkdir -p "$(dirname "$link")"
    ln -s "$target" "$link"
  fi
}
# Sourced (the tests): only the functions above.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then return 0; fi

PREFIX=/opt/ocr-daemon
GPU=0
VENV_ARGS=()
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1; VENV_ARGS+=(--gpu) ;;
    --without-pycuda) VENV_ARGS+=(--without-pycuda) ;;
    --prefix=*) PREFIX="${arg#--prefix=}" ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
command -v systemctl >/dev/null || { echo "systemd is required" >&2; exit 1; }
REPO="$(cd "$(dirname "$0")/.." && pwd)"

mkdir -p "$PREFIX"
"$REPO/systemd/make-venv.sh" "${VENV_ARGS[@]}" "$PREFIX/venv"
install -m 0644 "$REPO/README.md" "$PREFIX/README.md" 2>/dev/null || true
link_cli "$PREFIX/venv/bin/ocr-daemon" /usr/local/bin/ocr-daemon

install -d -m 0755 /etc/ocr-daemon
if [ -e /etc/ocr-daemon/config.yaml ]; then
  if [ "$GPU" = 0 ] && grep -Eq '^backend: *auto *(#|$)' /etc/ocr-daemon/config.yaml; then
    echo "install: note: /etc/ocr-daemon/config.yaml (kept as it is) has 'backend: auto'; on a box without TensorRT the" \
         "daemon then reports itself degraded: set 'backend: onnxruntime' there for a CPU box" >&2
  fi
else
  write_config "$REPO/config.yaml" /etc/ocr-daemon/config.yaml "$GPU"
fi
"$PREFIX/venv/bin/ocr-daemon" check-config /etc/ocr-daemon/config.yaml

install -m 0644 "$REPO/systemd/ocr-daemon.service" /etc/systemd/system/ocr-daemon.service
sed -i "s#/opt/ocr-daemon/#$PREFIX/#g" /etc/systemd/system/ocr-daemon.service
if [ "$GPU" = 1 ]; then
  install -d /etc/systemd/system/ocr-daemon.service.d
  install -m 0644 "$REPO/systemd/gpu.conf" /etc/systemd/system/ocr-daemon.service.d/gpu.conf
fi
systemctl daemon-reload
systemctl enable ocr-daemon.service
# restart, not start: a re-run that upgraded the venv must not leave the old code running (a stop drains; what is
# owed stays in the outbox for the new process)
systemctl restart ocr-daemon.service
systemctl --no-pager --lines=5 status ocr-daemon.service || true
echo "installed: $(systemd-analyze security ocr-daemon.service 2>/dev/null | tail -1)"
