"""Shared fixtures: the fake Patchworks server and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from patchworks_async import PatchworksClient, RetryPolicy
from patchworks_async.testing import FakePatchworks


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
