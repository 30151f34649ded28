"""The contract: requests and responses checked against the OpenAPI spec with openapi-core.

The spec is ``../shared/spec/patchworks-oauth.openapi.json`` (beside the repository, as CI
lays it out). ``conftest.py`` validates every request that any ``FakePatchworks`` of the
end-to-end suite receives on an OAuth path; ``test_spec_conformance.py`` validates the
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
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT.parent / "shared" / "spec" / "patchworks-oauth.openapi.json"
# The spec's only server; the fake's own address is swapped for it before validating.
SPEC_HOST = "https://core.wearepatchworks.com"
OAUTH_PREFIX = "/api/v1/oauth/"
_VARIABLES_BODIES = ("OauthAuthoriseAuthoriseRequest", "OauthReauthoriseReauthoriseRequest")


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
