"""The contracts: generated code is fresh, and the protos follow the Buf style we promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOS = sorted((ROOT / "protos" / "tokenrt" / "v1").glob("*.proto"))
GENERATED = ROOT / "libs" / "proto" / "src"
SERVICES = ("counter", "budget", "cache", "compressor", "router", "ledger")


def test_every_service_has_a_proto_file() -> None:
    names = {p.stem for p in PROTOS}
    assert names >= {"common", "events", *SERVICES}


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    """Regenerate into a temporary folder; it must equal what is committed (`make proto`)."""
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         *map(str, PROTOS)],
        check=True,
    )
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(GENERATED): p.read_bytes()
        for p in GENERATED.rglob("*")
        if p.is_file() and p.name != "__init__.py" and "__pycache__" not in p.parts
    }
    stale = sorted(str(k) for k in fresh.keys() | committed.keys()
                   if fresh.get(k) != committed.get(k))
    assert not stale, f"generated code is stale, run `make proto`: {stale}"


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_buf_style(proto: Path) -> None:
    text = proto.read_text()
    assert "package tokenrt.v1;" in text
    # Every RPC takes <Method>Request and returns <Method>Response.
    for method, request, response in re.findall(
        r"rpc\s+(\w+)\s*\(\s*(?:stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(?:stream\s+)?([\w.]+)\s*\)",
        text,
    ):
        assert request == f"{method}Request", f"{proto.name}: {method} takes {request}"
        assert response == f"{method}Response", f"{proto.name}: {method} returns {response}"
    # Every enum's zero value is <ENUM>_UNSPECIFIED.
    for enum, body in re.findall(r"enum\s+(\w+)\s*\{([^}]*)\}", text):
        zero = re.search(r"(\w+)\s*=\s*0\s*;", body)
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum).upper()
        assert zero and zero.group(1) == f"{prefix}_UNSPECIFIED", f"{proto.name}: enum {enum}"
    # Money is never a float: no float or double field whose name speaks of cost or price.
    for kind, name in re.findall(r"\b(float|double)\s+(\w+)\s*=", text):
        assert not re.search(r"cost|price|usd|spend|budget|limit|tokens", name), (
            f"{proto.name}: {kind} {name} must be an integer (nano-USD or tokens)"
        )
    # Every service and RPC is commented.
    for line_no, line in enumerate(text.splitlines()):
        if re.match(r"\s*(service|rpc)\s", line):
            previous = text.splitlines()[line_no - 1].strip()
            assert previous.startswith("//"), f"{proto.name}:{line_no + 1}: no comment on {line.strip()}"
