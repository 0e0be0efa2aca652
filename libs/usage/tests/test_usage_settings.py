"""The ledger and usage-event settings: defaults and the errors that name the key."""

from __future__ import annotations

import pytest

from tokenrt_common.settings import SettingsError, load_settings
from tokenrt_usage import StreamSpec


def test_defaults_match_the_public_contract() -> None:
    spec = StreamSpec.from_settings(load_settings({}))
    assert spec.name == "USAGE" and spec.subject_prefix == "tokenrt.usage.v1"
    assert spec.duplicate_window_seconds >= 120
    assert not (spec.dlq_subject + ".").startswith(spec.subject_prefix + ".")


@pytest.mark.parametrize(("env", "message"), [
    ({"TOKENRT_USAGE_DUPLICATE_WINDOW_SECONDS": "60"}, "must be at least 120"),
    ({"TOKENRT_USAGE_SUBJECT_PREFIX": "a.*"}, "TOKENRT_USAGE_SUBJECT_PREFIX: 'a.*' is not a dotted"),
    ({"TOKENRT_USAGE_DLQ_SUBJECT": "tokenrt.usage.v1.dlq"}, "must not lie under"),
    ({"TOKENRT_LEDGER_SCHEMA": "Ledger;drop"}, "TOKENRT_LEDGER_SCHEMA: 'Ledger;drop' is not"),
    ({"TOKENRT_USAGE_STREAM": "US.AGE"}, "TOKENRT_USAGE_STREAM: 'US.AGE' may only hold"),
    ({"TOKENRT_LEDGER_BATCH_SIZE": "0"}, "TOKENRT_LEDGER_BATCH_SIZE: must be greater than 0"),
])
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("*", r"\*").replace("(", r"\(")):
        load_settings(env)
