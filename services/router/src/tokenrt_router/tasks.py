"""Task type and complexity of an IDE request, from documented rules (docs/router.md).

Pure: reads the messages' text, never calls anything. The rules look at the last user
turn (what is being asked) and at the whole prompt's size and code content (how hard it
is). First matching rule wins; the order is the table in docs/router.md.

The word rules are matched against the lower-cased text (faster than re.IGNORECASE).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tokenrt.v1 import common_pb2

T = common_pb2
FIM = re.compile(r"<\|?fim[_ -]?(prefix|suffix|middle)\|?>|<PRE>|<SUF>|<MID>", re.I)
CODE = re.compile(r"```|^\s*(def |class |function |fn |func |import |#include|public |const |"
                  r"let |var |SELECT |return )", re.M)

# (task, pattern on the last user turn), checked in this order.
RULES: tuple[tuple[int, re.Pattern[str]], ...] = (
    (T.TASK_TYPE_CODE_COMPLETION, re.compile(
        r"\b(complete|autocomplete|finish|continue)\b.{0,40}\b(code|line|function|"
        r"statement|snippet|this)\b|^\s*complete\b", re.S)),
    (T.TASK_TYPE_DEBUG, re.compile(
        r"\b(traceback|stack ?trace|exception|error|bug|crash(es|ing)?|fails?|failing|"
        r"broken|doesn'?t work|not working|segfault|panic|wrong (output|result)|debug)\b")),
    (T.TASK_TYPE_CODE_REVIEW, re.compile(
        r"\b(review|code review|audit|any (issues|problems)|look over|critique|lgtm)\b")),
    (T.TASK_TYPE_REFACTOR, re.compile(
        r"\b(refactor\w*|clean ?up|restructure|extract (a |the )?(method|function|class)|"
        r"simplify|dedupe|deduplicate|split (this|the) (file|module|class|function)|"
        r"decouple|modulari[sz]e)\b")),
    (T.TASK_TYPE_TRANSLATE, re.compile(
        r"\b(translate|port|convert|rewrite)\b.{0,60}\b(to|into|in)\s+(python|java|"
        r"javascript|typescript|go|golang|rust|c\+\+|c#|kotlin|swift|ruby|php|scala|sql|"
        r"english|chinese|french|german|spanish|japanese)\b", re.S)),
    (T.TASK_TYPE_SUMMARIZE, re.compile(
        r"\b(summari[sz]e|summary|tl;?dr|recap|changelog|release notes|commit message)\b")),
    (T.TASK_TYPE_EXPLAIN, re.compile(
        r"\b(explain|what does|what is|what are|how does|how do|why does|why is|"
        r"walk me through|meaning of|understand)\b")),
    (T.TASK_TYPE_CODE_EDIT, re.compile(
        r"\b(change|modify|update|edit|rename|replace|add (a |an |the )?\w+ (to|in)|"
        r"remove|delete|make (it|this|the)|insert|tweak|adjust)\b")),
    (T.TASK_TYPE_REASONING, re.compile(
        r"\b(prove|proof|design|architect\w*|trade-?offs?|compare|which approach|"
        r"complexity of|big-?o|plan|strategy|should (i|we))\b")),
    (T.TASK_TYPE_CODE_GENERATION, re.compile(
        r"\b(write|implement|create|generate|build|scaffold|code up|add)\b")),
)

HARD = re.compile(r"\b(concurren\w*|distributed|race condition|deadlock|architect\w*|"
                  r"across (the )?(codebase|repo|files)|multiple files|thread[- ]safe|"
                  r"performance|optimi[sz]\w*|security|migration|algorithm)\b")
EASY = re.compile(r"\b(typo|one[- ]liner|rename|simple|quick|small|tiny|just)\b")
LONG_PROMPT = 6000
SHORT_PROMPT = 400
INHERENTLY_HARD = (T.TASK_TYPE_REASONING, T.TASK_TYPE_REFACTOR)
INHERENTLY_EASY = (T.TASK_TYPE_CODE_COMPLETION, T.TASK_TYPE_CHAT, T.TASK_TYPE_SUMMARIZE,
                   T.TASK_TYPE_TRANSLATE)


@dataclass(frozen=True)
class Analysis:
    task: int
    complexity: int
    reason: str


def message_text(m: common_pb2.Message) -> str:
    return "".join(p.text for p in m.content if p.WhichOneof("part") == "text")


@dataclass(frozen=True)
class Detection:
    """What the text says, whatever the prompt's size: the task, and the words that make
    it hard or easy. `at(input_tokens)` adds the size (the router knows a bound of it
    before the exact count)."""

    task: int
    rule: str
    hard: str  # the hard topic matched ("" none)
    easy: bool

    def at(self, input_tokens: int) -> Analysis:
        complexity, why = self._complexity(input_tokens)
        return Analysis(self.task, complexity, f"{self.rule}; {why}")

    def _complexity(self, input_tokens: int) -> tuple[int, str]:
        if input_tokens > LONG_PROMPT:
            return T.COMPLEXITY_HIGH, f"long prompt ({input_tokens} tokens)"
        if self.hard:
            return T.COMPLEXITY_HIGH, f"hard topic {self.hard!r}"
        if self.task in INHERENTLY_HARD:
            return T.COMPLEXITY_HIGH, "task is inherently hard"
        if self.task in INHERENTLY_EASY or self.easy or (
                input_tokens < SHORT_PROMPT and self.task in (T.TASK_TYPE_EXPLAIN,
                                                              T.TASK_TYPE_CODE_EDIT)):
            return T.COMPLEXITY_LOW, "short or simple request"
        return T.COMPLEXITY_MEDIUM, "default"


def analyse(messages: Sequence[common_pb2.Message], input_tokens: int,
            forced_task: int = 0) -> Analysis:
    """Task type and complexity; `forced_task` (the caller's) wins over detection."""
    return detect(messages, forced_task).at(input_tokens)


def detect(messages: Sequence[common_pb2.Message], forced_task: int = 0) -> Detection:
    last = next((message_text(m) for m in reversed(messages)
                 if m.role == T.ROLE_USER), "")
    task, rule = T.TASK_TYPE_CHAT, "no rule matched"
    if forced_task:
        task, rule = forced_task, "given by the caller"
    elif FIM.search(last):
        task, rule = T.TASK_TYPE_CODE_COMPLETION, "fill-in-the-middle markers"
    else:
        ask = (CODE.split(last, maxsplit=1)[0] if CODE.search(last) else last)[:2000].lower()
        for candidate, pattern in RULES:
            m = pattern.search(ask)
            if m:
                task, rule = candidate, f"matched {m.group(0).strip()[:30]!r}"
                break
    last = last.lower()
    hard = HARD.search(last)
    return Detection(task, rule, hard.group(0) if hard else "", EASY.search(last) is not None)
