"""Transport security: TLS verification, plain http refused, redirects, the response-size cap.

The TLS tests run a real HTTPS server on 127.0.0.1 with a certificate made for the test
by the ``openssl`` command (a throwaway CA and a leaf for ``IP:127.0.0.1``); they are
skipped where ``openssl`` is missing, and one check that needs no certificate (the
client's connector verifies by default) always runs. The redirect and size tests use
FakePatchworks where it has the fault, and a tiny aiohttp app of their own otherwise.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web

from patchworks_async import (
    APIError,
    AuthoriseRequest,
    InvalidRequestError,
    Login,
    PatchworksClient,
    ReauthoriseRequest,
    ResponseTooLargeError,
    RetryPolicy,
    Timeout,
    TransportError,
)
from patchworks_async.testing import FakePatchworks, Fault

NO_RETRY: Final = RetryPolicy.disabled()
KEY: Final = "pk_transport_security_key"
AUTHORISE: Final = AuthoriseRequest(
    authentication_implementation_id="impl-1",
    timezone="UTC",
    date_format="Y-m-d",
    rate_limit_unit="minute",
    rate_limit_duration=60,
)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class App:
    """A tiny aiohttp app on 127.0.0.1 that records what reaches it."""

    def __init__(self, handler: _Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.seen: list[web.Request] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        return await self.handler(request)

    async def __aenter__(self) -> App:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def _client(base_url: str, **kwargs: Any) -> PatchworksClient:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", NO_RETRY)
    return PatchworksClient(base_url=base_url, **kwargs)


# -- TLS ---------------------------------------------------------------------------------


class Certificates:
    def __init__(self, ca: Path, leaf: Path, key: Path) -> None:
        self.ca = ca
        self.leaf = leaf
        self.key = key

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.leaf, self.key)
        return context

    def trusting_client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def _openssl(*args: str) -> None:
    # Fixed arguments, no shell; the binary was found with shutil.which.
    subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: S603, S607


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca, key, csr, leaf = (
        folder / name for name in ("ca.key", "ca.pem", "leaf.key", "leaf.csr", "leaf.pem")
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    ca_extensions = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca),
             "-subj", "/CN=patchworks-async test CA",
             *(arg for ext in ca_extensions for arg in ("-addext", ext)))  # fmt: skip
    _openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    extensions = folder / "leaf.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    signing = ["-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2"]
    _openssl("x509", "-req", "-in", str(csr), *signing, "-out", str(leaf),
             "-extfile", str(extensions))  # fmt: skip
    return Certificates(ca, leaf, key)


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"authenticated": True})


async def test_the_client_verifies_certificates_by_default() -> None:
    # Needs no certificate: the connector the client builds verifies (ssl=True means
    # aiohttp's default, verifying context), and no option turns that off silently.
    async with _client("https://127.0.0.1:1") as client:
        session = client._pipeline.transport._ensure_session()
        connector = session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector._ssl is True


async def test_an_untrusted_certificate_is_refused_before_anything_is_sent(
    certificates: Certificates,
) -> None:
    async with App(_ok, certificates.server_context()) as app:
        async with _client(app.origin) as client:
            with pytest.raises(TransportError) as info:
                await client.oauth.authenticate()
        assert app.seen == []  # the API key never crossed the connection
    assert info.value.sent is False
    assert info.value.retriable is False  # the same certificate fails every time
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorCertificateError)


async def test_a_password_never_goes_to_an_unverified_login_server(
    certificates: Certificates,
) -> None:
    async with App(_ok, certificates.server_context()) as app:
        login = Login("user", "s3cret-password", url=app.origin + "/fabric/api/login")
        async with _client(app.origin, api_key=None, login=login) as client:
            with pytest.raises(TransportError) as info:
                await client.oauth.authenticate()
        assert app.seen == []
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorCertificateError)


async def test_a_trusted_certificate_works(certificates: Certificates) -> None:
    # The positive control: the same server is accepted once its CA is trusted.
    async with App(_ok, certificates.server_context()) as app:
        context = certificates.trusting_client_context()
        async with _client(app.origin, ssl_context=context) as client:
            assert await client.oauth.authenticate() == {"authenticated": True}
        assert [r.headers["Authorization"] for r in app.seen] == [KEY]


async def test_the_host_name_is_checked(certificates: Certificates) -> None:
    # The certificate is for 127.0.0.1; "localhost" reaches the same server but does
    # not match it, so even a trusted CA does not make the connection acceptable.
    async with App(_ok, certificates.server_context()) as app:
        context = certificates.trusting_client_context()
        url = f"https://localhost:{app.port}"
        async with _client(url, ssl_context=context) as client:
            with pytest.raises(TransportError) as info:
                await client.oauth.authenticate()
        assert app.seen == []
    assert isinstance(info.value.__cause__, aiohttp.ClientSSLError)


# -- plain http ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://core.wearepatchworks.com",
        "HTTP://core.wearepatchworks.com",
        "http://10.0.0.1",
        "http://127.0.0.1.example.com",
        "http://localhost.example.com",
        "http://[::ffff:10.0.0.1]",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _client(url)
    assert info.value.field == "base_url"
    # The explicit opt-in is the one way to insist.
    assert _client(url, allow_insecure_http=True).base_url == url


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://127.5.6.7", "http://localhost:1", "http://[::1]:80"],
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert _client(url).base_url == url


def test_plain_http_is_refused_from_the_environment_and_for_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATCHWORKS_BASE_URL", "http://core.wearepatchworks.com")
    with pytest.raises(InvalidRequestError):
        PatchworksClient(api_key=KEY)
    login = Login("user", "password", url="http://app.wearepatchworks.com/fabric/api/login")
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(base_url="https://core.wearepatchworks.com", login=login)
    assert info.value.field == "login.url"


@pytest.mark.parametrize(
    "url", ["https://user:pw@core.wearepatchworks.com", "ftp://core.wearepatchworks.com", "x"]
)
def test_other_unsafe_base_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequestError):
        _client(url)


# -- redirects ---------------------------------------------------------------------------

CALLS: Final[dict[str, Callable[[PatchworksClient], Awaitable[Any]]]] = {
    "authenticate": lambda c: c.oauth.authenticate(),
    "authorise": lambda c: c.oauth.authorise(AUTHORISE),
    "reauthorise": lambda c: c.oauth.reauthorise("1", ReauthoriseRequest(timezone="UTC")),
    "woo_app_auth": lambda c: c.oauth.woo_app_auth(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_a_redirect_to_another_origin_is_not_followed(
    fake: FakePatchworks, call: str
) -> None:
    fake.add_instance("1")
    fake.add_faults(Fault.redirected())
    # Default retries: the refusal must not be retried either.
    async with PatchworksClient(base_url=fake.url, api_key=fake.api_key) as client:
        with pytest.raises(APIError) as info:
            await CALLS[call](client)
    assert info.value.status == 307
    assert "another origin" in str(info.value)
    assert fake.redirect_target_requests == []
    assert len(fake.requests) == 1


async def test_a_login_redirect_to_another_origin_is_not_followed(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.redirected(), paths="/fabric/api/login")
    login = Login(fake.username, fake.password, url=fake.login_url)
    async with PatchworksClient(base_url=fake.url, login=login, retry=NO_RETRY) as client:
        with pytest.raises(APIError) as info:
            await client.oauth.authenticate()
    assert info.value.status == 307
    assert fake.redirect_target_requests == []  # the password stayed home
    assert fake.login_count == 0


def _redirect_to(location: Callable[[web.Request], str], status: int = 307) -> _Handler:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/final":
            return web.json_response({"final": True})
        return web.json_response({}, status=status, headers={"Location": location(request)})

    return handler


async def test_a_same_origin_redirect_is_followed_with_its_credentials() -> None:
    # The positive control for the refusals below: redirects do get followed.
    async with App(_redirect_to(lambda _: "/final")) as app, _client(app.origin) as client:
        assert await client.oauth.authenticate() == {"final": True}
    assert [r.path for r in app.seen] == ["/api/v1/oauth/authenticate", "/final"]
    assert [r.headers.get("Authorization") for r in app.seen] == [KEY, KEY]


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/final",  # another host name for the same server
        "//localhost:{port}/final",  # scheme-relative
        "https://127.0.0.1:{port}/final",  # another scheme
        "http://127.0.0.1:{other}/final",  # another port
    ],
)
async def test_a_redirect_to_any_other_origin_is_refused(location: str) -> None:
    def target(request: web.Request) -> str:
        return location.format(port=request.url.port, other=other.port)

    async with App(_redirect_to(lambda _: "/final")) as other:
        async with App(_redirect_to(target)) as app, _client(app.origin) as client:
            with pytest.raises(APIError):
                await client.oauth.authenticate()
        assert len(app.seen) == 1
        assert other.seen == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_limited(status: int) -> None:
    async def loop_forever(request: web.Request) -> web.Response:
        hop = len(app.seen)
        return web.json_response({}, status=status, headers={"Location": f"/hop/{hop}"})

    async with (
        App(loop_forever) as app,
        PatchworksClient(base_url=app.origin, api_key=KEY, rate_limit=None) as client,
    ):
        with pytest.raises(APIError) as info:
            await client.oauth.authenticate()
    assert "redirects" in str(info.value)
    assert len(app.seen) == 4  # the request and three redirects (MAX_REDIRECTS), no more


# -- the response-size cap -------------------------------------------------------------------

CAP: Final = 64 * 1024


async def _serve_body(request: web.Request, body: bytes, *, chunked: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(body)
    await response.prepare(request)
    for start in range(0, len(body), 4096):
        await response.write(body[start : start + 4096])
    await response.write_eof()
    return response


def _json_of_size(size: int) -> bytes:
    return b'{"a": "' + b"x" * (size - 9) + b'"}'


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_at_the_cap_is_read_and_one_byte_more_is_refused(chunked: bool) -> None:
    sizes: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _serve_body(request, _json_of_size(sizes.pop(0)), chunked=chunked)

    async with App(handler) as app, _client(app.origin, max_response_bytes=CAP) as client:
        sizes[:] = [CAP, CAP + 1]
        result = await client.oauth.authenticate()
        assert len(result["a"]) == CAP - 9
        with pytest.raises(ResponseTooLargeError) as info:
            await client.oauth.authenticate()
    assert info.value.limit == CAP
    assert str(CAP) in str(info.value)


async def test_a_declared_length_over_the_cap_is_refused_without_reading() -> None:
    # The server announces 100 MB and then sends nothing: a client that tried to read
    # the body would wait for the timeout instead of refusing at once.
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 100 * 1024 * 1024
        await response.prepare(request)
        await release.wait()
        return response

    async with App(handler) as app:
        try:
            async with _client(app.origin, timeout=Timeout(total=30)) as client:
                with pytest.raises(ResponseTooLargeError):
                    await client.oauth.authenticate()
        finally:
            release.set()


async def test_the_default_cap_is_a_few_megabytes() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _serve_body(request, _json_of_size(size), chunked=True)

    async with App(handler) as app, _client(app.origin) as client:
        size = 8 * 1024 * 1024
        assert await client.oauth.authenticate()
        size += 1
        with pytest.raises(ResponseTooLargeError) as info:
            await client.oauth.authenticate()
    assert info.value.limit == 8 * 1024 * 1024


async def test_an_endless_chunked_body_is_cut_off() -> None:
    # The server would send 1 GB; the client stops reading after the cap and drops the
    # connection, so the server's writes fail long before the end.
    total = 1024 * 1024 * 1024
    written = 0
    finished = asyncio.Event()
    outcome: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while written < total:
                await response.write(chunk)
                written += len(chunk)
            outcome.append("sent everything")
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            outcome.append("client went away")
        finally:
            finished.set()
        return response

    async with App(handler) as app:
        async with _client(app.origin, max_response_bytes=CAP) as client:
            with pytest.raises(ResponseTooLargeError):
                await client.oauth.authenticate()
        await finished.wait()
    assert outcome == ["client went away"]
    assert written < total // 10


async def test_an_error_page_over_the_cap_is_refused_too() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=502, headers={"Content-Type": "text/html"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"<html>" + b"x" * (2 * CAP))
        await response.write_eof()
        return response

    async with App(handler) as app, _client(app.origin, max_response_bytes=CAP) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.oauth.authenticate()


async def test_a_compressed_body_is_capped_after_decompression() -> None:
    # 16 MB of JSON that gzip turns into about 16 kB: the cap is on what the client
    # would hold in memory, not on the bytes on the wire.
    bomb = gzip.compress(b'{"a": "' + b" " * (16 * 1024 * 1024) + b'"}')
    assert len(bomb) < CAP

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    async with App(handler) as app, _client(app.origin, max_response_bytes=CAP) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.oauth.authenticate()
