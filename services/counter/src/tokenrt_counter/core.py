"""Counting as the providers bill it: text, chat framing, tools, images (pure; no I/O).

Exact models (a tiktoken encoding) count text with the content-addressed chunk cache.
Chat framing follows OpenAI's cookbook ("How to count tokens with tiktoken"): every
message costs 3 tokens plus its role, content and name (a name costs 1 more); the reply
is primed with 3 tokens; tool definitions cost the cookbook's per-function, per-property
and per-enum constants. Models without a public tokenizer are estimated from script
features with the model's calibrated fit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from tokenrt.v1 import common_pb2
from tokenrt_counter import chunks, estimator, images
from tokenrt_counter.estimator import Fit
from tokenrt_counter.features import Features, of_text
from tokenrt_counter.tokenizers import SPLITTABLE, Encoder, Tokenizers
from tokenrt_pricing import ModelEntry

ROLES = {
    common_pb2.ROLE_SYSTEM: "system",
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
    common_pb2.ROLE_TOOL: "tool",
    common_pb2.ROLE_DEVELOPER: "developer",
}
DETAILS = {common_pb2.IMAGE_DETAIL_LOW: "low", common_pb2.IMAGE_DETAIL_HIGH: "high"}
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOOLS_END = 12  # once after all tool definitions (the cookbook's func_end)


@dataclass(frozen=True)
class Framing:
    """Chat-template tokens around the text: per message, per name, once per request."""

    per_message: int
    per_name: int
    priming: int
    # True when the provider documents the framing (OpenAI); else the count is an estimate.
    documented: bool


# OpenAI: the cookbook's figures, verified there against the API's prompt_tokens.
OPENAI = Framing(TOKENS_PER_MESSAGE, TOKENS_PER_NAME, REPLY_PRIMING, True)
# Templates of open models as published with their tokenizers; hosts may add their own
# system text, so these stay estimates. ChatML (Qwen): <|im_start|>role\n ... <|im_end|>\n.
# Llama 3: <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|>, plus BOS.
FRAMINGS = {
    "hf:qwen/qwen3": Framing(4, 0, 3, False),
    "hf:meta-llama/llama-3": Framing(4, 0, 5, False),
    "hf:deepseek-ai/deepseek-v4": Framing(2, 0, 2, False),
}
# Texts shorter than this are counted directly: hashing would cost as much as BPE.
CACHE_MIN_CHARS = 256
# Share of an estimated part stated as its error when no measured bound exists.
UNMEASURED_SHARE = 0.25


class MessageError(ValueError):
    """A malformed chat request; `field` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Accuracy:
    exact: bool
    # "tiktoken", "tokenizer", "calibrated", "heuristic" or "provider" (a count-tokens API).
    source: str
    bound_bp: int = 0
    bound_tokens: int = 0
    samples: int = 0


@dataclass
class MessagesCount:
    messages: list[tuple[int, int]]  # (tokens, image tokens) per message
    tools_tokens: int
    overhead_tokens: int
    accuracy: Accuracy
    features: Features = Features()  # frozen: one shared empty value
    # Positions sent by digest only whose digest is not in the cache for this model; when
    # either list is non-empty there is no count (the caller must resend them in full).
    unknown_messages: list[int] = field(default_factory=list)
    unknown_tools: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(t for t, _ in self.messages) + self.tools_tokens + self.overhead_tokens


class NeedsWorkers(Exception):
    """Counting inline would tokenise more unseen text than the inline budget allows."""


class Budget:
    """How many unseen characters may be tokenised inline (on the event loop)."""

    def __init__(self, chars: int) -> None:
        self.left = chars

    def spend(self, chars: int) -> None:
        self.left -= chars
        if self.left < 0:
            raise NeedsWorkers


DIGEST_BYTES = 16  # xxh3-128


