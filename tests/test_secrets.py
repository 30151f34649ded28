"""No API key, password or token in any log record, exception, object repr or CLI output.

One test turns DEBUG on for every logger (root, ``patchworks_async``, aiohttp's and
asyncio's, with the loop in debug mode), runs every call, a login, a token refresh,
every error path, and the objects a user holds, and then searches everything that
could be shown to a person for every secret in play: the API key, a wrong API key, the
password, a wrong password, and every token the fake issued. A secret counts as leaked
when any 12 characters of it in a row show up, so a "redacted" prefix or suffix is
caught too. A second test does the same for the command line, in subprocesses.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import secrets
import socket
import sys
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from patchworks_async import (
    AuthoriseRequest,
    Event,
    Login,
    PatchworksClient,
    PatchworksError,
    ReauthoriseRequest,
    RetryPolicy,
    Timeout,
    TransportError,
    Variable,
)
from patchworks_async.testing import FakePatchworks, Fault

API_KEY: Final = secrets.token_hex(24)
WRONG_KEY: Final = secrets.token_hex(24)
PASSWORD: Final = secrets.token_urlsafe(24)
WRONG_PASSWORD: Final = secrets.token_urlsafe(24)
WINDOW: Final = 12
FAST: Final = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.002)
NO_RETRY: Final = RetryPolicy.disabled()
AUTHORISE: Final = AuthoriseRequest(
    authentication_implementation_id="impl-1",
    timezone="UTC",
    date_format="Y-m-d",
    rate_limit_unit="minute",
    rate_limit_duration=60,
    variables=[Variable(key="shop", value="acme", secret=False)],
    extra={"name": "secrets-test"},
)


def fragments(secret: str) -> Iterator[str]:
    """Every run of WINDOW characters of ``secret`` (the whole of a shorter one)."""
    if len(secret) <= WINDOW:
        yield secret
        return
    for start in range(len(secret) - WINDOW + 1):
        yield secret[start : start + WINDOW]


def assert_no_secret(secret_values: Iterable[str], texts: dict[str, str]) -> None:
    """Fail naming the secret's kind and where a piece of it was found."""
    for secret in secret_values:
        pieces = set(fragments(secret))
        for where, text in texts.items():
            leaked = next((piece for piece in pieces if piece in text), None)
            assert leaked is None, f"a secret ({len(secret)} chars) leaked into {where}"


class Capture(logging.Handler):
    """Keeps the full text of every record, as a formatter with tracebacks would show it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        formatted = self.format(record)  # message, args, exc_text and stack_info
        self.texts.append(f"{formatted}\n{record.msg!r}\n{record.args!r}\n{record.__dict__!r}")


@pytest.fixture
def debug_everywhere() -> Iterator[Capture]:
    capture = Capture()
    names = ["", "patchworks_async", "aiohttp", "asyncio"]
    names += ["aiohttp.client", "aiohttp.server", "aiohttp.access", "aiohttp.internal"]
    names += ["aiohttp.web", "aiohttp.websocket", *logging.root.manager.loggerDict]
    loggers = [logging.getLogger(name) for name in names]
    levels = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    logging.root.addHandler(capture)
    try:
        yield capture
    finally:
        logging.root.removeHandler(capture)
        for logger, level, disabled in levels:
            logger.setLevel(level)
            logger.disabled = disabled


def exception_texts(error: BaseException) -> list[str]:
    """What a person could see of an exception: str, repr, traceback, chain, attributes."""
    texts = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return texts


class Run:
    """Everything the scenario produced that a person could see."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.objects: list[object] = []
        self.events: list[Event] = []
        # Every client also exports OpenTelemetry spans and metrics, read back in memory.
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def exported(self) -> dict[str, str]:
        """The spans and metrics the clients exported, as JSON texts."""
        texts = {
            f"span {i} ({span.name})": span.to_json()
            for i, span in enumerate(self.spans.get_finished_spans())
        }
        data = self.metrics.get_metrics_data()
        texts["metrics"] = data.to_json() if data is not None else ""
        return texts

    async def expect_error(self, call: Any) -> None:
        try:
            await call
        except PatchworksError as error:
            self.errors.append(error)
        else:
            raise AssertionError("the call was meant to fail")

    def client(self, fake: FakePatchworks, **kwargs: Any) -> PatchworksClient:
        kwargs.setdefault("rate_limit", None)
        kwargs.setdefault("retry", FAST)
        if not {"api_key", "token", "login"} & kwargs.keys():
            kwargs["api_key"] = API_KEY
        client = PatchworksClient(
            base_url=kwargs.pop("base_url", fake.url),
            on_event=self.events.append,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **kwargs,
        )
        self.objects += [client, client._pipeline.auth, client.oauth]
        return client


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def calls_and_retries(fake: FakePatchworks, run: Run) -> None:
    key = fake.add_instance()
    async with run.client(fake) as client:
        run.objects.append(await client.oauth.authenticate())
        created = await client.oauth.authorise(AUTHORISE)
        run.objects.append(created)
        await client.oauth.reauthorise(key, ReauthoriseRequest(timezone="UTC"))
        await client.oauth.woo_app_auth()
        # Retried faults: each leaves RETRY events and DEBUG lines behind.
        for fault in (
            Fault.status_code(503),
            Fault.too_many(retry_after=0),
            Fault.dropped(),
            Fault.truncated(),
            Fault.malformed(),
            Fault.html(502),
        ):
            fake.add_faults(fault)
            await client.oauth.reauthorise(key, ReauthoriseRequest(timezone="UTC"))
        items: list[Any] = [(key, ReauthoriseRequest()), ("missing", ReauthoriseRequest())]
        items += [("", ReauthoriseRequest()), "not a pair", (key, ReauthoriseRequest())]
        run.objects += [item for item in items if isinstance(item, tuple)]
        async for outcome in client.oauth.reauthorise_many(items, concurrency=2):
            run.objects.append(outcome)
            if outcome.error is not None:
                run.errors.append(outcome.error)
        run.objects += [client.rate_limit_state, AUTHORISE, ReauthoriseRequest(timezone="UTC")]


