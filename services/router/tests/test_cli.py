"""`tokenrt chat` through the router process of the test session."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from .conftest import ROUTER_KEY

SCRIPT = ("import sys, argparse\nfrom tokenrt_router.cli import register\n"
          "p = argparse.ArgumentParser(); register(p.add_subparsers(dest='c'))\n"
          "a = p.parse_args(); sys.exit(a.func(a))\n")


def chat(router_env: dict, *args: str, key: str = ROUTER_KEY) -> subprocess.CompletedProcess[str]:
    env = dict(router_env["env"], TOKENRT_API_KEY=key)
    return subprocess.run([sys.executable, "-c", SCRIPT, "chat", *args], env=env, text=True,
                          capture_output=True, timeout=60)


def test_chat_json(router_env: dict) -> None:
    r = chat(router_env, "--model", "sim/gpt-4o-mini", "--json", "hello " + uuid.uuid4().hex)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["servedModel"] == "sim/gpt-4o-mini" and int(c["costNusd"]) > 0
    assert "simulator" in c["message"]["content"][0]["text"]


def test_chat_stream_prints_text(router_env: dict) -> None:
    r = chat(router_env, "--model", "sim/gpt-4o", "--stream", "--session", "cli-s", "hi there")
    assert r.returncode == 0, r.stderr
    assert "simulator" in r.stdout and "sim/gpt-4o:" in r.stderr


def test_chat_bad_key_exits_1_with_status(router_env: dict) -> None:
    r = chat(router_env, "--model", "sim/gpt-4o", "hi", key="wrong")
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr
