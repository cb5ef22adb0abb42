"""Shared fixtures: a Mosquitto broker (markers and the import path are in pytest.ini)."""
from __future__ import annotations

import pytest


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
