"""The router's own Prometheus metrics: whether answers are journaled, off-path work given
up on (the numbers an operator needs to see that usage is at risk), and how speculative
reservations ended."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tokenrt_router.pipeline import Router


class RouterCollector(Collector):
    def __init__(self, router: Router) -> None:
        self._router = router

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        r = self._router
        j = r.journal
        yield GaugeMetricFamily(
            "tokenrt_router_journal_writing",
            "1 when the journal takes records; 0: answers are served without surviving a "
            "router crash (folder unwritable, disk full; see router.journal_* logs)",
            value=1 if j.writing else 0)
        yield CounterMetricFamily(
            "tokenrt_router_journal_unwritten",
            "Finished requests whose usage event and settlement could not be journaled",
            value=j.unwritten)
        yield GaugeMetricFamily(
            "tokenrt_router_journal_outstanding",
            "Journaled events and settlements not yet published or settled",
            value=j.outstanding)
        given = CounterMetricFamily(
            "tokenrt_router_offpath_given_up",
            "Off-path items given up on after their retries, by work (events and "
            "settlements stay in the journal for the next router)", labels=["work"])
        for c in (r.events, r.settlements, r.stores, r.samples):
            given.add_metric([c.name], c.given_up)
        yield given
        speculated = CounterMetricFamily(
            "tokenrt_router_speculative_reserves",
            "Reservations made for an upper bound of the prompt while it was counted, by "
            "outcome: kept (the budget hop was off the critical path), re_reserved (the "
            "exact count gave another plan), near_limit (a limit past its warning level: "
            "released and reserved again with the exact count), refused (the budget "
            "refused the bound: reserved again with the exact count), released / "
            "released_hit (not needed: a refusal, the caller gone, a cache hit), "
            "budget_down, failed",
            labels=["outcome"])
        for outcome, n in sorted(r.speculated.items()):
            speculated.add_metric([outcome], n)
        yield speculated
        yield GaugeMetricFamily(
            "tokenrt_router_in_flight",
            "Requests in the pipeline now (Complete, StreamComplete, /v1/chat/completions)",
            value=r.in_flight)
        yield CounterMetricFamily(
            "tokenrt_router_turned_away",
            "Requests turned away at once because TOKENRT_ROUTER_MAX_IN_FLIGHT were in "
            "flight (UNAVAILABLE / 503, ERROR_REASON_OVERLOADED; nothing done or charged)",
            value=r.turned_away)
