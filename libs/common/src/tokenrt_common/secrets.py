"""Credentials (provider API keys, the compressor's router key): read from a secret file
(a `*_KEY_FILE` setting, e.g. a mounted Kubernetes Secret) or from an environment variable
(a `*_KEY_ENV` setting names it), surrounding whitespace stripped, and kept out of every
repr, log event and error message. The one place every service loads a key.

A key file holds the key alone: a trailing newline is fine, a second line or word is an
error (it would otherwise be sent as part of the key).
"""

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


class SecretError(ValueError):
    """A key source that is named but unusable. The message names the setting and the
    file, never a value."""


def env_names(setting_value: str) -> list[str]:
    """The variable names of a `*_KEY_ENV` setting: one name or a comma-separated list
    (the first one set wins), e.g. "GEMINI_API_KEY,GOOGLE_API_KEY"."""
    return [n.strip() for n in setting_value.split(",") if n.strip()]


def read_key(file: str, names: Sequence[str], env: Mapping[str, str],
             setting: str = "") -> Secret | None:
    """The key from `file` when it is named, else from the first set (non-blank) variable
    of `names`; None when no source is set. Raises SecretError, naming `setting` (e.g.
    "TOKENRT_PROVIDER_ANTHROPIC_KEY_FILE"), when the file is named but cannot be read, is
    empty or holds more than the key."""
    if file:
        named = f"{setting}: " if setting else ""
        try:
            value = Path(file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SecretError(f"{named}cannot read key file {file}: {reason}") from None
        if not value:
            raise SecretError(f"{named}key file {file} is empty")
        if len(value.split()) != 1:
            raise SecretError(f"{named}key file {file} holds more than one line or word; "
                              "it must hold the key alone")
        return Secret(value, file)
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return Secret(value, f"${name}")
    return None


def load_key(names: Sequence[str], file: str, env: Mapping[str, str],
             setting: str = "") -> tuple[Secret | None, str]:
    """`read_key` for callers that skip what has no key: the key, or None and the reason
    no key was found (names, never values)."""
    try:
        key = read_key(file, names, env, setting)
    except SecretError as exc:
        return None, str(exc)
    if key is not None:
        return key, ""
    if not names:
        return None, "no key source named"
    return None, f"{' / '.join('$' + n for n in names)} not set"
