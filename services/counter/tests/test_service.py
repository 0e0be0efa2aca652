"""The counter service as a real process on real Redis: every RPC, every bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import tiktoken
from counter_corpus import CODE_FILE, JARGON, TEXTS, WEATHER, WEATHER_TOOL, png
from counter_fixtures import start_counter, stop

from tokenrt.v1 import common_pb2 as c
from tokenrt.v1 import counter_pb2 as pb
from tokenrt.v1 import counter_pb2_grpc
from tokenrt_testkit.procs import ServiceProcess

DETAIL_KEY = "tokenrt-error-detail-bin"
O200K = tiktoken.get_encoding("o200k_base")
CL100K = tiktoken.get_encoding("cl100k_base")


def detail(err: grpc.aio.AioRpcError) -> c.ErrorDetail:
    for key, value in err.trailing_metadata() or ():
        if key == DETAIL_KEY:
            return c.ErrorDetail.FromString(value)
    pytest.fail(f"no {DETAIL_KEY} in the error's trailing metadata")


async def expect_error(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == code, err.value.details()
    return err.value


@pytest.fixture
async def stub(counter: ServiceProcess):
    async with grpc.aio.insecure_channel(
            counter.address, options=[("grpc.max_send_message_length", 64 << 20),
                                      ("grpc.max_receive_message_length", 64 << 20)]) as ch:
        yield counter_pb2_grpc.CounterServiceStub(ch)


async def test_count_text_equals_tiktoken(stub) -> None:
    for text in [*TEXTS, CODE_FILE]:
        for model, enc in (("gpt-4o", O200K), ("gpt-4", CL100K)):
            reply = await stub.CountText(pb.CountTextRequest(model=model, text=text), timeout=10)
            assert reply.tokens == len(enc.encode(text, disallowed_special=())), text[:40]
            assert reply.accuracy.exactness == c.EXACTNESS_EXACT
            assert reply.accuracy.source == c.COUNT_SOURCE_TIKTOKEN
            assert reply.tokenizer == enc.name


async def test_invalid_utf8_counts_as_replacement_characters(stub) -> None:
    raw = b"ok \xff\xfe bad \xed\xa0\x80 surrogate \xe4\xb8"
    reply = await stub.CountText(pb.CountTextRequest(model="gpt-4o", raw_utf8=raw), timeout=5)
    assert reply.tokens == len(O200K.encode(raw.decode("utf-8", "replace"),
                                            disallowed_special=()))


async def test_model_names_resolve_and_unknown_names_suggest(stub) -> None:
    reply = await stub.CountText(pb.CountTextRequest(model="ft:gpt-4o-mini:acme::x1", text="hi"),
                                 timeout=5)
    assert reply.model == "gpt-4o-mini"
    err = await expect_error(stub.CountText(pb.CountTextRequest(model="gpt-4o-mnii", text="x"),
                                            timeout=5), grpc.StatusCode.NOT_FOUND)
    d = detail(err)
    assert d.reason == c.ERROR_REASON_MODEL_NOT_FOUND and d.suggestions[0] == "gpt-4o-mini"
    assert "gpt-4o-mini" in err.details()
    err = await expect_error(stub.CountText(pb.CountTextRequest(text="x"), timeout=5),
                             grpc.StatusCode.INVALID_ARGUMENT)
    assert detail(err).field == "model"


async def test_over_the_size_limit_is_invalid_argument_naming_it(stub) -> None:
    limit = 12 * 1024 * 1024
    err = await expect_error(stub.CountText(pb.CountTextRequest(model="gpt-4o",
                                                                text="a" * (limit + 1)),
                                            timeout=30), grpc.StatusCode.INVALID_ARGUMENT)
    d = detail(err)
    assert d.reason == c.ERROR_REASON_MESSAGE_TOO_LARGE
    assert (d.limit, d.actual, d.unit) == (limit, limit + 1, "bytes")
    assert str(limit) in err.details() and "TOKENRT_COUNTER_MAX_REQUEST_BYTES" in err.details()


async def test_ten_megabytes_count_without_blocking_the_event_loop(stub) -> None:
    text = (CODE_FILE + "\n" + " ".join(TEXTS[1:20]) + "\n") * 600
    text = text[: 10 * 1024 * 1024]
    big = asyncio.ensure_future(stub.CountText(pb.CountTextRequest(model="gpt-4o", text=text),
                                               timeout=120))
    await asyncio.sleep(0.05)
    small_answers = 0
    while not big.done():
        await stub.CountText(pb.CountTextRequest(model="gpt-4o", text="ping"), timeout=5)
        small_answers += 1
        await asyncio.sleep(0.01)
    # Small calls kept being answered while the 10 MB text was counted.
    assert small_answers >= 3
    assert (await big).tokens == len(O200K.encode_ordinary(text))


async def test_count_messages_matches_the_cookbook(stub) -> None:
    for model, jargon, weather in (("gpt-4o", 124, 101), ("gpt-4-0613", 129, 105)):
        got = await stub.CountMessages(pb.CountMessagesRequest(model=model, messages=JARGON),
                                       timeout=5)
        assert got.input_tokens == jargon and got.overhead_tokens == 3
        assert got.input_tokens == sum(m.tokens for m in got.messages) + 3
        assert [m.index for m in got.messages] == list(range(len(JARGON)))
        got = await stub.CountMessages(pb.CountMessagesRequest(
            model=model, messages=WEATHER, tools=[WEATHER_TOOL]), timeout=5)
        assert got.input_tokens == weather
        assert got.accuracy.exactness == c.EXACTNESS_EXACT


async def test_count_messages_with_an_image(stub) -> None:
    m = c.Message(role=c.ROLE_USER, content=[
        c.ContentPart(text="Describe"),
        c.ContentPart(image=c.ImagePart(data=png(2048, 4096), media_type="image/png",
                                        detail=c.IMAGE_DETAIL_HIGH))])
    got = await stub.CountMessages(pb.CountMessagesRequest(model="gpt-4o", messages=[m]),
                                   timeout=5)
    assert got.messages[0].image_tokens == 1105
    assert got.messages[0].tokens == 3 + 1 + len(O200K.encode("Describe")) + 1105


async def test_malformed_messages_are_invalid_argument_with_the_field(stub) -> None:
    bad = [c.Message(role=c.ROLE_TOOL, content=[c.ContentPart(text="result")])]
    err = await expect_error(stub.CountMessages(pb.CountMessagesRequest(model="gpt-4o",
                                                                        messages=bad),
                                                timeout=5), grpc.StatusCode.INVALID_ARGUMENT)
    assert detail(err).field == "messages[0].tool_call_id"
    await expect_error(stub.CountMessages(pb.CountMessagesRequest(model="gpt-4o"), timeout=5),
                       grpc.StatusCode.INVALID_ARGUMENT)
    tool = c.Tool(name="f", parameters_json_schema="{not json")
    err = await expect_error(stub.CountMessages(pb.CountMessagesRequest(
        model="gpt-4o", messages=WEATHER, tools=[tool]), timeout=5),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert detail(err).field == "tools[0].parameters_json_schema"


async def test_count_messages_batch_answers_each_as_count_messages_would(stub) -> None:
    good = pb.CountMessagesRequest(model="gpt-4o", messages=JARGON)
    tools = pb.CountMessagesRequest(model="gpt-4-0613", messages=WEATHER, tools=[WEATHER_TOOL])
    unknown = pb.CountMessagesRequest(model="gpt-99-turbo", messages=JARGON)
    bad = pb.CountMessagesRequest(model="gpt-4o", messages=[
        c.Message(role=c.ROLE_TOOL, content=[c.ContentPart(text="result")])])
    got = await stub.CountMessagesBatch(pb.CountMessagesBatchRequest(
        requests=[good, unknown, tools, bad]), timeout=10)
    assert [r.WhichOneof("result") for r in got.results] == [
        "response", "error", "response", "error"]
    assert got.results[0].response == await stub.CountMessages(good, timeout=5)
    assert got.results[2].response.input_tokens == 105
    assert got.results[1].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert got.results[1].error.detail.suggestions
    assert got.results[3].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert got.results[3].error.detail.field == "messages[0].tool_call_id"
    await expect_error(stub.CountMessagesBatch(pb.CountMessagesBatchRequest(
        requests=[good] * 1001), timeout=10), grpc.StatusCode.INVALID_ARGUMENT)


async def test_count_batch(stub) -> None:
    texts = [t for t in TEXTS if t][:10]
    got = await stub.CountBatch(pb.CountBatchRequest(model="gpt-4o", texts=texts), timeout=10)
    assert list(got.tokens) == [len(O200K.encode_ordinary(t)) for t in texts]
    assert got.total_tokens == sum(got.tokens)


async def test_resolve_model(stub) -> None:
    got = await stub.ResolveModel(pb.ResolveModelRequest(model="gpt-4o-2024-08-06"), timeout=5)
    assert got.match == pb.MODEL_MATCH_SNAPSHOT
    assert got.model.name == "gpt-4o" and got.model.provider_model_id == "gpt-4o-2024-08-06"
    assert got.model.tokenizer == "o200k_base" and got.model.context_window_tokens == 128000
    got = await stub.ResolveModel(pb.ResolveModelRequest(model="ft:gpt-4o-mini:acme::x1"),
                                  timeout=5)
    assert got.match == pb.MODEL_MATCH_FINE_TUNE and got.model.fine_tuned
    assert got.model.price.standard.input_nusd_per_mtok == 300_000_000
    got = await stub.ResolveModel(pb.ResolveModelRequest(model="claude-sonnet-4-5"), timeout=5)
    assert got.model.count_exactness == c.EXACTNESS_ESTIMATED
    assert got.model.provider == c.PROVIDER_ANTHROPIC
    await expect_error(stub.ResolveModel(pb.ResolveModelRequest(model="nope-9"), timeout=5),
                       grpc.StatusCode.NOT_FOUND)


async def test_list_catalog_pages_and_filters(stub) -> None:
    first = await stub.ListCatalog(pb.ListCatalogRequest(page_size=10), timeout=5)
    assert len(first.models) == 10 and first.next_page_token and first.catalog_version
    names = [m.name for m in first.models]
    token = first.next_page_token
    while token:
        page = await stub.ListCatalog(pb.ListCatalogRequest(page_size=10, page_token=token),
                                      timeout=5)
        names += [m.name for m in page.models]
        token = page.next_page_token
    assert len(names) == len(set(names)) > 40
    anthropic = await stub.ListCatalog(pb.ListCatalogRequest(provider=c.PROVIDER_ANTHROPIC),
                                       timeout=5)
    assert anthropic.models and all(m.provider == c.PROVIDER_ANTHROPIC
                                    for m in anthropic.models)
    mini = await stub.ListCatalog(pb.ListCatalogRequest(name_contains="4O-MINI"), timeout=5)
    assert [m.name for m in mini.models] == ["gpt-4o-mini"]
    await expect_error(stub.ListCatalog(pb.ListCatalogRequest(page_token="%%%"), timeout=5),
                       grpc.StatusCode.INVALID_ARGUMENT)


async def test_estimate_cost(stub) -> None:
    usage = c.Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500)
    got = await stub.EstimateCost(pb.EstimateCostRequest(model="gpt-4o", usage=usage),
                                  timeout=5)
    assert got.cost_nusd == 7_250_000 == got.breakdown.total_cost_nusd
    assert (got.breakdown.input_cost_nusd, got.breakdown.cached_input_cost_nusd,
            got.breakdown.output_cost_nusd) == (2_000_000, 250_000, 5_000_000)
    batch = await stub.EstimateCost(pb.EstimateCostRequest(
        model="gpt-4o", usage=usage, billing_mode=pb.BILLING_MODE_BATCH), timeout=5)
    # 800 * $1.25/M + 200 * $1.25/M (no batch cache-read price: input) + 500 * $5/M
    assert batch.cost_nusd == 1_000_000 + 250_000 + 2_500_000
    long = await stub.EstimateCost(pb.EstimateCostRequest(
        model="gemini-2.5-pro", usage=c.Usage(input_tokens=200_001, output_tokens=1000)),
        timeout=5)
    assert long.long_context_applied and long.cost_nusd == 515_002_500
    err = await expect_error(stub.EstimateCost(pb.EstimateCostRequest(
        model="gpt-4o", usage=c.Usage(input_tokens=1, cached_input_tokens=2)), timeout=5),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert detail(err).field == "usage.cached_input_tokens"


def features_pb(messages: list[str]) -> pb.ScriptFeatures:
    from tokenrt_counter.api import features_pb as to_pb
    from tokenrt_counter.features import Features, of_text
    f = Features()
    for text in messages:
        f = f + of_text(text) + Features(messages=1)
    return to_pb(f)


async def test_calibration_persists_across_restarts(counter: ServiceProcess, stub,
                                                    tmp_path: Path) -> None:
    import random

    from counter_corpus import prompt

    rng = random.Random(3)
    samples = []
    for i in range(250):
        messages = prompt(rng)
        reported = 3 + sum(4 + len(CL100K.encode_ordinary(t)) for t in messages)
        samples.append(pb.CalibrationSample(model="claude-haiku-4-5", counted_input_tokens=1,
                                            reported_input_tokens=reported,
                                            features=features_pb(messages),
                                            request_id=f"r{i}"))
    samples.append(pb.CalibrationSample(model="no-such-model", counted_input_tokens=1,
                                        reported_input_tokens=1))
    samples.append(pb.CalibrationSample(model="claude-haiku-4-5", counted_input_tokens=0,
                                        reported_input_tokens=0))
    got = await stub.Calibrate(pb.CalibrateRequest(samples=samples), timeout=30)
    assert got.accepted == 250 and got.rejected == 2
    (state,) = got.models
    assert state.model == "claude-haiku-4-5" and state.samples == 250
    assert 0 < state.error_bound_bp < 2500  # well below the prior's 3000

    text = "Summarise the following design notes for the budget service, please."
    answer = await stub.CountText(pb.CountTextRequest(model="claude-haiku-4-5", text=text),
                                  timeout=5)
    assert answer.accuracy.exactness == c.EXACTNESS_ESTIMATED
    assert answer.accuracy.source == c.COUNT_SOURCE_CALIBRATED_ESTIMATE
    assert answer.accuracy.error_bound_bp == state.error_bound_bp
    assert answer.accuracy.calibration_samples == 250
    assert answer.accuracy.error_bound_tokens >= 1

    # Another replica (a fresh process) serves the same fit from Redis.
    other = start_counter(tmp_path, "replica")
    try:
        async with grpc.aio.insecure_channel(other.address) as ch:
            replica = counter_pb2_grpc.CounterServiceStub(ch)
            for _ in range(50):
                again = await replica.CountText(pb.CountTextRequest(model="claude-haiku-4-5",
                                                                    text=text), timeout=5)
                if again.accuracy.calibration_samples == 250:
                    break
                await asyncio.sleep(0.2)
            assert again.accuracy.source == c.COUNT_SOURCE_CALIBRATED_ESTIMATE
            assert again.tokens == answer.tokens
            assert again.accuracy.error_bound_bp == state.error_bound_bp
    finally:
        stop(other)


async def test_uncalibrated_models_say_heuristic(stub) -> None:
    got = await stub.CountMessages(pb.CountMessagesRequest(model="gemini-2.5-flash",
                                                           messages=JARGON), timeout=5)
    assert got.accuracy.exactness == c.EXACTNESS_ESTIMATED
    assert got.accuracy.source == c.COUNT_SOURCE_HEURISTIC
    assert got.accuracy.error_bound_bp == 3000 and got.accuracy.error_bound_tokens > 0
    assert got.features.message_count == len(JARGON) and got.features.latin_chars > 0
    await expect_error(stub.Calibrate(pb.CalibrateRequest(), timeout=5),
                       grpc.StatusCode.INVALID_ARGUMENT)


def test_bad_catalog_override_stops_startup_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tokenrt_testkit.stack import stack_env
    bad = tmp_path / "prices.yaml"
    bad.write_text("models:\n  - name: gpt-4o\n    prices: {input: 2.5}\n")
    env = stack_env(tmp_path, TOKENRT_PRICING_OVERRIDES_PATH=str(bad))
    done = subprocess.run([sys.executable, "-m", "tokenrt_counter"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "quoted decimal strings" in done.stderr and "Traceback" not in done.stderr





async def test_cache_hits_show_in_the_metrics(counter: ServiceProcess, stub) -> None:
    import urllib.request

    from tokenrt_common.settings import load_settings

    port = load_settings(counter.env).endpoint("counter").metrics_port

    def page() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                      timeout=5).read().decode()

    def scrape() -> dict[str, float]:
        return {line.split()[0]: float(line.split()[1]) for line in page().splitlines()
                if line.startswith("tokenrt_counter_cache_")}

    text = CODE_FILE + "\n# metrics test\n"
    await stub.CountText(pb.CountTextRequest(model="gpt-4o", text=text), timeout=10)
    before = scrape()
    for _ in range(3):
        await stub.CountText(pb.CountTextRequest(model="gpt-4o", text=text), timeout=10)
    after = scrape()
    assert after["tokenrt_counter_cache_hits_total"] >= before["tokenrt_counter_cache_hits_total"] + 3
    assert after["tokenrt_counter_cache_misses_total"] == before["tokenrt_counter_cache_misses_total"]
    assert after["tokenrt_counter_cache_entries"] > 0

    # Exact models' samples are checked: a provider disagreeing shows in the metrics.
    sample = pb.CalibrationSample(model="gpt-4.1", counted_input_tokens=100,
                                  reported_input_tokens=103)
    got = await stub.Calibrate(pb.CalibrateRequest(samples=[sample, sample]), timeout=10)
    assert got.accepted == 2 and not got.models
    assert 'tokenrt_counter_exact_mismatches_total{model="gpt-4.1"} 2.0' in page()


async def test_refits_are_throttled_but_no_sample_is_lost(stub) -> None:
    import random

    from counter_corpus import prompt

    rng = random.Random(11)

    def samples(n: int) -> list[pb.CalibrationSample]:
        out = []
        for _ in range(n):
            messages = prompt(rng)
            reported = 3 + sum(4 + len(CL100K.encode_ordinary(t)) for t in messages)
            out.append(pb.CalibrationSample(model="gemini-2.5-flash", counted_input_tokens=1,
                                            reported_input_tokens=reported,
                                            features=features_pb(messages)))
        return out

    async def served() -> int:
        got = await stub.CountText(pb.CountTextRequest(model="gemini-2.5-flash", text="hi"),
                                   timeout=5)
        return got.accuracy.calibration_samples

    first = await stub.Calibrate(pb.CalibrateRequest(samples=samples(30)), timeout=30)
    assert first.models[0].samples == 30 and await served() == 30
    second = await stub.Calibrate(pb.CalibrateRequest(samples=samples(10)), timeout=30)
    assert second.models[0].samples == 40  # stored...
    assert await served() == 30  # ...but not refitted within a second
    await asyncio.sleep(1.1)
    third = await stub.Calibrate(pb.CalibrateRequest(samples=samples(5)), timeout=30)
    assert third.models[0].samples == 45 and await served() == 45


async def test_large_estimated_inputs_are_counted_off_the_loop_consistently(stub) -> None:
    from tokenrt_counter.estimator import uncalibrated
    from tokenrt_counter.features import of_text

    text = (CODE_FILE + "\n" + " ".join(TEXTS[1:20]) + "\n") * 40  # ~2 MB, far above offload
    got = await stub.CountText(pb.CountTextRequest(model="mistral-large-latest", text=text),
                               timeout=60)
    assert got.tokens == uncalibrated("estimate:mistral").estimate(of_text(text))
    chat = [c.Message(role=c.ROLE_USER, content=[c.ContentPart(text=text)])]
    messages = await stub.CountMessages(pb.CountMessagesRequest(
        model="mistral-large-latest", messages=chat), timeout=60)
    assert messages.features.message_count == 1
    assert messages.features.code_chars > 0 and messages.input_tokens > got.tokens


async def test_the_limit_counts_bytes_not_characters(stub) -> None:
    limit = 12 * 1024 * 1024
    han = "漢" * (limit // 3 // 8 + 1)  # 3 bytes each: eight parts together exceed the limit
    chat = [c.Message(role=c.ROLE_USER, content=[c.ContentPart(text=han)]) for _ in range(8)]
    err = await expect_error(stub.CountMessages(pb.CountMessagesRequest(model="gpt-4o",
                                                                        messages=chat),
                                                timeout=30), grpc.StatusCode.INVALID_ARGUMENT)
    d = detail(err)
    assert d.reason == c.ERROR_REASON_MESSAGE_TOO_LARGE and d.actual > limit
