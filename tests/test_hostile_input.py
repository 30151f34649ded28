"""Hostile input, with Hypothesis, against one FakePatchworks for the whole module.

Each input either raises :class:`InvalidRequestError` before anything is sent (the
fake's request list does not grow), or produces exactly one request that the fake
parses: its raw path is ``/api/v1/oauth/<one encoded segment>/reauthorise``, the
segment decodes to the connector as given, the body is a JSON object holding exactly
what was asked, and its header names are those of an ordinary request (nothing
injected). The fake never records a malformed request.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final
from urllib.parse import unquote

import attrs
import orjson
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from patchworks_async import (
    APIError,
    AuthenticationError,
    InvalidRequestError,
    Login,
    PatchworksClient,
    ReauthoriseRequest,
    RetryPolicy,
    Variable,
)
from patchworks_async.testing import FakePatchworks, RecordedRequest

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLES: Final = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ONE_SEGMENT: Final = re.compile(r"/api/v1/oauth/((?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})+)/reauthorise")
CONNECTOR: Final = "instance-1"
INJECTED: Final = "X-Injected"

# Pieces that have broken URL and header handling somewhere.
ATOMS: Final = (
    "/", "..", ".", "%2F", "%2f", "%", "%%", "?", "#", "&", "=", ";", "+", " ", "\\", "~",
    "\r", "\n", "\r\n", "\0", "\t", "\x7f", "\x85", "\u2028", "\u010a", "\u010d",
    "é", "ü", "😀", "\ud800", "\udfff", f"\r\n{INJECTED}: yes", "HTTP/1.1\r\n\r\n",
)  # fmt: skip
# By exponent: Hypothesis would print the strategy, and str() of 10**5000 raises.
HUGE_INTS: Final = st.sampled_from(
    [(2, 63, -1), (2, 63, 0), (-2, 63, 0), (2, 64, 0), (10, 1023, 0), (10, 1024, 0), (10, 5000, 0)]
).map(lambda spec: (abs(spec[0]) ** spec[1] + spec[2]) * (1 if spec[0] > 0 else -1))


def pieces() -> st.SearchStrategy[str]:
    return st.lists(
        st.one_of(st.sampled_from(ATOMS), st.text(max_size=4), st.characters()), max_size=12
    ).map("".join)


def long_strings() -> st.SearchStrategy[str]:
    lengths = st.sampled_from([1023, 1024, 1025, 2048, 3000, 10_240])
    return st.tuples(st.sampled_from(["a", "é", "😀", "/", "%", ".", "\n"]), lengths).map(
        lambda pair: pair[0] * pair[1]
    )


def connectors() -> st.SearchStrategy[Any]:
    return st.one_of(
        pieces(),
        long_strings(),
        st.integers(),
        HUGE_INTS,
        st.sampled_from([None, True, False, 1.5, math.nan, b"abc", ["a"], {"a": 1}]),
    )


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        HUGE_INTS,
        st.floats(),  # NaN and the infinities included
        pieces(),
        st.sampled_from([b"bytes", {1, 2}, object()]),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.tuples(inner, inner),
            st.dictionaries(st.one_of(pieces(), st.integers()), inner, max_size=3),
        ),
        max_leaves=max_leaves,
    )


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth):
        value = {"n": value}
    return value


def variables() -> st.SearchStrategy[Any]:
    raw_variable = st.fixed_dictionaries(
        {"key": st.one_of(pieces(), json_values(2)), "value": json_values(2)},
        optional={
            "label": json_values(1),
            "secret": json_values(1),
            "locked": json_values(1),
            "id": json_values(1),
            "pivot": st.one_of(json_values(), st.integers(0, 40).map(nested)),
        },
    )
    return st.one_of(
        json_values(),
        st.lists(raw_variable, max_size=4),
        st.integers(0, 200).map(lambda n: [{"key": f"k{i}", "value": "v"} for i in range(n)]),
        st.integers(0, 40).map(lambda depth: [{"key": "k", "value": 1, "pivot": nested(depth)}]),
    )


def fields() -> st.SearchStrategy[dict[str, Any]]:
    anything = json_values()
    ints = st.one_of(st.integers(), HUGE_INTS, st.booleans(), st.floats(), anything)
    return st.fixed_dictionaries(
        {},
        optional={
            "authentication_implementation_id": st.one_of(pieces(), anything),
            "type": st.one_of(pieces(), anything),
            "timezone": st.one_of(pieces(), anything),
            "date_format": st.one_of(pieces(), anything),
            "rate_limit_unit": st.one_of(
                st.sampled_from(["second", "minute", "hour", "day", "week", "MINUTE"]), anything
            ),
            "rate_limit_duration": ints,
            "connection_pool_id": ints,
            "variables": variables(),
            "extra": st.one_of(
                st.dictionaries(
                    st.one_of(pieces(), st.sampled_from(["timezone", "name", "id"])),
                    anything,
                    max_size=4,
                ),
                anything,
            ),
        },
    )


class Scene:
    """The module's fake and client, and what an ordinary request's headers look like."""

    def __init__(self, fake: FakePatchworks, client: PatchworksClient) -> None:
        self.fake = fake
        self.client = client
        self.header_names: frozenset[str] = frozenset()

    def new_requests(self, before: int) -> list[RecordedRequest]:
        return self.fake.requests[before:]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scene() -> AsyncIterator[Scene]:
    async with FakePatchworks() as fake:
        fake.add_instance(CONNECTOR)
        async with PatchworksClient(
            base_url=fake.url, api_key=fake.api_key, rate_limit=None, retry=RetryPolicy.disabled()
        ) as client:
            found = Scene(fake, client)
            await client.oauth.reauthorise(CONNECTOR, ReauthoriseRequest(timezone="UTC"))
            found.header_names = frozenset(name.lower() for name in fake.requests[-1].headers)
            yield found
        assert fake.malformed == []


def check_headers(scene: Scene, record: RecordedRequest, authorization: str) -> None:
    assert frozenset(name.lower() for name in record.headers) == scene.header_names
    assert record.headers["Authorization"] == authorization
    assert record.headers["Content-Type"] == "application/json"
    assert not any(INJECTED.lower() in name.lower() for name in record.headers)


def plain(value: Any) -> Any:
    """``value`` as JSON gives it back: tuples are lists, enums their values."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return getattr(value, "value", value) if not isinstance(value, str | int | float) else value


