"""Issue 13: one frozen configuration, one pipeline that the client only wires."""

from __future__ import annotations

import ast
import asyncio
import itertools
import pathlib

import attrs
import pytest

import patchworks_async._bulk
import patchworks_async._oauth
import patchworks_async._pipeline
from patchworks_async import (
    InvalidRequestError,
    PatchworksClient,
    RateLimit,
    ReauthoriseRequest,
    RetryPolicy,
)
from patchworks_async._config import ClientConfig
from patchworks_async._events import Event
from patchworks_async._pipeline import Pipeline, retry_waits
from patchworks_async.testing import FakePatchworks


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
        "opentelemetry": False,
        "tracer_provider": None,
        "meter_provider": None,
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


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"opentelemetry": "yes"}, "opentelemetry must be True or False"),
        ({"tracer_provider": "p"}, "tracer_provider must be an opentelemetry.trace.TracerProvider"),
        ({"meter_provider": 1}, "meter_provider must be an opentelemetry.metrics.MeterProvider"),
    ],
)
def test_the_opentelemetry_arguments_are_checked_by_the_configuration(
    changes: dict[str, object], message: str
) -> None:
    # Issue 13 (review): the configuration holds every setting, OpenTelemetry's too.
    (field,) = changes
    with pytest.raises(InvalidRequestError) as caught:
        _check(**changes)
    assert (caught.value.field, str(caught.value)) == (field, message)
    # Checked last, as the constructor's last arguments.
    with pytest.raises(InvalidRequestError) as caught:
        _check(unreachable_after=0, **changes)
    assert caught.value.field == "unreachable_after"


def test_telemetry_is_off_in_the_configuration_unless_asked_for() -> None:
    assert _check().telemetry.enabled is False
    assert _check().telemetry.tracer_provider is None
    client = PatchworksClient(api_key="k", base_url="https://core.example")
    assert client._config.telemetry.enabled is False
    assert client._pipeline.telemetry is None


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


#: The client's old private names for the pipeline's state (telemetry and tests read them).
OLD_ALIASES = (
    "_auth",
    "_transport",
    "_backend",
    "_telemetry",
    "_limits",
    "_loop",
    "_quota",
    "_pending_rates",
    "_rate_limit_state",
    "_latest_headers",
    "_limits_in",
    "_headers_for",
)


def test_the_client_keeps_no_aliases_of_the_pipelines_state() -> None:
    # Issue 13: telemetry and tests read the pipeline (and its rate control) directly.
    client = PatchworksClient(api_key="k", base_url="https://core.example")
    assert [name for name in OLD_ALIASES if hasattr(client, name)] == []


def _attributes_read(module: object) -> set[str]:
    source = pathlib.Path(module.__file__).read_text(encoding="utf-8")  # type: ignore[attr-defined]  # a module
    return {node.attr for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute)}


def test_the_rate_learnt_after_a_call_and_refused_input_are_each_one_pipeline_method() -> None:
    # Issue 13: authorise, reauthorise and each bulk item learn their instance's rate
    # through Pipeline.learn_rate; OAuth reports refused input through Pipeline.refused.
    oauth = _attributes_read(patchworks_async._oauth)
    bulk = _attributes_read(patchworks_async._bulk)
    assert "learn_rate" in oauth
    assert "learn_rate" in bulk
    assert "set_instance_rate_limit" not in oauth | bulk
    assert "refused" in oauth
    assert "telemetry" not in oauth
    assert not hasattr(Pipeline(_check()), "set_instance_rate_limit")


def test_a_rate_is_learnt_only_with_an_id_and_rate_fields() -> None:
    pipeline = Pipeline(_check())
    rates = pipeline.rates
    rate = RateLimit("second", 5)
    assert pipeline.learn_rate == rates.learn_rate  # bound once: one lookup per call
    rates.learn_rate("7", None)  # a reauthorise without rate fields changes nothing
    rates.learn_rate(None, rate)  # an answer without an id: nothing to pace
    assert rates.pending_rates == {}
    rates.learn_rate(7, rate)
    assert rates.pending_rates == {"7": rate}
    with pytest.raises(InvalidRequestError):
        rates.learn_rate("", rate)  # an id that is no connector: refused as before


async def test_a_known_instance_repeating_its_rate_keeps_its_limiter() -> None:
    rates = Pipeline(_check()).rates
    limits = rates.limits_in(asyncio.get_running_loop())
    rate = RateLimit("second", 5)
    rates.learn_rate("7", rate)
    entry = limits.instances._entries["7"]
    rates.learn_rate("7", RateLimit("second", 5))  # equal, not the same value
    assert limits.instances._entries["7"] is entry
    assert entry.rate is rate
    rates.learn_rate("7", RateLimit("second", 9))
    assert rates.instance_rate_limit("7") == RateLimit("second", 9)


def test_a_hook_set_later_is_the_one_the_pipeline_calls() -> None:
    client = PatchworksClient(api_key="k", base_url="https://core.example")
    heard: list[Event] = []
    client.on_event = heard.append
    assert client._pipeline.on_event == heard.append
    assert client._pipeline.hooked()


def test_backoff_delays_start_at_the_base_and_stop_at_the_max() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=3.0)
    assert list(itertools.islice(retry_waits(policy), 5)) == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_rate_limit_state_lives_in_its_own_module() -> None:
    # Issue 13: which limiters apply, what the headers taught and the pauses are one
    # concern (_ratecontrol); the pipeline neither parses rate headers nor keeps their state.
    source = pathlib.Path(patchworks_async._pipeline.__file__).read_text(encoding="utf-8")
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert "_ratecontrol" in imported
    assert not imported & {"_ratelimit", "_adaptive"}
    pipeline = Pipeline(_check())
    for moved in ("pending_rates", "rate_limit_state", "latest_headers", "closed"):
        assert not hasattr(pipeline, moved), moved
        assert hasattr(pipeline.rates, moved), moved


async def test_the_call_paths_references_are_the_rate_controls_own(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    async with PatchworksClient(
        api_key=fake.api_key,
        base_url=fake.url,
        rate_limit=RateLimit("second", 1000),
        adaptive_quota=True,
    ) as client:
        pipeline = client._pipeline
        rates = pipeline.rates
        client.set_instance_rate_limit(key, RateLimit("second", 50))
        assert pipeline.limits is None
        assert rates.pending_rates == {key: RateLimit("second", 50)}
        await client.oauth.reauthorise(key, ReauthoriseRequest())
        assert pipeline.limits is rates.limits
        assert rates.limits is not None
        assert pipeline.loop is rates.loop is asyncio.get_running_loop()
        assert pipeline.quota is rates.quota is not None
        assert rates.pending_rates == {}
        assert client.instance_rate_limit(key) == RateLimit("second", 50)
    assert rates.closed
