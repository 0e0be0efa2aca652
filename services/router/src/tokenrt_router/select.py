"""Model selection: eligibility and a points score per candidate (docs/router.md).

Pure: the caller gives the catalog entries, the prompt size, the request's needs and the
health of each model; the answer lists every candidate with its components and reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tokenrt.v1 import common_pb2
from tokenrt_pricing.cost import round_half_even, schedule_for
from tokenrt_pricing.model import TOKENS_PER_MTOK, ModelEntry

T = common_pb2
DEFAULT_OUTPUT = 4096
# Points for a tier at each complexity (task fit).
TIER_FIT = {
    T.COMPLEXITY_LOW: {"economy": 30, "standard": 10, "premium": 0},
    T.COMPLEXITY_MEDIUM: {"economy": 10, "standard": 25, "premium": 15},
    T.COMPLEXITY_HIGH: {"economy": -10, "standard": 20, "premium": 30},
}
PRICE_POINTS = (20, 14, 9, 5, 2, 0)
PREFERENCE_POINTS = 100
# The fastest model measured gets these points, slower ones a share in proportion; double
# for code completion, where the editor waits on every keystroke.
LATENCY_POINTS = 10
LATENCY_TASKS = (T.TASK_TYPE_CODE_COMPLETION,)
REASONING_TASKS = (T.TASK_TYPE_REASONING, T.TASK_TYPE_DEBUG)


@dataclass(frozen=True)
class Needs:
    input_tokens: int
    max_output: int
    task: int
    complexity: int
    tools: bool = False
    images: bool = False
    preferred: str = ""
    forced: str = ""
    max_cost_nusd: int | None = None
    compression_allowed: bool = True


@dataclass
class Candidate:
    entry: ModelEntry
    score: int = 0
    components: list[tuple[str, int, str]] = field(default_factory=list)
    eligible: bool = True
    reasons: list[str] = field(default_factory=list)
    estimated_cost_nusd: int = 0
    fits_context: bool = True
    needs_compression: bool = False
    healthy: bool = True
    max_output: int = 0
    budget_decision: int = 0

    def add(self, name: str, points: int, detail: str) -> None:
        self.components.append((name, points, detail))
        self.score += points

    def exclude(self, reason: str) -> None:
        self.eligible = False
        self.reasons.append(reason)


def output_cap(entry: ModelEntry, requested: int | None) -> int:
    """The explicit max output sent to the provider: the request's, else the model's
    default (or 4096), never more than the model allows."""
    default = entry.default_output or min(DEFAULT_OUTPUT, entry.max_output)
    want = requested if requested else default
    return max(1, min(want, entry.max_output))


def upper_cost(entry: ModelEntry, input_tokens: int, max_output: int) -> int:
    """`cost_of(entry.price, Usage(input_tokens, output_tokens=max_output)).total_nusd`,
    without the split into parts (selection prices every candidate of every request)."""
    prices, _ = schedule_for(entry.price, input_tokens, False)
    return round_half_even(input_tokens * prices.input + max_output * prices.output,
                           TOKENS_PER_MTOK)


def largest_output(entry: ModelEntry, input_tokens: int, up_to: int, max_nusd: int) -> int:
    """The largest max output (at most `up_to`) whose upper-bound cost stays within
    `max_nusd`; 0 when even the prompt alone costs more."""
    lo, hi = 0, up_to
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if upper_cost(entry, input_tokens, mid) <= max_nusd:
            lo = mid
        else:
            hi = mid - 1
    return lo


def rank(entries: Sequence[ModelEntry], needs: Needs, unhealthy: dict[str, str],
         requested_output: int | None,
         latency_ms: Mapping[str, float] | None = None) -> list[Candidate]:
    """Every candidate, eligible ones first by score (then cheaper first). `latency_ms`
    is each model's measured provider latency (models not measured yet score 0)."""
    cands = [Candidate(e) for e in entries]
    fit = TIER_FIT.get(needs.complexity, TIER_FIT[T.COMPLEXITY_MEDIUM])
    level = T.Complexity.Name(needs.complexity or T.COMPLEXITY_MEDIUM)
    for c in cands:
        e = c.entry
        c.max_output = output_cap(e, requested_output)
        c.estimated_cost_nusd = upper_cost(e, needs.input_tokens, c.max_output)
        if needs.forced and e.name.lower() != needs.forced.lower():
            c.exclude(f"request forces {needs.forced}")
        if e.name in unhealthy:
            c.healthy = False
            c.exclude(unhealthy[e.name])
        if needs.tools and "tools" not in e.capabilities:
            c.exclude("no tool calling")
        if needs.images and "vision" not in e.capabilities:
            c.exclude("no image input")
        room = e.context_window - c.max_output
        c.fits_context = needs.input_tokens <= room
        if not c.fits_context:
            c.needs_compression = True
            if not needs.compression_allowed:
                c.exclude(f"prompt {needs.input_tokens} > window room {room} and "
                          "compression is off")
            elif room < needs.input_tokens // 20:
                c.exclude(f"window {e.context_window} too small even after compression")
        if needs.max_cost_nusd is not None and c.estimated_cost_nusd > needs.max_cost_nusd:
            c.exclude(f"upper-bound cost {c.estimated_cost_nusd} nusd > max_cost_nusd "
                      f"{needs.max_cost_nusd}")
        c.add("complexity", fit.get(e.tier, 0), f"{e.tier} tier for {level}")
        if needs.task in REASONING_TASKS and "reasoning" in e.capabilities:
            c.add("task_fit", 10, "reasoning model for a reasoning-heavy task")
        c.add("context_fit", 10 if c.fits_context else -10,
              "fits" if c.fits_context else "needs compression")
        if needs.preferred and e.name.lower() == needs.preferred.lower():
            c.add("preference", PREFERENCE_POINTS, "the caller's preferred model")
        c.add("health", 0, "healthy" if c.healthy else "circuit open")
    _score_latency(cands, needs, latency_ms or {})
    by_cost = sorted({c.estimated_cost_nusd for c in cands})
    for c in cands:
        i = by_cost.index(c.estimated_cost_nusd)
        c.add("price", PRICE_POINTS[min(i, len(PRICE_POINTS) - 1)],
              f"upper bound {c.estimated_cost_nusd} nusd (rank {i + 1} of {len(by_cost)})")
    return sorted(cands, key=lambda c: (not c.eligible, -c.score, c.estimated_cost_nusd,
                                        c.entry.name))


def _score_latency(cands: list[Candidate], needs: Needs, latency_ms: Mapping[str, float]) -> None:
    known = [latency_ms[c.entry.name] for c in cands if latency_ms.get(c.entry.name, 0) > 0]
    weight = LATENCY_POINTS * (2 if needs.task in LATENCY_TASKS else 1)
    for c in cands:
        ms = latency_ms.get(c.entry.name, 0)
        if ms > 0:
            c.add("latency", round(weight * min(known) / ms), f"measured {ms:.0f} ms")
        else:
            c.add("latency", 0, "not measured yet")
