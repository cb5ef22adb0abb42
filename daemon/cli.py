"""`ocr-daemon`: the command line. Each subcommand lives in the module named for its job; this file only parses.

Exit codes: 0 success, 1 runtime failure (some images unreadable, engine missing, ...), 2 invalid config or usage.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module, one-line help). The module exposes add_arguments(parser) and main(args) -> int.
_COMMANDS = {
    "run": ("daemon.service", "run the daemon: cameras -> OCR -> outbox -> MQTT (systemd's ExecStart)"),
    "once": ("daemon.once", "OCR the given images once and print one JSON line per image"),
    "bench": ("daemon.bench", "benchmark the pipeline against RapidOCR and the models alone"),
    "calibrate": ("daemon.quantize.calibrate", "quantize the models to Q/DQ INT8 ONNX from representative frames"),
    "build-engine": ("daemon.engines.build", "build TensorRT engines (with JSON sidecars) on this device"),
    "build-kernels": ("daemon.gpu.kernel_build", "compile the GPU kernels ahead of time on this device"),
    "check-config": ("daemon.check_config", "validate a config file; exit 2 naming the bad key"),
    "doctor": ("daemon.doctor", "say what this box can do and what to do next"),
    "outbox": ("daemon.publish.outbox_cli", "list the outbox's dead letters, or replay them into the outbox"),
}


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocr-daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default: config's)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the chosen command's module is imported: importing them all cost `once` 0.3 s of start-up
    # (bench/RESULTS.md section 19b).
    chosen = next((a for a in argv if a in _COMMANDS), None)
    for name, (module, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, (args.log_level or "INFO").upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return importlib.import_module(args._module).main(args)


if __name__ == "__main__":
    raise SystemExit(main())
