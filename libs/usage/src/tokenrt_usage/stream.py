"""The USAGE stream (and its dead-letter stream), created or updated idempotently."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from tokenrt_common.settings import Settings

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class StreamSpec:
    """Where usage events live on JetStream."""

    name: str = "USAGE"
    subject_prefix: str = "tokenrt.usage.v1"
    dlq_subject: str = "tokenrt.usage.dlq.v1"
    retention_days: int = 30  # 0 = keep forever
    max_bytes: int = 0  # 0 = unlimited
    duplicate_window_seconds: int = 120

    @classmethod
    def from_settings(cls, s: Settings) -> StreamSpec:
        return cls(s.usage_stream, s.usage_subject_prefix, s.usage_dlq_subject,
                   s.usage_retention_days, s.usage_stream_max_bytes,
                   s.usage_duplicate_window_seconds)

    @property
    def dlq_stream(self) -> str:
        return f"{self.name}_DLQ"

    def config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name,
            description="tokenrt usage events (UsageEvent protobuf), deduplicated by Nats-Msg-Id",
            subjects=[f"{self.subject_prefix}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=float(self.retention_days * DAY_SECONDS),
            max_bytes=self.max_bytes or -1,
            duplicate_window=float(self.duplicate_window_seconds),
            discard=api.DiscardPolicy.OLD,
        )

    def dlq_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.dlq_stream,
            description="tokenrt usage messages the ledger could not decode (DeadLetter protobuf)",
            subjects=[self.dlq_subject, f"{self.dlq_subject}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=float(self.retention_days * DAY_SECONDS),
            duplicate_window=float(self.duplicate_window_seconds),
        )


async def ensure_streams(js: JetStreamContext, spec: StreamSpec) -> None:
    """Create the usage and dead-letter streams, or bring their settings up to date.

    Safe to run from every process at every start: an identical config is a no-op, a
    changed one (retention, window, size) is applied with an update.
    """
    for config in (spec.config(), spec.dlq_config()):
        await _ensure(js, config)


async def _ensure(js: JetStreamContext, config: api.StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError:
            pass  # created by another process just now; update it below
    await js.update_stream(config)
