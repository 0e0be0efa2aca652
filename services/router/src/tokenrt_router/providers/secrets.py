"""Provider API keys: read from an environment variable or a secret file, and kept out of
every repr, log event and error message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

MASK = "[redacted]"


class Secret:
    """A credential. Its repr and str never show the value; `redact` removes it from text."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        # Where it came from (an env var name or a file path), safe to show.
        self.source = source

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        return text.replace(self._value, MASK) if self._value else text

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    __str__ = __repr__


def load_key(env_names: Sequence[str], file: str,
             env: Mapping[str, str]) -> tuple[Secret | None, str]:
    """The key from `file` when it is named, else from the first set variable of
    `env_names`; with None, the reason no key was found (names, never values)."""
    if file:
        try:
            value = Path(file).read_text().strip()
        except OSError as exc:
            return None, f"cannot read key file {file}: {exc.strerror}"
        if not value:
            return None, f"key file {file} is empty"
        return Secret(value, file), ""
    for name in env_names:
        value = env.get(name, "").strip()
        if value:
            return Secret(value, f"${name}"), ""
    if not env_names:
        return None, "no key source named"
    return None, f"{' / '.join('$' + n for n in env_names)} not set"
