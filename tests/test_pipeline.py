"""Issue 13: one frozen configuration, one pipeline that the client only wires."""

from __future__ import annotations

import itertools

import attrs
import pytest

from patchworks_async import InvalidRequestError, PatchworksClient, RateLimit, RetryPolicy
from patchworks_async._config import ClientConfig
from patchworks_async._events import Event
from patchworks_async._pipeline import Pipeline, retry_waits


def _check(**changes: object) -> ClientConfig:
    arguments: dict[str, object] = {
        "api_key": "pw_secret_key",
        "token": None,
        "login": None,
        "base_url": "https://core.example/",
        "session": None,
        "timeout": 5,
        "max_connections": 4,
        "rate_limit": RateLimit("minute", 60),
        "retry": None,
        "max_instance_limiters": 10,
        "on_event": None,
        "allow_insecure_http": False,
        "max_response_bytes": 1024,
        "ssl_context": None,
        "limiter": None,
        "adaptive_quota": False,
        "unreachable_after": 3,
    }
    arguments.update(changes)
    return ClientConfig.check(**arguments)  # type: ignore[arg-type]  # a table of arguments


def test_the_configuration_is_checked_once_and_frozen() -> None:
    config = _check()
    assert config.base_url == "https://core.example"
    assert config.timeout.total == 5
    assert config.retry == RetryPolicy.disabled()  # retry=None turns retries off
    assert config.adaptive_quota is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.max_connections = 8  # type: ignore[misc]  # the point: it is frozen
    assert "pw_secret_key" not in repr(config)


def test_the_first_bad_argument_in_the_constructors_order_is_named() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        _check(timeout=0, max_connections=0, unreachable_after=0)
    assert caught.value.field == "timeout"
    with pytest.raises(InvalidRequestError) as caught:
        _check(max_connections=0, unreachable_after=0)
    assert caught.value.field == "max_connections"


def test_the_client_reads_its_settings_from_the_configuration() -> None:
    client = PatchworksClient(api_key="k", base_url="https://core.example/", timeout=7)
    assert client._config.base_url == client.base_url == "https://core.example"
    assert client.timeout is client._config.timeout
    assert client.retry is client._config.retry
    assert client.rate_limit is client._config.rate_limit
    assert client.max_connections == client._config.max_connections
    with pytest.raises(AttributeError):
        client.retry = RetryPolicy.disabled()  # type: ignore[misc]  # read-only now


def test_oauth_calls_go_through_the_clients_pipeline() -> None:
    client = PatchworksClient(api_key="k", base_url="https://core.example")
    assert isinstance(client._pipeline, Pipeline)
    assert client.oauth._pipeline is client._pipeline
    assert client._transport is client._pipeline.transport


def test_a_hook_set_later_is_the_one_the_pipeline_calls() -> None:
    client = PatchworksClient(api_key="k", base_url="https://core.example")
    heard: list[Event] = []
    client.on_event = heard.append
    assert client._pipeline.on_event == heard.append
    assert client._pipeline.hooked()


def test_backoff_delays_start_at_the_base_and_stop_at_the_max() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=3.0)
    assert list(itertools.islice(retry_waits(policy), 5)) == [0.5, 1.0, 2.0, 3.0, 3.0]
