"""Shared test setup: markers, the repository on sys.path, and a Mosquitto fixture."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:   # `pytest tests/` from anywhere imports the daemon package of this checkout
    sys.path.insert(0, str(ROOT))
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU (and pycuda/TensorRT); skipped where absent")
    config.addinivalue_line("markers", "slow: longer than a few seconds; deselect with -m 'not slow'")


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
