"""The one key loader (tokenrt_common.secrets): file or environment, stripped, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenrt_common.secrets import Secret, SecretError, env_names, load_key, read_key

KEY = "sk-test-0123456789abcdef"


def test_file_first_then_the_first_set_variable(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text(f"  {KEY}\n")
    env = {"A": " ", "B": f"{KEY}-env\n", "C": "other"}
    from_file = read_key(str(file), ["A", "B"], env)
    assert from_file is not None and from_file.reveal() == KEY
    assert from_file.source == str(file)
    from_env = read_key("", ["A", "B", "C"], env)  # A is blank: skipped
    assert from_env is not None and from_env.reveal() == f"{KEY}-env"
    assert from_env.source == "$B"
    assert read_key("", ["A", "MISSING"], env) is None
    assert read_key("", [], env) is None


def test_a_named_file_that_cannot_serve_names_the_setting_never_the_value(
        tmp_path: Path) -> None:
    empty, two = tmp_path / "empty", tmp_path / "two"
    empty.write_text("\n")
    two.write_text(f"{KEY}\n{KEY}-second\n")
    cases = [(tmp_path / "missing", "cannot read key file"), (empty, "is empty"),
             (two, "more than one line or word")]
    for path, why in cases:
        with pytest.raises(SecretError) as err:
            read_key(str(path), ["A"], {"A": KEY}, setting="TOKENRT_X_KEY_FILE")
        assert str(err.value).startswith("TOKENRT_X_KEY_FILE: ") and why in str(err.value)
        assert KEY not in str(err.value)


def test_load_key_reasons_name_sources_only(tmp_path: Path) -> None:
    assert load_key(["OPENAI_API_KEY"], "", {"OPENAI_API_KEY": ""}) == (
        None, "$OPENAI_API_KEY not set")
    assert load_key(["G1", "G2"], "", {}) == (None, "$G1 / $G2 not set")
    assert load_key([], "", {}) == (None, "no key source named")
    key, why = load_key(["X"], str(tmp_path / "nope"), {"X": KEY})
    assert key is None and why.startswith("cannot read key file") and KEY not in why
    key, why = load_key(["X"], "", {"X": KEY})
    assert why == "" and key is not None and key.reveal() == KEY


def test_a_secret_never_shows_its_value() -> None:
    s = Secret(KEY, "$X")
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in f"{s}"
    assert s.redact(f"bad key {KEY}!") == "bad key [redacted]!"
    assert env_names(" GEMINI_API_KEY, GOOGLE_API_KEY ,") == ["GEMINI_API_KEY", "GOOGLE_API_KEY"]
