"""Settings: defaults, YAML file, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenrt_common.settings import SettingsError, load_settings


def test_defaults_are_the_standard_local_ports() -> None:
    s = load_settings({})
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.postgres_dsn.startswith("postgresql://postgres@127.0.0.1:5432/")
    assert s.endpoint("router").address == "127.0.0.1:50055"
    assert {s.endpoint(n).port for n in ("counter", "budget", "cache", "compressor", "router",
                                         "ledger")} == set(range(50051, 50057))


def test_environment_overrides_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    config = tmp_path / "tokenrt.yaml"
    config.write_text("redis_url: redis://10.0.0.5:6380/2\nlog_level: debug\nfault_delay_ms: 5\n")
    s = load_settings({"TOKENRT_CONFIG": str(config), "TOKENRT_LOG_LEVEL": "warning"})
    assert s.redis_url == "redis://10.0.0.5:6380/2"  # from the file
    assert s.log_level == "warning"  # the environment wins
    assert s.fault_delay_ms == 5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOKENRT_NATS_URL": "http://x:4222"}, "TOKENRT_NATS_URL: 'http://x:4222' is not a URL"),
        ({"TOKENRT_REDIS_URL": "redis://h:99999"}, "TOKENRT_REDIS_URL: 'redis://h:99999' is malformed"),
        ({"TOKENRT_POSTGRES_DSN": "localhost"}, "TOKENRT_POSTGRES_DSN: 'localhost' is not a URL"),
        ({"TOKENRT_NAT_URL": "nats://x"}, "TOKENRT_NAT_URL: unknown setting (did you mean TOKENRT_NATS_URL?)"),
        ({"TOKENRT_COUNTER_ADDR": "nowhere"}, "TOKENRT_COUNTER_ADDR: 'nowhere' is not host:port"),
        ({"TOKENRT_COUNTER_ADDR": "h:70000"}, "TOKENRT_COUNTER_ADDR: port 70000 is outside 1-65535"),
        ({"TOKENRT_BUDGET_METRICS_PORT": "9451"}, "port 9451 is also given to TOKENRT_COUNTER_METRICS_PORT"),
        ({"TOKENRT_FAULT_DELAY_MS": "soon"}, "TOKENRT_FAULT_DELAY_MS: expected a whole number"),
        ({"TOKENRT_LOG_LEVEL": "loud"}, "TOKENRT_LOG_LEVEL: 'loud' is not one of"),
        ({"TOKENRT_RPC_TIMEOUT_SECONDS": "0"}, "TOKENRT_RPC_TIMEOUT_SECONDS: must be greater than 0"),
        ({"TOKENRT_CONFIG": "/nonexistent/tokenrt.yaml"}, "TOKENRT_CONFIG: cannot read /nonexistent"),
        ({"TOKENRT_BUDGET_SCHEMA": "Bad-Name"}, "TOKENRT_BUDGET_SCHEMA: 'Bad-Name' is not a lower-case SQL identifier"),
        ({"TOKENRT_USAGE_DLQ_SUBJECT": "a.*"}, "TOKENRT_USAGE_DLQ_SUBJECT: 'a.*' is not a dotted NATS subject"),
        ({"TOKENRT_CACHE_SIMILARITY_THRESHOLD": "1.5"}, "TOKENRT_CACHE_SIMILARITY_THRESHOLD: must be between 0 and 1"),
        ({"TOKENRT_USAGE_RETENTION_DAYS": "-1"}, "TOKENRT_USAGE_RETENTION_DAYS: must be 0 (unlimited) or more"),
        ({"TOKENRT_ROUTER_BUDGET_UNAVAILABLE": "maybe"}, "TOKENRT_ROUTER_BUDGET_UNAVAILABLE: 'maybe' is not one of"),
    ],
)
def test_bad_settings_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_yaml_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "tokenrt.yaml"
    config.write_text("nats_urll: nats://x:1\n")
    with pytest.raises(SettingsError, match=r"tokenrt.yaml: nats_urll: unknown setting \(did you mean nats_url\?\)"):
        load_settings({"TOKENRT_CONFIG": str(config)})
    config.write_text("- a list\n")
    with pytest.raises(SettingsError, match="expected a mapping"):
        load_settings({"TOKENRT_CONFIG": str(config)})
    config.write_text("grpc_max_message_bytes: [1]\n")
    with pytest.raises(SettingsError, match="grpc_max_message_bytes: expected a whole number"):
        load_settings({"TOKENRT_CONFIG": str(config)})


def test_to_env_round_trips() -> None:
    s = load_settings({"TOKENRT_LEDGER_ADDR": "127.0.0.1:6000", "TOKENRT_SHUTDOWN_GRACE_SECONDS": "2.5"})
    assert load_settings(s.to_env()) == s
