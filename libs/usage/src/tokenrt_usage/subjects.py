"""NATS subjects of usage events: `<prefix>.<org>.<project>`, with ids escaped.

NATS forbids `.` (token separator), `*` and `>` (wildcards) and whitespace inside a
subject token, and an empty token. Ids are escaped reversibly, percent-style: each of
those characters, every control character and `%` itself become `%XX` (the byte's
upper-case hex, UTF-8 bytes for non-ASCII whitespace); an empty id becomes `%`.
Everything else passes unchanged, so ordinary ids (`acme`, `web-app_2`) read as they are.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[.*>%\s\x00-\x1f\x7f]")
_ESCAPE = re.compile(r"(?:%[0-9A-F]{2})+")
EMPTY = "%"


def escape_token(value: str) -> str:
    """One subject token for `value`, reversible with `unescape_token`."""
    if value == "":
        return EMPTY
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)


def unescape_token(token: str) -> str:
    if token == EMPTY:
        return ""
    return _ESCAPE.sub(lambda m: bytes.fromhex(m.group().replace("%", "")).decode(), token)


def usage_subject(prefix: str, org_id: str, project_id: str) -> str:
    """The subject an event of this org and project is published on."""
    return f"{prefix}.{escape_token(org_id)}.{escape_token(project_id)}"


def usage_filter(prefix: str, org_id: str = "", project_id: str = "") -> str:
    """A subscription filter: every usage event, one org's, or one project's."""
    if not org_id:
        return f"{prefix}.>"
    if not project_id:
        return f"{prefix}.{escape_token(org_id)}.*"
    return usage_subject(prefix, org_id, project_id)


def parse_usage_subject(prefix: str, subject: str) -> tuple[str, str]:
    """(org_id, project_id) of a usage subject; ValueError when it is not one."""
    head = prefix + "."
    if not subject.startswith(head):
        raise ValueError(f"{subject!r} is not under {prefix!r}")
    parts = subject[len(head):].split(".")
    if len(parts) != 2:
        raise ValueError(f"{subject!r} is not {prefix}.<org>.<project>")
    return unescape_token(parts[0]), unescape_token(parts[1])
