"""The one retry delay of the daemon: cameras reconnecting, the MQTT client reconnecting, sinks reconnecting."""
from __future__ import annotations

import random


def backoff_delay_s(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before retry ``attempt`` (0 = the first after a failure): the bound doubles from min_s up to max_s
    and the delay is drawn in [bound / 2, bound] ("equal jitter"), never below min_s. Devices that failed together
    (a broker restart, a PoE switch reboot) spread their retries over the window instead of retrying in lockstep."""
    bound = min(max_s, min_s * 2.0 ** min(max(attempt, 0), 60))
    return rng.uniform(max(min_s, bound / 2.0), max(min_s, bound))