# -- connectors ----------------------------------------------------------------------------


def _fake_key(connector: Any) -> str | None:
    """The id the fake should know the instance by, when ``connector`` may be sendable."""
    if isinstance(connector, str):
        return connector or None
    if isinstance(connector, int) and not isinstance(connector, bool):
        return str(connector) if connector.bit_length() < 4000 else None
    return None


@EXAMPLES
@given(connector=connectors())
async def test_hostile_connectors(scene: Scene, connector: Any) -> None:
    fake = scene.fake
    key = _fake_key(connector)
    if key is not None:
        fake.add_instance(key)
    before = len(fake.requests)
    try:
        result = await scene.client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))
    except InvalidRequestError as error:
        event("refused before sending")
        assert error.field == "connector"  # noqa: PT017  # either outcome may come: no raises()
        assert scene.new_requests(before) == []
        return
    finally:
        if key is not None and key != CONNECTOR:
            fake.instances.pop(key, None)
    event("sent")
    (record,) = scene.new_requests(before)
    match = ONE_SEGMENT.fullmatch(record.path)
    assert match is not None, record.path
    segment = match.group(1)
    assert segment not in (".", "..")
    assert unquote(segment, errors="strict") == str(connector)
    assert record.query == ""
    assert record.json == {"timezone": "UTC"}
    check_headers(scene, record, fake.api_key)
    assert result == {"id": key, "timezone": "UTC"}  # the fake found the very instance
    assert fake.malformed == []