@dataclass(frozen=True)
class Refs:
    """The request's optional digests: empty, or one per message / tool (each empty or
    DIGEST_BYTES long). An empty message or tool with a digest goes by reference."""

    messages: Sequence[bytes] = ()
    tools: Sequence[bytes] = ()

    def check(self, n_messages: int, n_tools: int) -> None:
        for name, digests, n in (("message_digests", self.messages, n_messages),
                                 ("tool_digests", self.tools, n_tools)):
            if digests and len(digests) != n:
                raise MessageError(name, f"{name} has {len(digests)} entries: leave it empty "
                                   f"or give one (possibly empty) per item, {n}")
            for i, d in enumerate(digests):
                if d and len(d) != DIGEST_BYTES:
                    raise MessageError(f"{name}[{i}]", f"{name}[{i}] is {len(d)} bytes; a "
                                       f"digest is {DIGEST_BYTES} bytes (xxh3-128) or empty")

    def by_reference(self, messages: Sequence[common_pb2.Message],
                     tools: Sequence[common_pb2.Tool]) -> tuple[list[int], list[int]]:
        """Positions of the messages and tools sent by digest only."""
        return ([i for i, d in enumerate(self.messages) if d and messages[i].ByteSize() == 0],
                [i for i, d in enumerate(self.tools) if d and tools[i].ByteSize() == 0])


NO_REFS = Refs()


def estimate_accuracy(fit: Fit, tokens: int) -> Accuracy:
    return Accuracy(False, "calibrated" if fit.calibrated else "heuristic", fit.error_bound_bp,
                    math.ceil(tokens * fit.error_bound_bp / 10000), fit.samples)


