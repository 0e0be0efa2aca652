"""The ledger's parts and their life: once Postgres and NATS are connected, migrate, then
consume the usage stream until shutdown (restarting the consumer after a failure)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tokenrt_common.connect import retry
from tokenrt_common.server import Runtime
from tokenrt_ledger.ingest import Ingestor
from tokenrt_ledger.store import LedgerStore

POLL_SECONDS = 0.1
RESTART_SECONDS = 1.0


class Ledger:
    """What the gRPC API reads from: the store (None until migrated) and the ingestor."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store: LedgerStore | None = None
        self.ingestor: Ingestor | None = None

    async def run(self) -> None:
        infra, log, settings = self.runtime.infra, self.runtime.log, self.runtime.settings
        while infra.pg is None:  # noqa: ASYNC110 (Infra connects in the background, no event)
            await asyncio.sleep(POLL_SECONDS)
        store = LedgerStore(infra.pg, settings.ledger_schema, log)

        async def prepare() -> None:
            await store.migrate()
            await store.ensure_partitions_ahead(datetime.now(UTC))

        await retry(prepare, what="ledger-migrations", log=log)
        self.store = store
        while infra.js is None or infra.nats is None:  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
        while True:
            self.ingestor = Ingestor(infra.nats, infra.js, store, settings, log)
            try:
                await self.ingestor.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed consumer restarts; unacked messages come back
                log.error("ledger.consumer_failed", error=type(exc).__name__,
                          detail=str(exc)[:300])
                await asyncio.sleep(RESTART_SECONDS)

    @property
    def watermark(self) -> datetime | None:
        return self.ingestor.watermark if self.ingestor else None
