"""Helpers for UsageEvent producers: ids and the checks every published event passes."""

from __future__ import annotations

import os
import time
import uuid

from tokenrt.v1 import events_pb2

SCHEMA_VERSION = 1


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits; sorts by time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def problems(event: events_pb2.UsageEvent) -> list[str]:
    """What makes `event` unusable by the ledger; empty when it is fine."""
    found = []
    if not event.event_id:
        found.append("missing event_id")
    elif len(event.event_id) > 128:
        found.append("event_id longer than 128 characters")
    if not event.org_id:
        found.append("missing org_id")
    if not event.HasField("occurred_at"):
        found.append("missing occurred_at")
    return found