class Counter:
    """Counts for catalog entries. Thread-safe: the service runs it inline for small
    inputs and in worker threads for large ones."""

    def __init__(self, tokenizers: Tokenizers, cache: chunks.CountCache,
                 chunk_chars: int = 4096) -> None:
        self.tokenizers = tokenizers
        self.cache = cache
        self.chunk_chars = chunk_chars
        # Served estimator fits by model name; replaced wholesale by the store's refresher.
        self.fits: dict[str, Fit] = {}
        # Calibration samples of exactly counted models whose provider count differed.
        self.exact_mismatches: dict[str, int] = {}

    # ---- text -------------------------------------------------------------------

    def encoder(self, entry: ModelEntry) -> Encoder | None:
        return self.tokenizers.exact(entry.tokenizer)

    def count_exact(self, encoder: Encoder, text: str, budget: Budget | None = None) -> int:
        """Exact count; a text seen before costs one hash and one lookup. With a budget,
        raises NeedsWorkers instead of tokenising more unseen text than it allows."""
        if len(text) < CACHE_MIN_CHARS:
            return encoder.count(text)
        whole = (encoder.name, "text", chunks.digest(text))
        hit = self.cache.get(whole)
        if hit is not None:
            return hit  # type: ignore[return-value]
        known, missing = self.lookup(encoder, text)
        if budget is not None:
            budget.spend(sum(len(piece) for _, piece in missing))
        for key, piece in missing:
            n = encoder.count(piece)
            self.cache.put(key, n)
            known += n
        self.cache.put(whole, known)
        return known

    def uncached(self, encoder: Encoder, texts: Sequence[str]) -> list[str]:
        """The large texts among `texts` whose count is not cached yet."""
        out = []
        for text in texts:
            if len(text) >= CACHE_MIN_CHARS and self.cache.get(
                    (encoder.name, "text", chunks.digest(text))) is None:
                out.append(text)
        return out

    def remember(self, encoder: Encoder, text: str, tokens: int) -> None:
        self.cache.put((encoder.name, "text", chunks.digest(text)), tokens)

    def lookup(self, encoder: Encoder, text: str) -> tuple[int, list[tuple[Any, str]]]:
        """Tokens of the cached chunks of `text`, and the chunks still to count."""
        pieces = (chunks.split(text, self.chunk_chars) if encoder.name in SPLITTABLE
                  else [text])
        known = 0
        missing: list[tuple[Any, str]] = []
        for piece in pieces:
            key = (encoder.name, chunks.digest(piece))
            hit = self.cache.get(key)
            if hit is None:
                missing.append((key, piece))
            else:
                known += hit  # type: ignore[operator]
        return known, missing

    def features(self, text: str, budget: Budget | None = None) -> Features:
        if len(text) < CACHE_MIN_CHARS:
            return of_text(text)
        key = ("features", chunks.digest(text))
        hit = self.cache.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        if budget is not None:
            budget.spend(len(text))
        value = of_text(text)
        self.cache.put(key, value)
        return value

    def fit(self, entry: ModelEntry) -> Fit:
        found = self.fits.get(entry.name)
        return found if found is not None else estimator.uncalibrated(entry.tokenizer)

    def count_text(self, entry: ModelEntry, text: str,
                   budget: Budget | None = None) -> tuple[int, Accuracy]:
        encoder = self.encoder(entry)
        if encoder is not None:
            return self.count_exact(encoder, text, budget), Accuracy(True, encoder.source)
        fit = self.fit(entry)
        tokens = fit.estimate(self.features(text, budget))
        return tokens, estimate_accuracy(fit, tokens)

    # ---- chat -------------------------------------------------------------------

    def count_messages(self, entry: ModelEntry, messages: Sequence[common_pb2.Message],
                       tools: Sequence[common_pb2.Tool],
                       sampling: common_pb2.SamplingParams | None = None,
                       budget: Budget | None = None, refs: Refs = NO_REFS) -> MessagesCount:
        """Raises MessageError for a malformed chat. Messages and tools sent by digest only
        (`refs`) come from the cache; the unknown ones are listed in the result, which then
        has no count."""
        if not messages:
            raise MessageError("messages", "messages is empty: a chat request needs at least one")
        refs.check(len(messages), len(tools))
        encoder = self.encoder(entry)  # messages and tools are checked when first counted
        if encoder is None:
            return self._estimate_messages(entry, messages, tools, sampling, budget, refs)
        return self._openai_messages(entry, encoder, messages, tools, sampling, budget, refs)

    def _known(self, entry: ModelEntry, kind: str, name: str, i: int,
               item: Any, digests: Sequence[bytes],
               check: Callable[[int, Any], None], compute: Callable[[], object]
               ) -> object | None:
        """The value of one message or tool, by its digest. A message seen before costs one
        serialisation, one hash and one lookup; one sent by digest only (empty, with a
        digest) costs a lookup and is None when unknown. The key is always derived from
        content this counter saw (a digest sent with content must match it), and holds the
        model, so a lookup returns only what this counter computed for that model."""
        ref = digests[i] if digests else b""
        if ref and item.ByteSize() == 0:
            return self.cache.get((entry.name, kind, int.from_bytes(ref, "big")))
        digest = chunks.digest_bytes(item.SerializeToString())
        if ref and int.from_bytes(ref, "big") != digest:
            raise MessageError(f"{name}[{i}]", f"{name}[{i}] does not match the content "
                               f"of {name.split('_')[0]}s[{i}] (xxh3-128 of its protobuf "
                               "serialisation, tokenrt_counter.client)")
        key = (entry.name, kind, digest)
        hit = self.cache.get(key)
        if hit is None:
            check(i, item)
            hit = compute()
            self.cache.put(key, hit)
        return hit

    def _openai_messages(self, entry: ModelEntry, encoder: Encoder,
                         messages: Sequence[common_pb2.Message],
                         tools: Sequence[common_pb2.Tool],
                         sampling: common_pb2.SamplingParams | None,
                         budget: Budget | None, refs: Refs) -> MessagesCount:
        def count(text: str) -> int:
            return self.count_exact(encoder, text, budget) if text else 0

        framing = OPENAI if encoder.source == "tiktoken" else FRAMINGS.get(
            encoder.name, Framing(4, 0, 3, False))
        uncertain = 0  # tokens of parts counted by an undocumented or upper-bound rule
        if not framing.documented:
            uncertain += framing.priming + framing.per_message * len(messages)
        per_message: list[tuple[int, int]] = []
        unknown_messages: list[int] = []
        for i, m in enumerate(messages):
            # The count depends on the model (framing, image formula): the model is in the key.
            hit = cast("tuple[int, int, int] | None", self._known(
                entry, "message", "message_digests", i, m, refs.messages, check_message,
                partial(self._openai_message, entry, framing, m, count)))
            if hit is None:
                unknown_messages.append(i)
                continue
            tokens, image_tokens, message_uncertain = hit
            uncertain += message_uncertain
            per_message.append((tokens, image_tokens))
        func_init = 10 if encoder.name == "cl100k_base" else 7
        tools_tokens, tools_exact = (0, True) if not tools else (TOOLS_END, True)
        unknown_tools: list[int] = []
        for i, t in enumerate(tools):
            tool_hit = cast("tuple[int, bool] | None", self._known(
                entry, "tool", "tool_digests", i, t, refs.tools, check_tool,
                partial(tool_tokens, t, count, func_init)))
            if tool_hit is None:
                unknown_tools.append(i)
                continue
            n, exact = tool_hit
            tools_tokens += n
            tools_exact = tools_exact and exact
        if unknown_messages or unknown_tools:
            return unknown(unknown_messages, unknown_tools)
        if not tools_exact or not framing.documented:
            uncertain += tools_tokens
        overhead = framing.priming
        if sampling is not None and sampling.response_format.json_schema:
            n = count(sampling.response_format.json_schema) + count(
                sampling.response_format.schema_name)
            overhead += n
            uncertain += n
        result = MessagesCount(per_message, tools_tokens, overhead,
                               Accuracy(True, encoder.source))
        if uncertain:
            bound = math.ceil(uncertain * UNMEASURED_SHARE)
            result.accuracy = Accuracy(False, encoder.source, math.ceil(
                bound * 10000 / max(result.total, 1)), bound)
        return result

    def _openai_message(self, entry: ModelEntry, framing: Framing, m: common_pb2.Message,
                        count: Callable[[str], int]) -> tuple[int, int, int]:
        """(tokens, image tokens, uncertain tokens) of one message."""
        tokens = framing.per_message + count(ROLES[m.role])
        image_tokens = uncertain = 0
        for part in m.content:
            if part.HasField("image"):
                cost = self._image(entry, part.image)
                image_tokens += cost.tokens
                if not cost.exact:
                    uncertain += cost.tokens
            else:
                tokens += count(part.text)
        if m.name:
            tokens += count(m.name) + framing.per_name
        if m.tool_call_id:
            tokens += count(m.tool_call_id)
        for call in m.tool_calls:  # rendering undocumented: name + arguments + framing
            n = count(call.name) + count(call.arguments_json) + TOKENS_PER_MESSAGE
            tokens += n
            uncertain += n
        return tokens + image_tokens, image_tokens, uncertain

    def _image(self, entry: ModelEntry, image: common_pb2.ImagePart) -> images.ImageCost:
        width = image.width_px if image.HasField("width_px") else None
        height = image.height_px if image.HasField("height_px") else None
        if width is None or height is None:
            size = (images.size_from_bytes(image.data) if image.HasField("data")
                    else images.size_from_url(image.url))
            if size is not None:
                width, height = size
        return images.cost(entry.vendor, entry.name, width, height,
                           DETAILS.get(image.detail, "auto"))

    def _message_features(self, m: common_pb2.Message, budget: Budget | None) -> Features:
        f = Features(messages=1)
        n_images = 0
        for part in m.content:
            if part.HasField("image"):
                n_images += 1
            else:
                f = f + self.features(part.text, budget)
        for text in (m.name, m.tool_call_id):
            if text:
                f = f + of_text(text)
        for call in m.tool_calls:
            f = f + of_text(call.name) + self.features(call.arguments_json, budget)
        return f + Features(images=n_images)

    def _tool_features(self, t: common_pb2.Tool, budget: Budget | None) -> Features:
        return (of_text(t.name) + of_text(t.description)
                + self.features(t.parameters_json_schema, budget))

    def _estimate_messages(self, entry: ModelEntry, messages: Sequence[common_pb2.Message],
                           tools: Sequence[common_pb2.Tool],
                           sampling: common_pb2.SamplingParams | None,
                           budget: Budget | None, refs: Refs) -> MessagesCount:
        fit = self.fit(entry)
        image_weight = fit.weights[-1]
        total_features = Features()
        per_message: list[tuple[int, int]] = []
        unknown_messages: list[int] = []
        for i, m in enumerate(messages):
            # Features do not depend on the fit, so a message seen before costs a lookup.
            f = self._known(entry, "message-features", "message_digests", i, m,
                            refs.messages, check_message,
                            partial(self._message_features, m, budget))
            if f is None:
                unknown_messages.append(i)
                continue
            assert isinstance(f, Features)
            total_features = total_features + f
            tokens = fit.estimate(f)
            per_message.append((tokens, min(tokens, math.ceil(image_weight * f.images))))
        tools_features = Features()
        unknown_tools: list[int] = []
        for i, t in enumerate(tools):
            tf = self._known(entry, "tool-features", "tool_digests", i, t, refs.tools,
                             check_tool, partial(self._tool_features, t, budget))
            if tf is None:
                unknown_tools.append(i)
                continue
            assert isinstance(tf, Features)
            tools_features = tools_features + tf
        if unknown_messages or unknown_tools:
            return unknown(unknown_messages, unknown_tools)
        if sampling is not None and sampling.response_format.json_schema:
            tools_features = tools_features + self.features(
                sampling.response_format.json_schema, budget)
        total_features = total_features + tools_features
        result = MessagesCount(per_message, fit.estimate(tools_features), 0,
                               Accuracy(False, "heuristic"), total_features)
        result.accuracy = estimate_accuracy(fit, result.total)
        return result