async def error_paths(fake: FakePatchworks, run: Run) -> None:
    key = fake.add_instance()
    async with run.client(fake, retry=NO_RETRY, timeout=Timeout(total=0.3)) as client:
        await run.expect_error(client.oauth.reauthorise("missing", ReauthoriseRequest()))  # 404
        await run.expect_error(  # 422
            client.oauth.reauthorise(key, ReauthoriseRequest(extra={"name": 5}))
        )
        for fault in (
            Fault.too_many(retry_after=0.05),
            Fault.status_code(500),
            Fault.status_code(403),
            Fault.html(502),
            Fault.html(200),
            Fault.dropped(),
            Fault.truncated(),
            Fault.slow(2.0),
            Fault.malformed(),
            Fault.non_object(),
            Fault.redirected(),
        ):
            fake.add_faults(fault)
            await run.expect_error(client.oauth.authorise(AUTHORISE))
    async with run.client(fake, api_key=WRONG_KEY) as client:  # 401
        await run.expect_error(client.oauth.authenticate())
    async with run.client(fake, max_response_bytes=8) as client:
        await run.expect_error(client.oauth.authenticate())
    refused = f"http://127.0.0.1:{_closed_port()}"
    async with run.client(fake, base_url=refused, retry=NO_RETRY) as client:
        await run.expect_error(client.oauth.authenticate())
    # Bad configuration that holds a secret: refused without echoing it.
    for config in (
        {"api_key": API_KEY + "\r\nX-Injected: 1"},
        {"api_key": API_KEY, "token": "t" + API_KEY},
        {"api_key": API_KEY, "base_url": f"https://user:{PASSWORD}@core.wearepatchworks.com"},
        {"login": Login("user", PASSWORD, url=f"https://user:{PASSWORD}@app.example/login")},
        {"api_key": API_KEY, "base_url": f"http://core.wearepatchworks.com/{API_KEY}\r\n"},
    ):
        try:
            PatchworksClient(**config)
        except PatchworksError as error:
            run.errors.append(error)
        else:
            raise AssertionError("the configuration was meant to be refused")


async def login_and_refresh(fake: FakePatchworks, run: Run) -> None:
    login = Login(fake.username, PASSWORD, url=fake.login_url)
    run.objects.append(login)
    async with run.client(fake, login=login) as client:
        created = await client.oauth.authorise(AUTHORISE)
        fake.expire_tokens()  # the next call gets a 401, logs in again and retries
        await client.oauth.reauthorise(created["id"], ReauthoriseRequest(timezone="UTC"))
        assert fake.login_count == 2
    async with run.client(fake, login=login, retry=NO_RETRY) as client:
        # Login failures: a 500, a dropped answer, a garbled one, one login each.
        for fault in (Fault.status_code(500), Fault.dropped(), Fault.malformed()):
            fake.add_faults(fault, paths="/fabric/api/login")
            await run.expect_error(client.oauth.authenticate())
    wrong = Login(fake.username, WRONG_PASSWORD, url=fake.login_url)
    run.objects.append(wrong)
    async with run.client(fake, login=wrong) as client:
        await run.expect_error(client.oauth.authenticate())
    token = fake.issue_token()
    async with run.client(fake, token=token) as client:
        await client.oauth.authenticate()
        fake.expire_tokens()
        await run.expect_error(client.oauth.authenticate())  # a caller's token is not renewed


