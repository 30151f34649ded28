"""Shared fixtures: the fake Patchworks server and a client pointed at it."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator

import pytest

from patchworks_async import PatchworksClient, RetryPolicy
from patchworks_async.testing import FakePatchworks

from . import spec_conformance


@pytest.fixture
async def fake() -> AsyncIterator[FakePatchworks]:
    async with FakePatchworks() as server:
        yield server


@pytest.fixture
async def client(fake: FakePatchworks) -> AsyncIterator[PatchworksClient]:
    async with PatchworksClient(
        base_url=fake.url,
        api_key=fake.api_key,
        rate_limit=None,
        retry=RetryPolicy(backoff_base=0.01, backoff_max=0.05),
    ) as c:
        yield c


@pytest.fixture(autouse=True)
def _requests_follow_the_spec(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Validate every OAuth request any FakePatchworks of the test received, with openapi-core.

    A ``FakePatchworks(record=False)`` keeps no request: a uniform sample of those its
    model handled is validated instead (``spec_conformance.RequestSample``), so that a
    long run's memory stays what its test measures and the contract is still checked.
    A test that sends off-spec requests on purpose (hostile input, raw requests without a
    credential) says so with ``@pytest.mark.spec_exempt(reason=...)``.
    """
    if not spec_conformance.spec_available():
        if spec_conformance.must_have_spec():
            pytest.fail(f"the spec is missing: {spec_conformance.SPEC_PATH}")
        yield
        return
    started: list[tuple[FakePatchworks, spec_conformance.RequestSample | None]] = []
    original = FakePatchworks.start

    @functools.wraps(original)  # keeps its docstring: tests/test_docstrings.py reads it
    async def start(self: FakePatchworks) -> None:
        started.append(
            (self, None if self.record else spec_conformance.sample_requests(self, monkeypatch))
        )
        await original(self)

    monkeypatch.setattr(FakePatchworks, "start", start)
    yield
    if request.node.get_closest_marker("spec_exempt") is not None:
        return
    problems = [
        problem
        for server, sample in started
        for problem in spec_conformance.request_problems(
            list(server.requests) if sample is None else spec_conformance.sampled(server, sample)
        )
    ]
    assert not problems, "requests off the spec:\n" + "\n".join(problems[:20])