def unknown(messages: list[int], tools: list[int]) -> MessagesCount:
    """The answer when some items sent by digest only are not known: no count."""
    return MessagesCount([], 0, 0, Accuracy(False, "heuristic"), unknown_messages=messages,
                         unknown_tools=tools)


def check_messages(messages: Sequence[common_pb2.Message],
                   tools: Sequence[common_pb2.Tool]) -> None:
    if not messages:
        raise MessageError("messages", "messages is empty: a chat request needs at least one")
    for i, m in enumerate(messages):
        check_message(i, m)
    for i, t in enumerate(tools):
        check_tool(i, t)


def check_message(i: int, m: common_pb2.Message) -> None:
    """Raises MessageError when messages[i] is malformed."""
    if m.role not in ROLES:
        raise MessageError(f"messages[{i}].role",
                           f"messages[{i}].role is unset or unknown; use one of "
                           "SYSTEM, USER, ASSISTANT, TOOL, DEVELOPER")
    if m.role == common_pb2.ROLE_TOOL and not m.tool_call_id:
        raise MessageError(f"messages[{i}].tool_call_id",
                           f"messages[{i}] is a TOOL message without tool_call_id")
    for j, part in enumerate(m.content):
        if part.HasField("image"):
            img = part.image
            if not img.HasField("url") and not img.HasField("data"):
                raise MessageError(f"messages[{i}].content[{j}].image",
                                   f"messages[{i}].content[{j}].image has no url or data")
            if img.HasField("data") and not img.media_type:
                raise MessageError(f"messages[{i}].content[{j}].image.media_type",
                                   f"messages[{i}].content[{j}].image carries data but no "
                                   "media_type (e.g. image/png)")
        elif not part.HasField("text"):
            raise MessageError(f"messages[{i}].content[{j}]",
                               f"messages[{i}].content[{j}] has neither text nor image")
    for j, call in enumerate(m.tool_calls):
        if not call.name:
            raise MessageError(f"messages[{i}].tool_calls[{j}].name",
                               f"messages[{i}].tool_calls[{j}] names no tool")


