"""`ocr-daemon check-config FILE`: validate a config; exit 2 naming the key path and the reason."""
from __future__ import annotations

import argparse

from daemon import config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="config.yaml to check")


def main(args: argparse.Namespace) -> int:
    cfg = config.load(args.file)   # a ConfigError: cli.main's one line, exit 2
    cams = ", ".join(f"{c.name} ({c.kind})" for c in cfg.cameras)
    print(f"{args.file}: ok (device {cfg.device_id}, backend {cfg.backend}, cameras: {cams})")
    return 0
