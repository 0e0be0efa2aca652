"""Semantic matching, pure: the guard's traps, the sketch, ranking, and the labelled set of
IDE prompts (near-duplicates and traps) with its precision and recall."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cache_fixtures import request

from tokenrt.v1 import cache_pb2, common_pb2
from tokenrt_cache import semantic

PAIRS = Path(__file__).parent / "data" / "semantic_pairs.jsonl"
THRESHOLD = 0.8
CODE = "```python\ndef foo(xs):\n    return sorted(xs)[0]\n```"


def matches(a: str, b: str, threshold: float = THRESHOLD) -> bool:
    sa, sb = semantic.sketch(a), semantic.sketch(b)
    same_guard = semantic.guard_of(a).fingerprint() == semantic.guard_of(b).fingerprint()
    return same_guard and semantic.similarity(sa, sb) >= threshold


@pytest.mark.parametrize(("a", "b"), [
    ("What does foo() return?", "What does bar() return?"),                  # renamed function
    ("Why does get_user fail?", "Why does get_users fail?"),
    ("Why is my build failing with exit code 137?", "Why is my build failing with exit code 139?"),
    ("Explain the error in src/app/main.py", "Explain the error in src/app/util.py"),
    ("How do I reverse a list in Python?", "How do I reverse a list in Rust?"),
    ("Explain foo. " + CODE, "Explain foo. " + CODE.replace("[0]", "[-1]")),
    ("Add logging with retries", "Add logging without retries"),
])
def test_traps_never_match_even_at_a_low_threshold(a: str, b: str) -> None:
    assert not matches(a, b, threshold=0.2)


def test_word_order_counts_through_word_pairs() -> None:
    a, b = "Convert celsius to fahrenheit in Python", "Convert fahrenheit to celsius in Python"
    assert semantic.similarity(semantic.sketch(a), semantic.sketch(b)) < 0.5
    assert not matches(a, b)


@pytest.mark.parametrize(("a", "b"), [
    ("How do I reverse a list in Python?", "how  can I reverse a list in python"),
    ("Can you explain what foo() does? " + CODE, "Please explain what foo() does.\n\n" + CODE),
    ("In TypeScript, what is a generic type parameter?",
     "What is a generic type parameter in TypeScript?"),
])
def test_near_duplicates_match(a: str, b: str) -> None:
    assert matches(a, b)


def test_guard_extracts_what_must_be_identical() -> None:
    g = semantic.guard_of("In Python, why does `cfg.load()` in src/app/config.py call "
                          "parse_file() twice, and read MAX_SIZE as 4096 on the Loader class "
                          "but never on userCount?\n```py\nx = 1\n```")
    assert g.code == ("cfg.load()", "x = 1")
    assert {"parse_file", "MAX_SIZE", "userCount", "loader"} <= set(g.identifiers)
    assert g.numbers == ("4096",) and g.paths == ("src/app/config.py",)
    assert g.languages == ("python",) and g.negations == ("never",)
    assert {"read", "twice", "call"} <= set(g.words) and "the" not in g.words


def test_operators_and_swapped_words_are_guarded() -> None:
    assert semantic.operators("is a == b or a === b? (x -> y), and - then...") == (
        "->", "==", "===")
    assert not matches("Explain == and === in JavaScript", "Explain != and !== in JavaScript")
    long_a = ("Refactor the payment service to retry failed charges with exponential backoff, "
              "jitter and a circuit breaker, and log every attempt with the order id")
    # One content word swapped in a long prompt: similar enough, refused by the guard.
    long_b = long_a.replace("charges", "refunds")
    assert semantic.similarity(semantic.sketch(long_a), semantic.sketch(long_b)) >= 0.8
    assert not matches(long_a, long_b)


def test_sketch_ignores_code_and_filler_and_is_bounded() -> None:
    assert semantic.sketch("Explain this: " + CODE) == semantic.sketch("Please explain this")
    long = " ".join(f"word{i}" for i in range(1000))
    assert len(semantic.sketch(long)) == semantic.SKETCH_SIZE
    assert semantic.similarity(semantic.sketch(long), semantic.sketch(long)) == 1.0


def test_bucket_holds_everything_but_the_last_user_text() -> None:
    base = semantic.query_of(request("What does foo() return?"))
    assert base is not None and base.text == "What does foo() return?"
    same = semantic.query_of(request("what does foo() return"))
    assert same is not None and same.bucket == base.bucket
    for other in (request(system="You are terse."), request(model="gpt-4o"),
                  request(temperature=0.5)):
        q = semantic.query_of(other)
        assert q is not None and q.bucket != base.bucket
    earlier = request()
    earlier.messages.insert(1, common_pb2.Message(role=common_pb2.ROLE_USER,
                                                  content=[common_pb2.ContentPart(text="hi")]))
    q = semantic.query_of(earlier)
    assert q is not None and q.bucket != base.bucket
    not_user = request()
    not_user.messages[-1].role = common_pb2.ROLE_ASSISTANT
    assert semantic.query_of(not_user) is None


def rank(sk: tuple[int, ...], g: bytes, candidates: dict[str, bytes],
         threshold: float) -> semantic.Verdict:
    keys = list(candidates)
    return semantic.rank(keys, semantic.lexical_scores(sk, g, [candidates[k] for k in keys]),
                         threshold)


def test_rank_says_why_nothing_matched() -> None:
    q = "What does foo() return?"
    sk, g = semantic.sketch(q), semantic.guard_of(q).fingerprint()

    def cand(text: str) -> bytes:
        return semantic.pack(semantic.sketch(text), semantic.guard_of(text).fingerprint())

    assert rank(sk, g, {}, 0.8).reason == cache_pb2.CACHE_MISS_REASON_NOT_FOUND
    far = rank(sk, g, {"a": cand("How do I center a div?")}, 0.8)
    assert far.reason == cache_pb2.CACHE_MISS_REASON_BELOW_THRESHOLD and far.similarity < 0.8
    trap = rank(sk, g, {"a": cand("What does bar() return?")}, 0.2)
    assert trap.reason == cache_pb2.CACHE_MISS_REASON_GUARD_REJECTED and not trap.keys
    ok = rank(sk, g, {"a": cand("what does foo() return"),
                               "b": cand("What does bar() return?")}, 0.8)
    assert ok.keys == ("a",) and ok.similarity == 1.0 and ok.reason is None


def load_pairs() -> list[dict[str, object]]:
    return [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]


def test_labelled_set_precision_and_recall() -> None:
    """Lexical backend on the labelled IDE prompts: no false hit; recall on every class but
    synonyms (which a lexical sketch cannot see) at least 95%."""
    pairs = load_pairs()
    traps = [p for p in pairs if not p["same"]]
    dups = [p for p in pairs if p["same"] and p["kind"] != "synonym"]
    assert len(traps) >= 60 and len(dups) >= 25
    false_hits = [p for p in traps if matches(str(p["a"]), str(p["b"]))]
    assert false_hits == []
    found = sum(matches(str(p["a"]), str(p["b"])) for p in dups)
    assert found / len(dups) >= 0.95
