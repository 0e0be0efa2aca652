"""Task and complexity rules against a labelled set of IDE requests (accuracy reported)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tokenrt.v1 import common_pb2
from tokenrt_router.tasks import analyse

DATA = yaml.safe_load((Path(__file__).parent / "data" / "ide_requests.yaml").read_text())
TASKS = {n.removeprefix("TASK_TYPE_").lower(): v for n, v in common_pb2.TaskType.items()}
LEVELS = {n.removeprefix("COMPLEXITY_").lower(): v for n, v in common_pb2.Complexity.items()}


def _msgs(text: str) -> list[common_pb2.Message]:
    return [common_pb2.Message(role=common_pb2.ROLE_SYSTEM,
                               content=[common_pb2.ContentPart(text="You are an IDE assistant.")]),
            common_pb2.Message(role=common_pb2.ROLE_USER, content=[common_pb2.ContentPart(text=text)])]


def score() -> tuple[float, float, list[str]]:
    task_ok = level_ok = 0
    misses = []
    for row in DATA:
        a = analyse(_msgs(row["text"]), row["input_tokens"])
        t, c = a.task == TASKS[row["task"]], a.complexity == LEVELS[row["complexity"]]
        task_ok += t
        level_ok += c
        if not (t and c):
            misses.append(f"{row['text'][:50]!r}: got {common_pb2.TaskType.Name(a.task)}/"
                          f"{common_pb2.Complexity.Name(a.complexity)} ({a.reason})")
    return task_ok / len(DATA), level_ok / len(DATA), misses


def test_labelled_set_accuracy() -> None:
    task_acc, level_acc, misses = score()
    print(f"\ntask accuracy {task_acc:.0%}, complexity accuracy {level_acc:.0%} on {len(DATA)}")
    print("\n".join(misses))
    assert len(DATA) >= 40
    assert task_acc >= 0.85, misses
    assert level_acc >= 0.75, misses


def test_caller_task_wins_and_fim_is_completion() -> None:
    a = analyse(_msgs("Explain this"), 10, forced_task=common_pb2.TASK_TYPE_REFACTOR)
    assert a.task == common_pb2.TASK_TYPE_REFACTOR
    assert analyse(_msgs("<|fim_prefix|>x<|fim_suffix|>"), 10).task == common_pb2.TASK_TYPE_CODE_COMPLETION


def test_long_prompt_is_high_complexity() -> None:
    assert analyse(_msgs("Explain this"), 50_000).complexity == common_pb2.COMPLEXITY_HIGH
