"""Counter metrics, read at scrape time (nothing is added to the request path)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tokenrt_counter.core import Counter
from tokenrt_counter.provider_api import ProviderCounts


class CounterCollector(Collector):
    def __init__(self, counter: Counter, provider: ProviderCounts | None = None) -> None:
        self._counter = counter
        self._provider = provider

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        cache = self._counter.cache
        yield CounterMetricFamily("tokenrt_counter_cache_hits",
                                  "Content-addressed count cache hits", value=cache.hits)
        yield CounterMetricFamily("tokenrt_counter_cache_misses",
                                  "Content-addressed count cache misses", value=cache.misses)
        yield GaugeMetricFamily("tokenrt_counter_cache_entries",
                                "Entries in the count cache", value=len(cache))
        bound = GaugeMetricFamily("tokenrt_counter_estimate_error_bound_bp",
                                  "Estimator error bound (p95 relative, basis points) by model",
                                  labels=["model"])
        samples = GaugeMetricFamily("tokenrt_counter_calibration_samples",
                                    "Calibration samples behind each model's fit",
                                    labels=["model"])
        for model, fit in sorted(self._counter.fits.items()):
            bound.add_metric([model], fit.error_bound_bp)
            samples.add_metric([model], fit.samples)
        yield bound
        yield samples
        mismatches = CounterMetricFamily(
            "tokenrt_counter_exact_mismatches",
            "Calibration samples of exactly counted models whose provider count differed",
            labels=["model"])
        for model, n in sorted(self._counter.exact_mismatches.items()):
            mismatches.add_metric([model], n)
        yield mismatches
        provider = CounterMetricFamily(
            "tokenrt_counter_provider_counts",
            "CountMessages calls answered through a provider's count-tokens API, by outcome "
            "(ok, cached, failed, cooling: skipped while the provider cools down)",
            labels=["provider", "outcome"])
        if self._provider is not None:
            for (name, outcome), n in sorted(self._provider.outcomes.items()):
                provider.add_metric([name, outcome], n)
        yield provider
