"""API key → caller (tenant), from a static key map until key management (issue 9).

Keys are kept only as SHA-256 hashes; a key itself is never stored or logged. The file
(`TOKENRT_ROUTER_KEYS_FILE`) lists entries with `key_sha256` (or, for development,
`key`); `TOKENRT_ROUTER_KEYS` holds inline `key=org/project[/user]` pairs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from tokenrt_common.settings import Settings


class KeyConfigError(ValueError):
    """The key map is malformed; the message says where."""


@dataclass(frozen=True)
class Caller:
    api_key_id: str
    org_id: str
    project_id: str
    user_id: str = ""
    admin: bool = False
    name: str = ""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyMap:
    def __init__(self, by_hash: dict[str, Caller]) -> None:
        self._by_hash = by_hash

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, authorization: str) -> Caller | None:
        """The caller for an `authorization` header value (`Bearer <key>`), or None."""
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self._by_hash.get(key_hash(key.strip()))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyMap:
        by_hash: dict[str, Caller] = {}
        if settings.router_keys_file:
            path = Path(settings.router_keys_file)
            try:
                rows = yaml.safe_load(path.read_text()) or []
            except (OSError, yaml.YAMLError) as exc:
                raise KeyConfigError(f"TOKENRT_ROUTER_KEYS_FILE {path}: {exc}") from None
            if isinstance(rows, dict):
                rows = rows.get("keys") or []
            for i, row in enumerate(rows):
                where = f"{path} entry {i}"
                if not isinstance(row, dict) or not row.get("org") or not row.get("project"):
                    raise KeyConfigError(f"{where}: needs org and project")
                digest = str(row.get("key_sha256") or "")
                if not digest and row.get("key"):
                    digest = key_hash(str(row["key"]))
                if len(digest) != 64:
                    raise KeyConfigError(f"{where}: needs key_sha256 (64 hex digits) or key")
                by_hash[digest.lower()] = _caller(
                    digest, str(row["org"]), str(row["project"]), str(row.get("user") or ""),
                    bool(row.get("admin")), str(row.get("name") or ""))
        for pair in filter(None, (p.strip() for p in settings.router_keys.split(";"))):
            key, eq, tenant = pair.partition("=")
            parts = tenant.split("/")
            if not eq or not key or len(parts) not in (2, 3) or not all(parts[:2]):
                raise KeyConfigError("TOKENRT_ROUTER_KEYS: write key=org/project[/user]; "
                                     "pairs separated by ';'")
            digest = key_hash(key.strip())
            by_hash[digest] = _caller(digest, parts[0], parts[1],
                                      parts[2] if len(parts) == 3 else "", False, "")
        return cls(by_hash)


def _caller(digest: str, org: str, project: str, user: str, admin: bool, name: str) -> Caller:
    return Caller("key_" + digest[:12], org, project, user, admin, name)
