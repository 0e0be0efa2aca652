"""Hypothesis strategies for every tokenrt RPC, built from the generated descriptors.

`rpc_methods()` lists every method of every `tokenrt.v1` service, so a new RPC is fuzzed
without touching this suite. `request_messages(method)` draws valid-shaped requests with
absurd values (extreme and negative numbers, NaN and infinities, unknown enum values,
empty and huge strings, huge repeated fields, nested messages); `raw_bodies(method)`
draws bytes that are garbage, truncated or bit-flipped encodings, or carry invalid UTF-8
in a string field.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Any

import hypothesis.strategies as st
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

import tokenrt.v1

F = FieldDescriptor

# Tenant-like ids get a prefix that no other test uses, so a fuzzed write (a budget
# limit, a cache config) can never land on another test's tenant on the shared stack.
ID_PREFIX = "fuzz-"
# Real names, so some requests get past "unknown model" into the deeper code.
KNOWN_MODELS = ("gpt-4o", "gpt-4o-mini", "sim/gpt-4o-mini", "claude-sonnet-4", "gpt-4.1")
# Methods that change state shared with other tests whatever the tenant: their model
# names stay unknown (calibration samples of a real model would move its estimator).
NO_KNOWN_MODELS = {"/tokenrt.v1.CounterService/Calibrate"}
MAX_DEPTH = 6
HUGE_STRING = 100_000
HUGE_REPEATED = 5_000


@dataclass(frozen=True)
class Rpc:
    """One RPC: its service (`counter`, ...), full path and descriptor."""

    service: str
    path: str
    method: MethodDescriptor

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def id(self) -> str:
        return f"{self.service}.{self.method.name}"


def rpc_methods() -> list[Rpc]:
    """Every method of every service in the generated `tokenrt.v1` modules."""
    found: list[Rpc] = []
    for info in pkgutil.iter_modules(tokenrt.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"tokenrt.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            short = service.name.removesuffix("Service").lower()
            for method in service.methods:
                found.append(Rpc(short, f"/{service.full_name}/{method.name}", method))
    return sorted(found, key=lambda r: r.path)


# ----------------------------------------------------------------------------------
# Scalars
# ----------------------------------------------------------------------------------

_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1), F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted({low, high, low + 1, high - 1, max(low, -1), 0, 1, 2, min(high, 10**9)})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _floats(width: int) -> st.SearchStrategy[float]:
    edges = [math.nan, math.inf, -math.inf, -0.0, -1.0, 1e30, -1e30, 5e-45]
    return st.one_of(st.sampled_from(edges), st.floats(width=width))  # type: ignore[arg-type]


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_WEIRD = st.sampled_from(["\x00", "\u202e\u0000x", "../../etc/passwd", "*", ">", "a.b.>",
                          " ", "\n\r\t", "{tag}", "' OR 1=1 --", "😀" * 50, "\ufeff"])
_HUGE = st.integers(1_000, HUGE_STRING).map(lambda n: "z" * n)


def _strings(field: FieldDescriptor, path: str) -> st.SearchStrategy[str]:
    name = field.name
    if name.endswith("_id") or name in ("org", "project", "user", "tag", "key"):
        return st.one_of(st.just(""), _WEIRD, _HUGE, _TEXT.map(lambda t: ID_PREFIX + t))
    plain = st.one_of(st.just(""), _TEXT, _WEIRD, _TEXT, _HUGE)
    if "model" in name and path not in NO_KNOWN_MODELS:
        return st.one_of(st.sampled_from(KNOWN_MODELS), plain)
    return plain


def _enums(field: FieldDescriptor) -> st.SearchStrategy[int]:
    known = [v.number for v in field.enum_type.values]
    return st.one_of(st.sampled_from(known), _ints(-(2**31), 2**31 - 1))


def _scalar(field: FieldDescriptor, path: str) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        return _ints(*_INT_RANGES[kind])
    if kind == F.TYPE_DOUBLE:
        return _floats(64)
    if kind == F.TYPE_FLOAT:
        return _floats(32)
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_ENUM:
        return _enums(field)
    if kind == F.TYPE_STRING:
        return _strings(field, path)
    if kind == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64),
                         st.integers(1_000, HUGE_STRING).map(lambda n: b"\x89PNG" * (n // 4)))
    raise AssertionError(f"unhandled field type {kind} of {field.full_name}")


# ----------------------------------------------------------------------------------
# Messages
# ----------------------------------------------------------------------------------


_SMALL = {F.TYPE_STRING: "x", F.TYPE_BYTES: b"x", F.TYPE_BOOL: True, F.TYPE_DOUBLE: math.nan,
          F.TYPE_FLOAT: math.inf, F.TYPE_ENUM: 999}
_SIGNED = {k for k, (low, _) in _INT_RANGES.items() if low < 0}


def _is_map(field: FieldDescriptor) -> bool:
    return (field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry)


def _value(field: FieldDescriptor, path: str, depth: int) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_MESSAGE:
        return messages(field.message_type, path, depth + 1)
    return _scalar(field, path)


def _field(field: FieldDescriptor, path: str, depth: int) -> st.SearchStrategy[Any]:
    if _is_map(field):
        key_field, value_field = field.message_type.fields
        return st.dictionaries(_scalar(key_field, path), _value(value_field, path, depth),
                               max_size=4)
    one = _value(field, path, depth)
    if not field.is_repeated:
        return one
    # A huge repeated field repeats one small element (huge elements are drawn above).
    if field.type == F.TYPE_MESSAGE:
        small: Any = message_factory.GetMessageClass(field.message_type)()
    else:
        small = _SMALL.get(field.type, -1 if field.type in _SIGNED else 1)
    many = st.integers(100, HUGE_REPEATED).map(lambda n: [small] * n)
    return st.one_of(st.lists(one, max_size=4), many)


@cache
def messages(descriptor: Descriptor, path: str, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`; `path` is the RPC they are sent to."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > MAX_DEPTH:
        return st.just(cls())
    fields = {f.name: st.one_of(st.none(), _field(f, path, depth)) for f in descriptor.fields}
    return st.fixed_dictionaries(fields).map(lambda values: _build(cls, descriptor, values))


def _build(cls: type[Message], descriptor: Descriptor, values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        if value is None:
            continue
        field = descriptor.fields_by_name[name]
        target = getattr(msg, name)
        if _is_map(field):
            for k, v in value.items():
                if field.message_type.fields_by_name["value"].type == F.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            target.extend(value)
        elif field.type == F.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


def request_messages(rpc: Rpc) -> st.SearchStrategy[Message]:
    strategy = messages(rpc.method.input_type, rpc.path)
    if rpc.path == "/tokenrt.v1.BudgetService/RebuildCounters":
        # Without a scope it rebuilds every tenant's counters from the ledger, which
        # would move the counters of tests running beside this one.
        return strategy.map(_scoped_to_fuzz_tenant)
    return strategy


def _scoped_to_fuzz_tenant(msg: Message) -> Message:
    scope = msg.scope  # type: ignore[attr-defined]
    if not scope.org_id.startswith(ID_PREFIX):
        scope.org_id = ID_PREFIX + "rebuild"
    return msg


# ----------------------------------------------------------------------------------
# Raw bytes
# ----------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


# Bytes that are not UTF-8: a lone continuation byte, a truncated sequence, an overlong
# encoding, an encoded surrogate, and 0xFF.
BAD_UTF8 = (b"\x80", b"abc\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"ok\xff")


def string_fields(descriptor: Descriptor) -> list[FieldDescriptor]:
    return [f for f in descriptor.fields if f.type == F.TYPE_STRING]


def raw_bodies(rpc: Rpc) -> st.SearchStrategy[bytes]:
    """Bytes that are mostly not a valid encoding of the request."""
    valid = request_messages(rpc).map(lambda m: m.SerializeToString())
    truncated = st.tuples(valid, st.integers(1, 64)).filter(
        lambda p: len(p[0]) > 1).map(lambda p: p[0][: max(0, len(p[0]) - p[1])])
    flipped = st.tuples(valid.filter(bool), st.integers(0, 2**31), st.integers(1, 255)).map(
        lambda p: _flip(*p))
    strategies = [st.binary(max_size=512), truncated, flipped,
                  st.sampled_from([b"\xff" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x08",
                                   b"\x0a\x05ab", b"\x0f\x00"])]
    fields = string_fields(rpc.method.input_type)
    if fields:
        strategies.append(st.tuples(st.sampled_from(fields), st.sampled_from(BAD_UTF8)).map(
            lambda p: length_delimited(p[0].number, p[1])))
    return st.one_of(*strategies)


def _flip(data: bytes, where: int, mask: int) -> bytes:
    i = where % len(data)
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1:]


def struct_path(descriptor: Descriptor, seen: frozenset[str] = frozenset()
                ) -> list[FieldDescriptor] | None:
    """Fields leading from `descriptor` to a google.protobuf.Struct, if the schema has one."""
    for field in descriptor.fields:
        if field.type != F.TYPE_MESSAGE or field.is_repeated:
            continue
        if field.message_type.full_name == "google.protobuf.Struct":
            return [field]
        if field.message_type.full_name in seen:
            continue
        rest = struct_path(field.message_type, seen | {descriptor.full_name})
        if rest is not None:
            return [field, *rest]
    return None


def deep_struct_body(path: list[FieldDescriptor], levels: int) -> bytes:
    """A request whose Struct (at `path`) nests `levels` Structs inside one another,
    encoded by hand (the encoder refuses what the decoder must refuse)."""
    inner = b""
    for _ in range(levels):
        value = length_delimited(5, inner)  # Value.struct_value
        entry = length_delimited(1, b"a") + length_delimited(2, value)  # map entry
        inner = length_delimited(1, entry)  # Struct.fields
    for field in reversed(path):
        inner = length_delimited(field.number, inner)
    return inner
