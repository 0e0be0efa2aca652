"""`tokenrt count / models / price` through the register() module, as the CLI runs them."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import pytest
import tiktoken
from counter_corpus import JARGON

from tokenrt_counter import cli

O200K = tiktoken.get_encoding("o200k_base")


def run(argv: list[str], stdin: bytes = b"") -> int:
    parser = argparse.ArgumentParser(prog="tokenrt")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    old = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        return args.func(args)
    finally:
        sys.stdin = old


def jargon_json() -> list[dict]:
    roles = {1: "system", 2: "user"}
    out = []
    for m in JARGON:
        d = {"role": roles[m.role], "content": m.content[0].text}
        if m.name:
            d["name"] = m.name
        out.append(d)
    return out


def test_count_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.py"
    text = "def f():\n    return '<|endoftext|>' + '😀 中文'\n"
    path.write_text(text)
    assert run(["count", "--model", "gpt-4o", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == {"tokens": len(O200K.encode_ordinary(text)), "exact": True, "model": "gpt-4o",
                   "tokenizer": "o200k_base", "source": "tiktoken", "error_bound_tokens": 0}


def test_count_stdin_messages(capsys: pytest.CaptureFixture[str]) -> None:
    body = json.dumps({"messages": jargon_json()}).encode()
    assert run(["count", "--model", "gpt-4o", "-", "--messages", "--json"], body) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == 124  # the cookbook's figure
    assert run(["count", "--model", "claude-sonnet-4-5", "--messages"], body) == 0
    assert "estimated" in capsys.readouterr().out


def test_count_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["count", "--model", "gpt-4o-mnii", "-"], b"x") == 2
    assert "gpt-4o-mini" in capsys.readouterr().err
    assert run(["count", "--model", "gpt-4o", "/no/such/file"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert run(["count", "--model", "gpt-4o", "--messages"], b"not json") == 2
    assert "JSON" in capsys.readouterr().err
    assert run(["count", "--model", "gpt-4o", "--messages"], b'[{"role": "robot"}]') == 2
    assert "messages[0].role" in capsys.readouterr().err


def test_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    gpt = next(m for m in data["models"] if m["name"] == "gpt-4o")
    assert gpt["standard"]["input_usd_per_mtok"] == "2.5"
    assert gpt["context_window_tokens"] == 128000
    assert run(["models"]) == 0
    assert "claude-sonnet-4-5" in capsys.readouterr().out


def test_price(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["price", "--model", "gpt-4o", "--input", "1000", "--cached-input", "200",
                "--output", "500", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["cost_usd"] == "0.00725" and got["cost_nusd"] == 7_250_000
    assert sum(got["breakdown_nusd"].values()) == got["cost_nusd"]
    assert run(["price", "--model", "gpt-4o", "--input", "1", "--output", "0",
                "--cached-input", "5"]) == 2
    assert "--cached-input" in capsys.readouterr().err
    assert run(["price", "--model", "nope", "--input", "1", "--output", "1"]) == 2


def test_the_tokenrt_command_runs_them() -> None:
    import os
    import subprocess

    binary = Path(sys.executable).parent / "tokenrt"
    if not binary.exists():
        pytest.skip("the tokenrt command is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRT_")}
    text = "Count me: <|endoftext|> 😀"
    done = subprocess.run([str(binary), "count", "--model", "gpt-4o", "-", "--json"],
                          input=text, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tokens"] == len(O200K.encode_ordinary(text))
    done = subprocess.run([str(binary), "price", "--model", "claude-haiku-4-5", "--input",
                           "1000000", "--output", "0", "--json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cost_usd"] == "1"
