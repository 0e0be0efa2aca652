"""The demo API key `tokenrt up` gives the router when no key is configured.

It is the stack's bootstrap admin key (a development stack: `up` makes it only when no
key is configured). It is generated once per state folder and kept in
`<state>/demo-api-key` (mode 0600); the router gets only its SHA-256, through a keys
file (`<state>/router-keys.yaml`, named by TOKENRT_ROUTER_KEYS_FILE). The key itself is
never printed or logged: `tokenrt demo` (and `TOKENRT_API_KEY=$(cat
.tokenrt/demo-api-key) tokenrt chat ...`) read the file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import yaml

from tokenrt_common.settings import Settings, replace

KEY_FILE = "demo-api-key"
KEYS_FILE = "router-keys.yaml"
# The tenant of the demo key. The demo isolates each run by user and session ids.
DEMO_ORG = "demo"
DEMO_PROJECT = "ide"
KEY_PREFIX = "trk_demo_"


def key_path(state: Path) -> Path:
    return state / KEY_FILE


def read_key(state: Path) -> str | None:
    """The demo key of a state folder, or None when `up` made none."""
    try:
        key = key_path(state).read_text().strip()
    except OSError:
        return None
    return key if key.startswith(KEY_PREFIX) else None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def with_demo_key(settings: Settings, state: Path) -> Settings:
    """`settings` unchanged when router keys are configured; else settings whose router
    reads the demo key's hash from a keys file in `state` (key made when missing)."""
    if settings.router_keys or settings.router_keys_file:
        return settings
    key = read_key(state)
    if key is None:
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        _write_private(key_path(state), key + "\n")
    keys_file = state / KEYS_FILE
    # The router's key map keeps SHA-256 hex digests (tokenrt_router.keys.key_hash).
    entry = {"key_sha256": hashlib.sha256(key.encode()).hexdigest(), "org": DEMO_ORG,
             "project": DEMO_PROJECT, "name": "demo key made by tokenrt up",
             # The bootstrap admin of a development stack: `tokenrt demo` creates a key
             # for a fresh organization per run with it (CreateApiKey).
             "admin": True}
    _write_private(keys_file, yaml.safe_dump({"keys": [entry]}, sort_keys=False))
    return replace(settings, router_keys_file=str(keys_file))
