"""The contract: requests and responses checked against the OpenAPI spec with openapi-core.

The spec is ``../shared/spec/patchworks-oauth.openapi.json`` (beside the repository, as CI
lays it out). ``conftest.py`` validates every request that any ``FakePatchworks`` of the
end-to-end suite receives on an OAuth path (of a ``FakePatchworks(record=False)``, a
:class:`RequestSample` of them); ``test_spec_conformance.py`` validates the
fake's own responses. So neither the client nor the fake users test against can drift from
the contract without a test failing.

One documented deviation is applied to the spec before validating (DOMAIN.md, "variables"):
the spec types ``variables`` as a string, while the validation rules on the same
documentation page describe an array of objects; the client sends a list as a JSON array and
a string unchanged, so either is accepted. Nothing else is loosened.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

import attrs
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from patchworks_async.testing import Answer, FakePatchworks

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT.parent / "shared" / "spec" / "patchworks-oauth.openapi.json"
# The spec's only server; the fake's own address is swapped for it before validating.
SPEC_HOST = "https://core.wearepatchworks.com"
OAUTH_PREFIX = "/api/v1/oauth/"
_VARIABLES_BODIES = ("OauthAuthoriseAuthoriseRequest", "OauthReauthoriseReauthoriseRequest")
#: Requests of one unrecorded fake that are validated. openapi-core takes about 5 ms a
#: request here: 100 cost half a second, where all 20,000 of test_resources would cost
#: 100 s and the memory the test keeps low with ``record=False``.
SAMPLE_SIZE: Final = 100


def spec_available() -> bool:
    """True when the spec lies beside the repository (always in CI)."""
    return SPEC_PATH.is_file()


def must_have_spec() -> bool:
    """In CI a missing spec is a failure, not a skip: the contract is never silently off."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _with_documented_deviations(spec: dict[str, Any]) -> dict[str, Any]:
    patched = copy.deepcopy(spec)
    schemas = patched["components"]["schemas"]
    for name in _VARIABLES_BODIES:
        declared = schemas[name]["properties"]["variables"]
        schemas[name]["properties"]["variables"] = {
            "anyOf": [declared, {"type": "array", "items": {"type": "object"}}]
        }
    return patched


@cache
def openapi() -> OpenAPI:
    """The spec, with the documented ``variables`` deviation, as an openapi-core object."""
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return OpenAPI.from_dict(_with_documented_deviations(spec))


def mock_request(
    method: str, path: str, headers: Mapping[str, str], body: bytes, query: str = ""
) -> MockRequest:
    """An openapi-core request from what went over the wire (``path`` raw, as received)."""
    args = dict(parse_qsl(query, keep_blank_values=True))
    return MockRequest(
        SPEC_HOST,
        method,
        path,
        args=args,
        headers=dict(headers),
        data=body,
        content_type=headers.get("Content-Type", "application/json"),
    )


def request_problems(requests: Iterable[Any]) -> list[str]:
    """Every OAuth request of a ``FakePatchworks.requests`` list that breaks the spec.

    Requests to other paths (the login endpoint, the redirect target) are not the spec's.
    A problem names the request by method and path, and the validator's finding; never a
    header or a body (they hold the credential).
    """
    problems: list[str] = []
    for record in requests:
        if not record.path.startswith(OAUTH_PREFIX):
            continue
        found = openapi().unmarshal_request(
            mock_request(record.method, record.path, record.headers, record.body, record.query)
        )
        for error in found.errors:
            problems.append(f"{record.method} {record.path}: {_describe(error)}")
    return problems


@attrs.frozen
class SampledRequest:
    """What the spec checks of one request (the shape of a ``RecordedRequest``'s fields)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    query: str = ""  # the spec's OAuth paths take no query (FakePatchworks.handle gets none)


class RequestSample:
    """A uniform sample of the requests a ``FakePatchworks(record=False)`` handles.

    ``FakePatchworks(record=False)`` keeps no request (long runs whose memory and
    descriptors a test measures), so the autouse fixture cannot read them back:
    ``offer`` is called with each request the fake's model handles, and keeps at most
    ``size`` of them, each request equally likely (reservoir sampling, seeded: the
    same run keeps the same sample). A run of any length costs one small list.
    """

    def __init__(self, size: int = SAMPLE_SIZE) -> None:
        self.size = size
        self.seen = 0
        self.kept: list[SampledRequest] = []
        self._random = random.Random(size)  # seeded: the same run keeps the same sample

    def offer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> None:
        """Count one request and maybe keep it (its headers copied only then)."""
        self.seen += 1
        slot = len(self.kept) if len(self.kept) < self.size else self._random.randrange(self.seen)
        if slot < self.size:
            request = SampledRequest(method, path, dict(headers), body)
            if slot == len(self.kept):
                self.kept.append(request)
            else:
                self.kept[slot] = request


def sample_requests(fake: FakePatchworks, monkeypatch: pytest.MonkeyPatch) -> RequestSample:
    """Offer each request the fake's model handles to a sample (the fake records none).

    Args:
        fake: a ``FakePatchworks(record=False)``, not yet started.
        monkeypatch: undoes the hook when the test ends.

    Returns:
        The sample, filled as the fake answers.
    """
    sample = RequestSample()
    handle = fake.handle

    def sampled(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        sample.offer(method, path, headers, body)
        return handle(method, path, headers, body)

    monkeypatch.setattr(fake, "handle", sampled)
    return sample


def sampled(fake: FakePatchworks, sample: RequestSample) -> list[SampledRequest]:
    """The sampled requests to validate; loud, not silently empty, if the hook saw none.

    Raises:
        AssertionError: requests reached the fake's model, but none was offered (the
            fake no longer calls ``handle``: the hook must move with it).
    """
    reached_the_model = fake.request_count - len(fake.faults_injected)
    assert sample.seen or reached_the_model <= 0, (
        f"the spec fixture saw none of the {fake.request_count} requests of a "
        "FakePatchworks(record=False): it hooks FakePatchworks.handle"
    )
    return sample.kept


def response_problems(
    request: MockRequest, status: int, headers: Mapping[str, str], body: bytes
) -> list[str]:
    """What breaks the spec in one response to ``request`` (empty when it conforms)."""
    response = MockResponse(
        body,
        status_code=status,
        headers=dict(headers),
        content_type=headers.get("Content-Type", "application/json").split(";")[0],
    )
    found = openapi().unmarshal_response(request, response)
    return [_describe(error) for error in found.errors]


def _describe(error: BaseException) -> str:
    """The validator's most specific findings, without echoing a whole body back."""
    nested = getattr(error.__cause__, "schema_errors", None) or getattr(
        error, "schema_errors", None
    )
    if nested:
        return "; ".join(str(getattr(item, "message", item)) for item in nested)
    return f"{type(error).__name__}: {error}"
