"""`ocr-daemon`: the command line. Each subcommand lives in the module named for its job; this file only parses.

Exit codes: 0 success, 1 runtime failure (some images unreadable, engine missing, ...), 2 invalid config or usage.
A command's ConfigError is caught here, once: "<file>: invalid config: <key>: <why>" on stderr, exit 2.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import sys

from daemon.config import ConfigError
from daemon.printable import printable

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
# Commands whose output is one report, printed after they return: its reader leaving early keeps their exit status.
_REPORTS = ("check-config", "doctor")


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocr-daemon", description="Edge OCR: cameras -> OCR -> outbox -> MQTT and plant protocols.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 invalid config or usage. `ocr-daemon COMMAND --help` for one.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default: config's)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the chosen command's module is imported: importing them all made `once` start noticeably slower
    # (bench/RESULTS.md section 19b).
    chosen = next((a for a in argv if a in _COMMANDS), None)
    for name, (module, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


class OneLineFormatter(logging.Formatter):
    """Every log record is one line: a file name or client string with a newline cannot forge another record,
    and bytes that are not UTF-8 are spelled ``\\xNN``. A traceback keeps its lines (ours, not a client's)."""

    def formatMessage(self, record: logging.LogRecord) -> str:   # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


def setup_logging(level_name: str | None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, (level_name or "INFO").upper(), logging.INFO), handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    setup_logging(args.log_level)
    try:
        module = importlib.import_module(args._module)
        return module.main(args) if args.command == "run" else _one_shot(module, args)
    except ConfigError as exc:   # every command's bad config: one line, exit 2
        print(exc.report(getattr(args, "config", None)), file=sys.stderr)
        return 2


def _one_shot(module, args) -> int:
    """A command other than `run`, whose stdout's reader may leave early (`| head -1`, `| true`): it ends quietly,
    as Python's docs recommend (signal, "Note on SIGPIPE"): stdout onto /dev/null, so the exit's flush is quiet
    too. A report keeps its exit status; a command cut off mid-output (once, listing) exits 1."""
    code = None
    try:
        if args.command in _REPORTS:
            with contextlib.redirect_stdout(io.StringIO()) as report:
                code = module.main(args)
            sys.stdout.write(report.getvalue())
        else:
            code = module.main(args)
        sys.stdout.flush()   # a reader gone shows here, not in the interpreter's exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if code is None else code


if __name__ == "__main__":
    raise SystemExit(main())