@pytest.mark.parametrize(
    "connector",
    ["a" * 10_240, "😀" * 1024, "é" * 2048, 10**1024, -(10**5000), "\ud800"],
    ids=["10kB", "1024-emoji", "2048-e-acute", "1025-digits", "5001-digits", "surrogate"],
)
async def test_oversized_connectors_are_refused_before_sending(
    scene: Scene, connector: Any
) -> None:
    # 1,024 emoji are 12 kB once percent-encoded: longer than the request line that
    # aiohttp's server (and most others) accepts; 10**5000 has too many digits for str().
    before = len(scene.fake.requests)
    with pytest.raises(InvalidRequestError) as info:
        await scene.client.oauth.reauthorise(connector, ReauthoriseRequest())
    assert info.value.field == "connector"
    assert scene.new_requests(before) == []


async def test_a_bulk_job_survives_hostile_connectors(scene: Scene) -> None:
    hostile: list[Any] = ["😀" * 1024, 10**5000, "a/b", None, "\r\n", CONNECTOR]
    items = [(connector, ReauthoriseRequest()) for connector in hostile]
    outcomes = [o async for o in scene.client.oauth.reauthorise_many(items, concurrency=2)]
    assert sorted(o.index for o in outcomes) == list(range(len(hostile)))
    refused = {o.index for o in outcomes if isinstance(o.error, InvalidRequestError)}
    assert refused == {0, 1, 3}


# -- field values ---------------------------------------------------------------------------


def _build(raw: dict[str, Any]) -> ReauthoriseRequest:
    values = dict(raw)
    chosen = values.get("variables")
    names = set(attrs.fields_dict(Variable))
    if isinstance(chosen, list) and all(
        isinstance(item, dict) and {"key", "value"} <= item.keys() <= names for item in chosen
    ):
        values["variables"] = [Variable(**item) for item in chosen]
    return ReauthoriseRequest(**values)


def _expected_body(raw: dict[str, Any]) -> dict[str, Any]:
    body = {
        name: plain(value)
        for name, value in raw.items()
        if name not in ("variables", "extra") and value is not None
    }
    chosen = raw.get("variables")
    if isinstance(chosen, str):
        body["variables"] = chosen
    elif chosen is not None:
        body["variables"] = [
            {name: plain(value) for name, value in item.items() if value is not None}
            for item in chosen
        ]
    for name, value in (raw.get("extra") or {}).items():
        if value is not None:
            body[name] = plain(value)
    return body


@settings(EXAMPLES, max_examples=300)  # most bodies are refused; enough must be sent
@given(raw=fields())
async def test_hostile_field_values(scene: Scene, raw: dict[str, Any]) -> None:
    fake = scene.fake
    before = len(fake.requests)
    try:
        request = _build(raw)
        await scene.client.oauth.reauthorise(CONNECTOR, request)
    except InvalidRequestError:
        event("refused before sending")
        assert scene.new_requests(before) == []
        return
    except APIError as error:
        # The fake's own rules (Laravel's) may refuse what the client lets through,
        # such as a variable key of spaces: a well-formed request all the same.
        assert error.status == 422  # noqa: PT017  # either outcome may come: no raises()
    event("sent")
    (record,) = scene.new_requests(before)
    assert record.path == f"/api/v1/oauth/{CONNECTOR}/reauthorise"
    assert isinstance(orjson.loads(record.body), dict)
    assert record.json == _expected_body(raw)
    check_headers(scene, record, fake.api_key)
    assert fake.malformed == []


@pytest.mark.parametrize(
    "variables",
    [
        [Variable(key=f"k{i}", value="v" * 40, secret=True) for i in range(20_000)],
        "v" * (6 * 1024 * 1024),
    ],
    ids=["20k-variables", "6MB-string"],
)
async def test_enormous_variables_arrive_whole(scene: Scene, variables: Any) -> None:
    before = len(scene.fake.requests)
    await scene.client.oauth.reauthorise(CONNECTOR, ReauthoriseRequest(variables=variables))
    (record,) = scene.new_requests(before)
    assert record.json is not None
    sent = record.json["variables"]
    assert len(sent) == len(variables)
    assert sent[-1] == variables[-1] if isinstance(variables, str) else sent[-1]["key"] == "k19999"
    assert scene.fake.malformed == []


