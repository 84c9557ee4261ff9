"""How often a running trial says it is alive, and how long after its last word it counts as dead."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Heartbeats:
    interval_s: int
    grace_s: int
