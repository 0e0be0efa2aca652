"""Subject escaping: reversible, and never yields a token NATS would reject."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenrt_usage.subjects import (
    escape_token,
    parse_usage_subject,
    unescape_token,
    usage_filter,
    usage_subject,
)


@given(st.text())
def test_escape_round_trips_and_is_a_valid_token(value: str) -> None:
    token = escape_token(value)
    assert unescape_token(token) == value
    assert token
    assert not any(c in token for c in ".*>") and not any(c.isspace() for c in token)


@given(st.text(), st.text())
def test_subject_parses_back_to_the_ids(org: str, project: str) -> None:
    subject = usage_subject("tokenrt.usage.v1", org, project)
    assert subject.count(".") == 4
    assert parse_usage_subject("tokenrt.usage.v1", subject) == (org, project)


@pytest.mark.parametrize(("value", "token"), [
    ("acme", "acme"), ("web-app_2", "web-app_2"), ("a.b", "a%2Eb"), ("x*", "x%2A"),
    ("x>", "x%3E"), ("a b", "a%20b"), ("50%", "50%25"), ("", "%"), ("tab\t", "tab%09"),
])
def test_escape_examples_from_the_docs(value: str, token: str) -> None:
    assert escape_token(value) == token


def test_filters() -> None:
    assert usage_filter("p") == "p.>"
    assert usage_filter("p", "a.b") == "p.a%2Eb.*"
    assert usage_filter("p", "a", "w") == "p.a.w"
    with pytest.raises(ValueError):
        parse_usage_subject("p", "p.only-one")