async def test_no_secret_in_logs_errors_or_reprs(debug_everywhere: Capture) -> None:
    asyncio.get_running_loop().set_debug(True)
    run = Run()
    async with FakePatchworks(api_key=API_KEY, password=PASSWORD) as fake:
        await calls_and_retries(fake, run)
        await error_paths(fake, run)
        await login_and_refresh(fake, run)
        tokens = list(fake._tokens)  # every token the fake issued (its private register)
        sent = {record.headers.get("Authorization") for record in fake.requests}

    # The secrets were really in play: sent on the wire and issued.
    assert {API_KEY, WRONG_KEY} <= sent
    assert len(tokens) >= 4
    assert any(value == f"Bearer {tokens[0]}" for value in sent)
    # And every path ran: DEBUG lines, retries, each kind of failure.
    logs = "\n".join(debug_everywhere.texts)
    assert "reauthorise attempt 1 retry" in logs
    assert "gave_up" in logs
    kinds = {type(error).__name__ for error in run.errors}
    assert kinds >= {
        "AuthenticationError", "NotFoundError", "UnprocessableEntityError", "RateLimitError",
        "ServerError", "PermissionDeniedError", "TransportError", "RequestTimeoutError",
        "ResponseDecodeError", "ResponseTooLargeError", "APIError", "InvalidRequestError",
    }  # fmt: skip

    texts: dict[str, str] = {
        f"log record {i}": text for i, text in enumerate(debug_everywhere.texts)
    }
    for i, error in enumerate(run.errors):
        for j, text in enumerate(exception_texts(error)):
            texts[f"error {i} ({type(error).__name__}) text {j}"] = text
    for i, thing in enumerate([*run.objects, *run.events]):
        texts[f"repr of {type(thing).__name__} #{i}"] = f"{thing!r}\n{thing!s}"
    exported = run.exported()
    assert len(exported) > 20  # the calls above were traced
    texts.update(exported)
    assert_no_secret([API_KEY, WRONG_KEY, PASSWORD, WRONG_PASSWORD, *tokens], texts)


def test_the_search_finds_a_leak() -> None:
    # The check above must be able to fail: a half-redacted key is still a leak.
    with pytest.raises(AssertionError, match="leaked into"):
        assert_no_secret([API_KEY], {"message": f"key {API_KEY[:14]}..."})
    with pytest.raises(AssertionError, match="leaked into"):
        assert_no_secret([PASSWORD], {"message": f"...{PASSWORD[-12:]}"})


# -- the command line ------------------------------------------------------------------------

DEBUG_MAIN: Final = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
    "from patchworks_async.cli import main; sys.exit(main(sys.argv[1:]))"
)


