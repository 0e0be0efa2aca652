"""Selection is pure: measured latency scores, and the largest output that fits a budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrt.v1 import common_pb2
from tokenrt_pricing import Usage, cost_of
from tokenrt_pricing.catalog import load
from tokenrt_router import select

T = common_pb2
CATALOG = load()


def entry(name: str):  # type: ignore[no-untyped-def]
    return CATALOG.resolve(name).entry


def latency_points(cands: list[select.Candidate], name: str) -> int:
    [c] = [c for c in cands if c.entry.name == name]
    return sum(p for what, p, _ in c.components if what == "latency")


def needs(task: int = T.TASK_TYPE_CHAT) -> select.Needs:
    return select.Needs(input_tokens=100, max_output=64, task=task,
                        complexity=T.COMPLEXITY_MEDIUM)


def test_the_faster_model_scores_more_and_unmeasured_ones_nothing() -> None:
    entries = [entry("sim/gpt-4o"), entry("sim/gpt-4o-mini"), entry("sim/gpt-4.1")]
    latency = {"sim/gpt-4o": 400.0, "sim/gpt-4o-mini": 200.0}
    cands = select.rank(entries, needs(), {}, 64, latency)
    assert latency_points(cands, "sim/gpt-4o-mini") == select.LATENCY_POINTS
    assert latency_points(cands, "sim/gpt-4o") == select.LATENCY_POINTS // 2
    assert latency_points(cands, "sim/gpt-4.1") == 0


def test_latency_weighs_double_for_code_completion() -> None:
    entries = [entry("sim/gpt-4o"), entry("sim/gpt-4o-mini")]
    latency = {"sim/gpt-4o": 400.0, "sim/gpt-4o-mini": 200.0}
    chat = select.rank(entries, needs(), {}, 64, latency)
    fim = select.rank(entries, needs(T.TASK_TYPE_CODE_COMPLETION), {}, 64, latency)
    assert latency_points(fim, "sim/gpt-4o-mini") == 2 * latency_points(chat, "sim/gpt-4o-mini")


def test_latency_can_change_the_choice() -> None:
    entries = [entry("sim/gpt-4o"), entry("sim/gpt-4o-mini")]
    slow_mini = {"sim/gpt-4o": 100.0, "sim/gpt-4o-mini": 100_000.0}
    fast_mini = {"sim/gpt-4o": 100_000.0, "sim/gpt-4o-mini": 100.0}
    n = needs(T.TASK_TYPE_CODE_COMPLETION)
    first = {select.rank(entries, n, {}, 64, lat)[0].entry.name for lat in (slow_mini, fast_mini)}
    assert first == {"sim/gpt-4o", "sim/gpt-4o-mini"}


def test_largest_output_is_the_largest_that_fits() -> None:
    e = entry("sim/gpt-4o")
    budget = select.upper_cost(e, 1000, 777)
    out = select.largest_output(e, 1000, 4096, budget)
    assert select.upper_cost(e, 1000, out) <= budget
    assert select.upper_cost(e, 1000, out + 1) > budget
    assert select.largest_output(e, 1000, 4096, select.upper_cost(e, 1000, 0) - 1) == 0
    assert select.largest_output(e, 1000, 100, 10**15) == 100


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from([e.name for e in CATALOG.entries()]),
       input_tokens=st.integers(0, 3_000_000), max_output=st.integers(1, 200_000))
def test_upper_cost_is_the_cost_of_the_whole_prompt_and_max_output(
        name: str, input_tokens: int, max_output: int) -> None:
    e = entry(name)
    assert select.upper_cost(e, input_tokens, max_output) == cost_of(
        e.price, Usage(input_tokens=input_tokens, output_tokens=max_output)).total_nusd
