"""FakePatchworks answers as the spec says: its responses checked with openapi-core.

The suite's *requests* are checked by the autouse fixture in ``conftest.py``; here the fake's
*responses* are, for every status the spec documents (200, 401, 422 on each path), and the
statuses the spec leaves out (404 for an unknown instance, 429) are pinned to Laravel's
``{"message": ...}`` shape that DOMAIN.md describes. Hypothesis sends arbitrary bodies built
from the spec's fields, so the fake's validation cannot answer outside the contract either.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patchworks_async.testing import FakePatchworks, RecordedRequest

from . import spec_conformance

pytestmark = pytest.mark.skipif(
    not spec_conformance.spec_available() and not spec_conformance.must_have_spec(),
    reason="the spec is not beside the repository (../shared/spec)",
)

AUTHORISE_BODY: dict[str, Any] = {
    "authentication_implementation_id": "impl-1",
    "timezone": "Europe/London",
    "date_format": "Y-m-d",
    "rate_limit_unit": "minute",
    "rate_limit_duration": 60,
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _exchange(
    fake: FakePatchworks,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: bool = True,
) -> tuple[int, list[str]]:
    """Send one request; return the status and what in the response breaks the spec."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = fake.api_key
    data = b"" if body is None else json.dumps(body).encode()
    async with session.request(method, fake.url + path, data=data, headers=headers) as response:
        raw = await response.read()
        status = response.status
        answered = dict(response.headers.items())
    request = spec_conformance.mock_request(method, path, headers, data)
    return status, spec_conformance.response_problems(request, status, answered, raw)


@pytest.mark.parametrize(
    ("method", "path", "body", "auth", "expected"),
    [
        pytest.param("POST", "/api/v1/oauth/authenticate", None, True, 200, id="authenticate"),
        pytest.param("POST", "/api/v1/oauth/authorise", AUTHORISE_BODY, True, 200, id="authorise"),
        pytest.param(
            "POST",
            "/api/v1/oauth/authorise",
            {"timezone": "UTC"},
            True,
            422,
            id="authorise-missing-fields",
        ),
        pytest.param(
            "POST",
            "/api/v1/oauth/authorise",
            {**AUTHORISE_BODY, "rate_limit_unit": "fortnight"},
            True,
            422,
            id="authorise-bad-enum",
        ),
        pytest.param("POST", "/api/v1/oauth/woo-app-auth", None, True, 200, id="woo-app-auth"),
        pytest.param("PATCH", "/api/v1/oauth/{known}/reauthorise", {}, True, 200, id="reauth"),
        pytest.param(
            "PATCH",
            "/api/v1/oauth/{known}/reauthorise",
            {"rate_limit_duration": "sixty"},
            True,
            422,
            id="reauthorise-bad-type",
        ),
        pytest.param("POST", "/api/v1/oauth/authenticate", None, False, 401, id="no-credential"),
        pytest.param("PATCH", "/api/v1/oauth/{known}/reauthorise", {}, False, 401, id="reauth-401"),
    ],
)
@pytest.mark.spec_exempt(reason="sends bad bodies and no credential on purpose")
async def test_documented_answers_follow_the_spec(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any,
    auth: bool,
    expected: int,
) -> None:
    async with FakePatchworks() as fake:
        known = fake.add_instance()
        status, problems = await _exchange(
            fake, session, method, path.format(known=known), body, auth=auth
        )
    assert status == expected
    assert problems == []


async def test_statuses_the_spec_leaves_out_have_laravels_shape(
    session: aiohttp.ClientSession,
) -> None:
    """404 and 429 are not in the spec; they answer Laravel's ``{"message": str}``."""
    async with FakePatchworks(quota=1) as fake:
        answers = []
        for path in ("/api/v1/oauth/424242/reauthorise", "/api/v1/oauth/authenticate"):
            method = "PATCH" if "reauthorise" in path else "POST"
            async with session.request(
                method,
                fake.url + path,
                data=b"{}",
                headers={"Authorization": fake.api_key, "Content-Type": "application/json"},
            ) as response:
                answers.append((response.status, await response.json()))
    statuses = [status for status, _ in answers]
    assert statuses == [404, 429]
    for _, payload in answers:
        assert isinstance(payload, dict)
        assert isinstance(payload.get("message"), str)


_FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.text(max_size=12),
    st.sampled_from(["second", "minute", "hour", "day", "fortnight"]),
    st.lists(st.fixed_dictionaries({"key": st.text(max_size=5)}), max_size=2),
)
_FIELDS = st.sampled_from(
    [
        "authentication_implementation_id",
        "timezone",
        "date_format",
        "rate_limit_unit",
        "rate_limit_duration",
        "connection_pool_id",
        "variables",
        "type",
        "session_id",
    ]
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.dictionaries(_FIELDS, _FIELD_VALUES, max_size=6),
    reauthorise=st.booleans(),
)
@pytest.mark.spec_exempt(reason="arbitrary bodies, valid or not, on purpose")
async def test_any_body_gets_an_answer_the_spec_documents(
    session: aiohttp.ClientSession, body: dict[str, Any], reauthorise: bool
) -> None:
    async with FakePatchworks() as fake:
        known = fake.add_instance()
        if reauthorise:
            path, method = f"/api/v1/oauth/{known}/reauthorise", "PATCH"
        else:
            path, method = "/api/v1/oauth/authorise", "POST"
        status, problems = await _exchange(fake, session, method, path, body)
    assert status in {200, 422}
    assert problems == []


def _recorded(path: str, body: dict[str, Any], *, auth: bool = True) -> RecordedRequest:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "key"
    return RecordedRequest(
        method="POST" if path.endswith("authorise") and "{" not in path else "PATCH",
        path=path,
        query="",
        headers=headers,
        json=body,
        body=json.dumps(body).encode(),
        arrived=0.0,
    )


def test_the_request_check_can_fail() -> None:
    """The conftest check is only worth something if an off-spec request is caught."""
    good = _recorded("/api/v1/oauth/authorise", AUTHORISE_BODY)
    listed_variables = _recorded(
        "/api/v1/oauth/authorise", {**AUTHORISE_BODY, "variables": [{"key": "k", "value": "v"}]}
    )
    bad_enum = _recorded("/api/v1/oauth/authorise", {**AUTHORISE_BODY, "rate_limit_unit": "week"})
    no_credential = _recorded("/api/v1/oauth/authorise", AUTHORISE_BODY, auth=False)
    login = _recorded("/fabric/api/login", {"username": "u"})
    assert spec_conformance.request_problems([good, listed_variables, login]) == []
    problems = spec_conformance.request_problems([bad_enum, no_credential])
    assert len(problems) == 2
    assert "week" in problems[0]
    assert "Security" in problems[1]


# -- a fake that records nothing (issue 13, review) ---------------------------------------


async def test_the_fixture_samples_a_fake_that_records_nothing() -> None:
    # FakePatchworks(record=False) keeps no request; the autouse fixture hooks its model's
    # handle at start, so that the requests are validated from a sample when the test ends.
    fake = FakePatchworks(record=False)
    assert "handle" not in vars(fake)
    async with fake:
        assert "handle" in vars(fake)


@pytest.mark.spec_exempt(reason="sends an off-spec request to see the sample catch it")
async def test_an_off_spec_request_to_a_fake_that_records_nothing_is_caught(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePatchworks(record=False)
    sample = spec_conformance.sample_requests(fake, monkeypatch)
    async with fake:
        await _exchange(fake, session, "POST", "/api/v1/oauth/authenticate")
        await _exchange(fake, session, "POST", "/api/v1/oauth/authorise", {"timezone": "UTC"})
    assert fake.requests == []  # nothing recorded, and yet:
    kept = spec_conformance.sampled(fake, sample)
    assert [(r.method, r.path) for r in kept] == [
        ("POST", "/api/v1/oauth/authenticate"),
        ("POST", "/api/v1/oauth/authorise"),
    ]
    (problem,) = spec_conformance.request_problems(kept)
    assert problem.startswith("POST /api/v1/oauth/authorise: ")


def test_the_sample_is_bounded_and_spans_the_whole_run() -> None:
    sample = spec_conformance.RequestSample(size=100)
    for number in range(20_000):
        sample.offer("PATCH", f"/api/v1/oauth/{number}/reauthorise", {"A": "b"}, b"{}")
    numbers = sorted(int(request.path.split("/")[4]) for request in sample.kept)
    assert (sample.seen, len(numbers), len(set(numbers))) == (20_000, 100, 100)
    # Uniform over the run, not its first 100: each quarter holds some (seeded, so fixed).
    assert all(any(q * 5_000 <= n < (q + 1) * 5_000 for n in numbers) for q in range(4))
    assert sample.kept[0].headers == {"A": "b"}


def test_a_hook_that_saw_nothing_fails_loudly() -> None:
    fake = FakePatchworks(record=False)
    fake.request_count = 3  # three requests arrived, none reached the hook
    with pytest.raises(AssertionError, match="saw none of the 3 requests"):
        spec_conformance.sampled(fake, spec_conformance.RequestSample())
    fake.request_count = 0
    assert spec_conformance.sampled(fake, spec_conformance.RequestSample()) == []


def test_the_ci_script_requires_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    # .ci/run sets CI before the suite runs: there a missing spec fails, not skips.
    script = (spec_conformance.ROOT / ".ci" / "run").read_text().splitlines()
    first_suite = next(n for n, line in enumerate(script) if "-m pytest" in line)
    assert "export CI=true" in script[:first_suite]
    monkeypatch.setenv("CI", "true")
    assert spec_conformance.must_have_spec()