async def _cli(args: list[str], env: dict[str, str], *, debug: bool = True) -> tuple[int, str, str]:
    command = ["-c", DEBUG_MAIN] if debug else ["-m", "patchworks_async"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # A guard against a hung command, not a wait for timing.
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.skipif(
    importlib.util.find_spec("patchworks_async.cli") is None, reason="no command line yet"
)
async def test_the_command_line_shows_no_secret(tmp_path: Path) -> None:
    async with FakePatchworks(api_key=API_KEY, password=PASSWORD) as fake:
        key = fake.add_instance()
        token = fake.issue_token()
        base = {
            name: value for name, value in os.environ.items() if not name.startswith("PATCHWORKS_")
        }
        base["PATCHWORKS_BASE_URL"] = fake.url
        with_key = {**base, "PATCHWORKS_API_KEY": API_KEY}
        login = {
            **base,
            "PATCHWORKS_USERNAME": fake.username,
            "PATCHWORKS_LOGIN_URL": fake.login_url,
        }
        key_file = tmp_path / "key"
        key_file.write_text(API_KEY + "\n")
        bulk_input = tmp_path / "in.jsonl"
        bulk_input.write_text(
            f'{{"connector": "{key}", "timezone": "UTC"}}\n{{"connector": "missing"}}\nnot json\n'
        )
        bulk_output = tmp_path / "out.jsonl"
        bulk_files = ["--input", str(bulk_input), "--output", str(bulk_output)]
        fake.add_faults(Fault.dropped(), paths="/woo-app-auth")
        fields = [
            "-f", "authentication_implementation_id=impl", "-f", "timezone=UTC",
            "-f", "date_format=Y-m-d", "-f", "rate_limit_unit=minute",
            "-f", "rate_limit_duration=60",
        ]  # fmt: skip
        scenarios: list[tuple[int, list[str], dict[str, str], bool]] = [
            (0, ["authenticate"], with_key, False),
            (0, ["authenticate"], with_key, True),
            (1, ["authenticate"], {**base, "PATCHWORKS_API_KEY": WRONG_KEY}, False),
            (1, ["authenticate"], {**base, "PATCHWORKS_API_KEY": WRONG_KEY}, True),
            (2, ["authenticate"], {**base, "PATCHWORKS_API_KEY": API_KEY + "\r\nX: 1"}, True),
            (0, ["authenticate"], {**base, "PATCHWORKS_TOKEN": token}, True),
            (0, ["authenticate", "--api-key-file", str(key_file)], base, True),
            (0, ["authorise", *fields], {**login, "PATCHWORKS_PASSWORD": PASSWORD}, True),
            (1, ["authenticate"], {**login, "PATCHWORKS_PASSWORD": WRONG_PASSWORD}, True),
            (1, ["reauthorise", "missing", "-f", "timezone=UTC"], with_key, True),
            (1, ["woo-app-auth", "--max-attempts", "1"], with_key, True),
            (1, ["bulk-reauthorise", *bulk_files, "--progress", "plain"], with_key, True),
            # OpenTelemetry's console export (standard error) of a login, a 401 and a bulk job.
            (
                0,
                ["authorise", *fields, "--otel", "console"],
                {**login, "PATCHWORKS_PASSWORD": PASSWORD},
                False,
            ),
            (
                1,
                ["authenticate", "--otel", "console"],
                {**base, "PATCHWORKS_API_KEY": WRONG_KEY},
                False,
            ),
            (
                1,
                [
                    "bulk-reauthorise",
                    "--input",
                    str(bulk_input),
                    "--output",
                    str(tmp_path / "out-otel.jsonl"),  # its own: the runs are concurrent
                    "--progress",
                    "plain",
                    "--otel",
                    "console",
                ],
                with_key,
                False,
            ),
            (
                2,
                ["authenticate", "--base-url", f"https://u:{PASSWORD}@core.wearepatchworks.com"],
                with_key,
                True,
            ),
        ]
        results = await asyncio.gather(
            *(_cli(args, env, debug=debug) for _, args, env, debug in scenarios)
        )
        tokens = list(fake._tokens)  # every token the fake issued (its private register)

    texts: dict[str, str] = {"bulk output file": bulk_output.read_text()}
    for (expected, args, _, debug), (code, stdout, stderr) in zip(scenarios, results, strict=True):
        name = f"{args[0]} (debug={debug}, exit {code})"
        assert code == expected, f"{name}: {stderr[-2000:]}"
        texts[f"{name} stdout"] = stdout
        texts[f"{name} stderr"] = stderr
    assert "DEBUG" in "".join(texts.values())  # the debug runs did log
    assert '"name": "patchworks.reauthorise_many"' in "".join(texts.values())  # --otel exported
    assert len(tokens) >= 2
    assert_no_secret([API_KEY, WRONG_KEY, PASSWORD, WRONG_PASSWORD, *tokens], texts)


async def test_a_malformed_http_answer_keeps_no_credential_in_the_cause() -> None:
    # aiohttp's ClientResponseError carries the request's headers; it must not be chained.
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    secret = "pw_live_SECRET_KEY_123456"
    try:
        async with PatchworksClient(
            base_url=f"http://127.0.0.1:{port}",
            api_key=secret,
            rate_limit=None,
            retry=RetryPolicy.disabled(),
        ) as client:
            with pytest.raises(TransportError) as info:
                await client.oauth.authenticate()
    finally:
        server.close()
        await server.wait_closed()
    error: BaseException | None = info.value
    while error is not None:
        assert secret not in repr(error)
        assert secret not in str(error)
        error = error.__cause__ or error.__context__
