"""TLS and mTLS from settings: the server credentials `serve` uses and the client channels
`open_channel` opens, on a real in-process gRPC server with certificates made here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tokenrt_common.client import open_channel_to, open_sync_channel
from tokenrt_common.server import server_credentials
from tokenrt_common.settings import Settings, SettingsError, load_settings
from tokenrt_testkit.pki import Authority

PATH = "/t.T/Echo"


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"echo:" + request


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority(folder / "ca")
    other = Authority(folder / "other", name="someone else's CA")
    return {"ca": ca, "server": ca.issue("server"), "client": ca.issue("client"),
            "stranger": other.issue("stranger"), "other": other}


def settings_for(ca: Authority, leaf: object, mode: str = "mtls") -> Settings:
    return load_settings(ca.env(leaf, mode))  # type: ignore[arg-type]


async def serve(settings: Settings) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "t.T", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})])
    credentials = server_credentials(settings)
    assert credentials is not None
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def mtls_server(pki: dict[str, object]) -> AsyncIterator[str]:
    server, address = await serve(settings_for(pki["ca"], pki["server"]))  # type: ignore[arg-type]
    yield address
    await server.stop(None)


async def call(channel: grpc.aio.Channel) -> bytes:
    return await channel.unary_unary(PATH)(b"hi", timeout=5)  # type: ignore[no-any-return]


async def test_mtls_call_with_a_client_certificate_of_the_ca_succeeds(
    pki: dict[str, object], mtls_server: str,
) -> None:
    settings = settings_for(pki["ca"], pki["client"])  # type: ignore[arg-type]
    async with open_channel_to(mtls_server, settings) as channel:
        assert await call(channel) == b"echo:hi"

    def blocking() -> bytes:
        with open_sync_channel(mtls_server, settings) as sync:
            return sync.unary_unary(PATH)(b"x", timeout=5)  # type: ignore[no-any-return]

    # The server runs on this event loop: the blocking client goes to a thread.
    assert await asyncio.to_thread(blocking) == b"echo:x"


async def test_mtls_refuses_a_client_without_a_certificate(
    pki: dict[str, object], mtls_server: str,
) -> None:
    ca: Authority = pki["ca"]  # type: ignore[assignment]
    no_cert = grpc.ssl_channel_credentials(root_certificates=ca.ca.cert.read_bytes())
    async with grpc.aio.secure_channel(mtls_server, no_cert) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_refuses_a_certificate_from_another_ca_and_plaintext(
    pki: dict[str, object], mtls_server: str,
) -> None:
    ca: Authority = pki["ca"]  # type: ignore[assignment]
    stranger = pki["stranger"]
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.ca.cert.read_bytes(),
        private_key=stranger.key.read_bytes(),  # type: ignore[attr-defined]
        certificate_chain=stranger.cert.read_bytes())  # type: ignore[attr-defined]
    async with grpc.aio.secure_channel(mtls_server, creds) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.insecure_channel(mtls_server) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(plain)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_refuses_a_server_its_ca_did_not_sign(pki: dict[str, object]) -> None:
    other: Authority = pki["other"]  # type: ignore[assignment]
    server, address = await serve(settings_for(other, pki["stranger"]))
    try:
        settings = settings_for(pki["ca"], pki["client"])  # type: ignore[arg-type]
        async with open_channel_to(address, settings) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


async def test_tls_mode_needs_no_client_certificate(pki: dict[str, object]) -> None:
    ca: Authority = pki["ca"]  # type: ignore[assignment]
    server, address = await serve(settings_for(ca, pki["server"], "tls"))
    try:
        bare = grpc.ssl_channel_credentials(root_certificates=ca.ca.cert.read_bytes())
        async with grpc.aio.secure_channel(address, bare) as channel:
            assert await call(channel) == b"echo:hi"
    finally:
        await server.stop(None)


def test_tls_off_by_default_and_files_required_when_on(tmp_path: Path) -> None:
    default = load_settings({})
    assert default.tls_mode == "off"
    assert server_credentials(default) is None
    with pytest.raises(SettingsError, match="TOKENRT_TLS_CA_FILE: required"):
        load_settings({"TOKENRT_TLS_MODE": "mtls"})
    with pytest.raises(SettingsError, match="TOKENRT_TLS_MODE: 'on' is not one of"):
        load_settings({"TOKENRT_TLS_MODE": "on"})
    present = tmp_path / "x.pem"
    present.write_text("x")
    with pytest.raises(SettingsError, match="TOKENRT_TLS_KEY_FILE: .* is not a readable file"):
        load_settings({"TOKENRT_TLS_MODE": "tls", "TOKENRT_TLS_CA_FILE": str(present),
                       "TOKENRT_TLS_CERT_FILE": str(present),
                       "TOKENRT_TLS_KEY_FILE": str(tmp_path / "missing.pem")})
