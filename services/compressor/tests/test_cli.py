"""`tokenrt compress` through the module's parser, on a real file."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest
from compressor_chats import ide_conversation

from tokenrt_compressor import cli
from tokenrt_compressor.counting import CounterMeter
from tokenrt_counter.cli import parse_chat


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tokenrt")
    cli.register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_compress_file_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            meter: CounterMeter) -> None:
    chat, _ = ide_conversation(random.Random(21), files=6, turns=12, lines=30, asked=2)
    data = {"messages": [cli.message_json(m) for m in chat]}
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(data))
    total = meter.total(chat, [])
    assert main(["compress", "--model", "gpt-4o", "--target", str(total // 3),
                 "--strategy", "selective_forget", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    messages, _ = parse_chat(out)
    assert out["report"]["original_tokens"] == total
    assert out["report"]["compressed_tokens"] == meter.total(messages, []) <= total // 3
    assert messages[-1] == chat[-1]
    assert main(["compress", "--model", "gpt-4o", "--target", str(total // 3), str(path)]) == 0
    text = capsys.readouterr().out
    assert f"{total} -> " in text and "strategy: " in text


def test_compress_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"messages": [{"role": "system", "content": "rules " * 100},
                                             {"role": "user", "content": "q"}]}))
    assert main(["compress", "--model", "gpt-4o", "--target", "10", str(path)]) == 3
    assert "ask for at least" in capsys.readouterr().err
    assert main(["compress", "--model", "gpt-4oo", "--target", "10", str(path)]) != 0
    assert "gpt-4o" in capsys.readouterr().err
    assert main(["compress", "--model", "gpt-4o", "--target", "0", str(path)]) != 0
