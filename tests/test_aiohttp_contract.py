"""What this package uses of aiohttp beyond its documented API, checked so a change fails loudly.

The client uses only aiohttp's public API (``TCPConnector(socket_factory=...)`` counts
connections). The fake server (``patchworks_async.testing``) uses the low-level
``web.Server``: it overrides its ``connection_made`` / ``connection_lost`` hooks and
builds ``web.BaseRequest`` with positional arguments (``_CountingServer`` and
``_make_request`` in ``testing/_server.py``, the only place). When aiohttp changes any
of these, these tests say which, instead of the fake misbehaving in other tests.
"""

from __future__ import annotations

import inspect
import warnings

import aiohttp
import pytest
from aiohttp import web

from patchworks_async import _transport
from patchworks_async.testing import _server


def _positional(function: object) -> list[str]:
    parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    return [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]


def test_connector_takes_a_socket_factory() -> None:
    assert "socket_factory" in inspect.signature(aiohttp.TCPConnector).parameters


def test_bytes_payload_warns_just_above_our_largest_bytes_body() -> None:
    # _transport sends a body above _LARGEST_BYTES_BODY through io.BytesIO: aiohttp
    # warns about a bytes body only above that size (filterwarnings = error here).
    largest = _transport._LARGEST_BYTES_BODY
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aiohttp.BytesPayload(b"x" * largest)
        bigger = _transport._payload(b"x" * (largest + 1))
    assert isinstance(bigger, aiohttp.BytesIOPayload)
    assert isinstance(_transport._payload(b"{}"), aiohttp.BytesPayload)
    with pytest.warns(ResourceWarning):
        aiohttp.BytesPayload(b"x" * (largest + 1))


def test_low_level_server_hooks_keep_their_signatures() -> None:
    assert _positional(web.Server.connection_made) == ["self", "handler", "transport"]
    assert _positional(web.Server.connection_lost) == ["self", "handler", "exc"]
    parameters = inspect.signature(web.Server).parameters
    assert {"request_factory", "handler_cancellation"} <= set(parameters)


def test_base_request_positional_arguments() -> None:
    assert _positional(web.BaseRequest.__init__)[:7] == [
        "self",
        "message",
        "payload",
        "protocol",
        "payload_writer",
        "task",
        "loop",
    ]
    assert "client_max_size" in inspect.signature(web.BaseRequest).parameters
    assert _server._make_request.__code__.co_argcount == 5
