"""Shared fixtures: a Mosquitto broker and a tiny real file system (markers and the import path: pytest.ini)."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def tiny_fs():
    """A 1 MiB tmpfs: a real file system that runs out of space (needs root; skipped elsewhere)."""
    d = tempfile.mkdtemp(prefix="tinyfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d], capture_output=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield Path(d)
    subprocess.run(["umount", "-l", d], check=False)
    os.rmdir(d)


@pytest.fixture
def broker():
    """A running Mosquitto on a free loopback port (anonymous allowed, persistence on); killed afterwards."""
    from broker import MOSQUITTO, Broker

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = Broker()
    b.start()
    yield b
    b.close()


@pytest.fixture
def make_broker():
    """Factory for brokers with extra config (ACL, password file, TLS); each is started and later killed."""
    from broker import MOSQUITTO, Broker

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    made: list[Broker] = []

    def make(start: bool = True, **kwargs) -> Broker:
        b = Broker(**kwargs)
        made.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in made:
        b.close()