@pytest.mark.parametrize("request_", [None, {"timezone": "UTC"}, "timezone=UTC", 5])
async def test_a_request_of_the_wrong_type(scene: Scene, request_: Any) -> None:
    before = len(scene.fake.requests)
    if request_ is None:  # documented: no request means an empty body
        await scene.client.oauth.reauthorise(CONNECTOR, request_)
        (record,) = scene.new_requests(before)
        assert record.json == {}
        return
    with pytest.raises(InvalidRequestError):
        await scene.client.oauth.reauthorise(CONNECTOR, request_)
    assert scene.new_requests(before) == []


# -- credentials and URLs: no header can be injected ---------------------------------------


@EXAMPLES
@given(secret=pieces(), as_token=st.booleans())
async def test_hostile_credentials_cannot_inject_a_header(
    scene: Scene, secret: str, as_token: bool
) -> None:
    fake = scene.fake
    before = len(fake.requests)
    credential: dict[str, Any] = {"token": secret} if as_token else {"api_key": secret}
    try:
        client = PatchworksClient(
            base_url=fake.url, rate_limit=None, retry=RetryPolicy.disabled(), **credential
        )
    except InvalidRequestError as error:
        event("refused before sending")
        assert error.field in ("api_key", "token")  # noqa: PT017  # either outcome may come
        return
    event("sent")
    async with client:
        with pytest.raises(AuthenticationError):
            await client.oauth.reauthorise(CONNECTOR, ReauthoriseRequest(timezone="UTC"))
    (record,) = scene.new_requests(before)
    # HTTP drops spaces around a header value; nothing else may change.
    sent = f"Bearer {secret}".rstrip(" ") if as_token else secret.strip(" ")
    check_headers(scene, record, sent)


@EXAMPLES
@given(username=pieces(), password=pieces())
async def test_hostile_login_credentials_stay_in_the_body(
    scene: Scene, username: str, password: str
) -> None:
    fake = scene.fake
    before = len(fake.requests)
    try:
        login = Login(username, password, url=fake.login_url)
        client = PatchworksClient(
            base_url=fake.url, login=login, rate_limit=None, retry=RetryPolicy.disabled()
        )
        async with client:
            await client.oauth.authenticate()
    except InvalidRequestError:
        assert scene.new_requests(before) == []
        return
    except APIError as error:
        # Wrong credentials, or Laravel's "required" for a blank one.
        assert error.status in (401, 422)  # noqa: PT017  # either outcome may come: no raises()
    (record, *_) = scene.new_requests(before)
    assert record.path == "/fabric/api/login"
    assert orjson.loads(record.body) == {"username": username, "password": password}
    assert "authorization" not in {name.lower() for name in record.headers}
    assert not any(INJECTED.lower() in name.lower() for name in record.headers)
    assert fake.malformed == []


@pytest.mark.parametrize(
    "template",
    [
        "{origin}\r\nX-Injected: yes",
        "{origin}/x\r\nX-Injected: yes\r\n",
        "{origin}/a b",
        "{origin}/\x00",
        "{origin}/\t",
        "{origin}/\x7f",
        "{origin}/é",
        "http://127.0.0.1:port",
        "http://127.0.0.1:99999",
        "http://[::1",
        "https://bücher.example",
    ],
)
async def test_hostile_base_and_login_urls_are_refused(scene: Scene, template: str) -> None:
    # urlsplit quietly drops CR, LF and tab, and aiohttp sends what it is given, so a
    # URL that is not plain printable ASCII would reach the wire as a broken request.
    fake = scene.fake
    before = len(fake.requests)
    url = template.format(origin=fake.url)
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(base_url=url, api_key=fake.api_key)
    assert info.value.field == "base_url"
    login = Login("user", "password", url=url + "/fabric/api/login")
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(base_url=fake.url, login=login)
    assert info.value.field == "login.url"
    assert scene.new_requests(before) == []
