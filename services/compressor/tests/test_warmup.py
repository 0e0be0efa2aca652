"""Start-up warm-up (issue 7): the first request must not pay for first-time work."""

from __future__ import annotations

import tokenrt_pricing
from tokenrt_compressor import core, warmup
from tokenrt_compressor.counting import CounterMeter


def test_warm_up_runs_every_strategy_and_every_kind_of_action(meter: CounterMeter) -> None:
    catalog = tokenrt_pricing.load()
    entry = catalog.resolve("gpt-4o").entry
    results: dict[str, core.Result] = {}
    done = warmup.warm_up(meter.counter, [entry],
                          lambda e, r: results.__setitem__(r.strategy_requested, r))
    target = done.targets[entry.name]
    assert set(done.spent_ms) == set(results) == set(core.STRATEGIES)
    assert all(r.original_tokens > target >= r.compressed_tokens for r in results.values())
    # The synthetic conversation reaches every code path a real one can: each action...
    assert {a.kind for r in results.values() for a in r.actions} == {
        "dropped", "summarized", "deduplicated", "whitespace_collapsed", "comments_removed"}
    # ...the session's prefix match (auto takes it), and the references of the question.
    assert results["prefix_stable"].prefix_tokens > 0
    assert results["auto"].strategy_used == "prefix_stable"
    assert "names 3 paths/symbols" in results["selective_forget"].reason


def test_warm_up_covers_one_model_of_every_tokenizer() -> None:
    catalog = tokenrt_pricing.load()
    entries = warmup.models(catalog)
    assert sorted(e.tokenizer for e in entries) == sorted({e.tokenizer for e in catalog.entries()})