def check_tool(i: int, t: common_pb2.Tool) -> None:
    """Raises MessageError when tools[i] is malformed."""
    if not t.name:
        raise MessageError(f"tools[{i}].name", f"tools[{i}] has no name")
    if t.parameters_json_schema:
        try:
            schema = json.loads(t.parameters_json_schema)
        except ValueError as exc:
            raise MessageError(f"tools[{i}].parameters_json_schema",
                               f"tools[{i}].parameters_json_schema is not valid JSON: "
                               f"{exc}") from None
        if not isinstance(schema, dict):
            raise MessageError(f"tools[{i}].parameters_json_schema",
                               f"tools[{i}].parameters_json_schema must be a JSON object")


def _strip_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def tool_tokens(t: common_pb2.Tool, count: Callable[[str], int],
                func_init: int) -> tuple[int, bool]:
    """One tool definition by OpenAI's cookbook (`num_tokens_for_tools`); the definitions
    of a request cost the sum of their shares + TOOLS_END. The cookbook renders flat
    parameter schemas; nested objects and arrays of objects are counted as their JSON text
    and make the count an estimate (False)."""
    prop_init, prop_key, enum_init, enum_item = 3, 3, -3, 3
    total, exact = func_init + count(f"{t.name}:{_strip_period(t.description)}"), True
    schema = json.loads(t.parameters_json_schema) if t.parameters_json_schema else {}
    properties = schema.get("properties") or {}
    if not isinstance(properties, dict) or not properties:
        return total, exact
    total += prop_init
    for key, prop in properties.items():
        total += prop_key
        prop = prop if isinstance(prop, dict) else {}
        if "enum" in prop and isinstance(prop["enum"], list):
            total += enum_init
            for item in prop["enum"]:
                total += enum_item + count(str(item))
        kind = prop.get("type", "")
        desc = _strip_period(str(prop.get("description", "")))
        total += count(f"{key}:{kind}:{desc}")
        nested = {k: v for k, v in prop.items()
                  if k in ("properties", "items", "anyOf", "oneOf", "allOf", "$ref")}
        if nested:
            exact = False
            total += count(json.dumps(nested, separators=(",", ":")))
    return total, exact
