"""OpenTelemetry (issue 14): the span tree, attributes and metric values, read back from the
SDK's ``InMemorySpanExporter`` and ``InMemoryMetricReader``, against the fake server."""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from patchworks_async import (
    AuthenticationError,
    EventKind,
    InvalidRequestError,
    Login,
    PatchworksClient,
    RateLimit,
    ReauthoriseRequest,
    RetryPolicy,
    UnprocessableEntityError,
    Variable,
)
from patchworks_async import Event as PatchworksEvent
from patchworks_async._otel import make_telemetry
from patchworks_async._pipeline import Pipeline
from patchworks_async.cli import main
from patchworks_async.testing import FakePatchworks, Fault

from .test_cli import cli
from .test_hostile_input import connectors
from .test_pipeline import _check as checked_config
from .test_secrets import assert_no_secret

FAST: Final = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.002)
TEMPLATE: Final = "/api/v1/oauth/{connector}/reauthorise"


@attrs.frozen
class Event:
    """A span event, typed for the assertions."""

    name: str
    attributes: dict[str, Any]


@attrs.frozen
class Span:
    """A finished span, typed for the assertions."""

    name: str
    kind: SpanKind
    span_id: int
    trace_id: int
    parent_id: int | None
    attributes: dict[str, Any]
    events: list[Event]
    status: StatusCode
    description: str | None
    start: int
    end: int

    @classmethod
    def of(cls, span: ReadableSpan) -> Span:
        context = span.get_span_context()
        assert context is not None
        return cls(
            name=span.name,
            kind=span.kind,
            span_id=context.span_id,
            trace_id=context.trace_id,
            parent_id=span.parent.span_id if span.parent is not None else None,
            attributes=dict(span.attributes or {}),
            events=[Event(event.name, dict(event.attributes or {})) for event in span.events],
            status=span.status.status_code,
            description=span.status.description,
            start=span.start_time or 0,
            end=span.end_time or 0,
        )


@attrs.define
class Otel:
    """An SDK tracer and meter provider, each read back in memory."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[Span]:
        return [Span.of(span) for span in self.spans.get_finished_spans()]

    def named(self, name: str) -> list[Span]:
        return [span for span in self.finished() if span.name == name]

    def children(self, parent: Span) -> list[Span]:
        return [span for span in self.finished() if span.parent_id == parent.span_id]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def total(self, name: str) -> float:
        return float(sum(point.value for point in self.points(name)))


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(spans, reader, tracer_provider, meter_provider)
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture
async def traced(fake: FakePatchworks, otel: Otel) -> AsyncIterator[PatchworksClient]:
    async with PatchworksClient(
        base_url=fake.url,
        api_key=fake.api_key,
        rate_limit=None,
        retry=FAST,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    ) as client:
        yield client


def attempts_of(otel: Otel, call: Span) -> list[Span]:
    return sorted(otel.children(call), key=lambda span: span.attributes["patchworks.attempt"])


# -- traces ------------------------------------------------------------------------------------


async def test_a_success_is_one_call_span_with_one_attempt(
    fake: FakePatchworks, traced: PatchworksClient, otel: Otel
) -> None:
    instance = fake.add_instance()
    in_flight_when_sent: list[float] = []

    def on_event(event: PatchworksEvent) -> None:
        if event.kind is EventKind.SENT:
            in_flight_when_sent.append(otel.total("http.client.active_requests"))

    traced.on_event = on_event
    await traced.oauth.reauthorise(instance, ReauthoriseRequest(timezone="UTC"))
    assert in_flight_when_sent == [1]
    (call,) = otel.named("patchworks.reauthorise")
    assert call.kind is SpanKind.CLIENT
    assert call.parent_id is None
    attributes = dict(call.attributes or {})
    assert attributes["http.request.method"] == "PATCH"
    assert attributes["url.template"] == TEMPLATE
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["http.response.status_code"] == 200
    assert attributes["patchworks.connector"] == instance
    assert attributes["patchworks.attempts"] == 1
    assert attributes["patchworks.retries"] == 0
    assert attributes["patchworks.rate_limit.paused"] is False
    assert re.fullmatch("[0-9a-f]{32}", attributes["patchworks.request_id"])  # the fake's uuid4
    assert "error.type" not in attributes
    assert call.status is StatusCode.UNSET
    (attempt,) = attempts_of(otel, call)
    assert attempt.kind is SpanKind.INTERNAL
    assert attempt.attributes["http.response.status_code"] == 200
    assert "http.request.resend_count" not in attempt.attributes
    assert [event.name for event in attempt.events] == ["patchworks.sent"]
    # The trace context left in the request's headers, naming the attempt that sent it.
    traceparent = fake.requests[-1].headers["traceparent"]
    assert traceparent.split("-")[1:3] == [
        f"{attempt.trace_id:032x}",
        f"{attempt.span_id:016x}",
    ]
    assert otel.total("patchworks.client.attempts") == 1
    assert otel.total("patchworks.client.retries") == 0
    (duration,) = otel.points("http.client.request.duration")
    assert duration.count == 1
    assert duration.attributes["http.response.status_code"] == 200
    assert duration.attributes["url.template"] == TEMPLATE
    assert "patchworks.request_id" not in duration.attributes  # unbounded: span only
    (active,) = otel.points("http.client.active_requests")
    assert active.value == 0
    # No instance limiter, no client-wide limit: only the in-flight bound applied.
    waits = otel.points("patchworks.client.limiter.wait.duration")
    assert [point.attributes["patchworks.limiter"] for point in waits] == ["in_flight"]
    assert "patchworks.wait.instance" not in attributes
    assert "patchworks.wait.client" not in attributes


async def test_a_retried_5xx_is_two_attempt_spans_under_one_call(
    fake: FakePatchworks, traced: PatchworksClient, otel: Otel
) -> None:
    instance = fake.add_instance()
    fake.add_faults(Fault.status_code(503))
    await traced.oauth.reauthorise(instance, ReauthoriseRequest(timezone="UTC"))
    (call,) = otel.named("patchworks.reauthorise")
    assert call.attributes["patchworks.attempts"] == 2
    assert call.attributes["patchworks.retries"] == 1
    assert call.attributes["http.response.status_code"] == 200
    (retry,) = call.events
    assert retry.name == "patchworks.retry"
    assert retry.attributes["error.type"] == "ServerError"
    first, second = attempts_of(otel, call)
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["error.type"] == "503"
    assert first.status is StatusCode.ERROR
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["http.response.status_code"] == 200
    assert first.end <= second.start
    assert first.attributes["patchworks.request_id"] != second.attributes["patchworks.request_id"]
    assert call.attributes["patchworks.request_id"] == second.attributes["patchworks.request_id"]
    assert otel.total("patchworks.client.attempts") == 2
    assert otel.total("patchworks.client.retries") == 1
    statuses = {
        p.attributes["http.response.status_code"]: p.count
        for p in otel.points("http.client.request.duration")
    }
    assert statuses == {503: 1, 200: 1}


async def test_a_dropped_connection_is_an_attempt_with_the_transport_error(
    fake: FakePatchworks, traced: PatchworksClient, otel: Otel
) -> None:
    instance = fake.add_instance()
    fake.add_faults(Fault.status_code(503), Fault.dropped())
    await traced.oauth.reauthorise(instance, ReauthoriseRequest(timezone="UTC"))
    (call,) = otel.named("patchworks.reauthorise")
    first, second, third = attempts_of(otel, call)
    assert first.attributes["http.response.status_code"] == 503
    assert "http.response.status_code" not in second.attributes
    assert second.attributes["error.type"] == "TransportError"
    assert second.status is StatusCode.ERROR
    assert third.attributes["http.response.status_code"] == 200
    assert call.attributes["patchworks.retries"] == 2
    errors = {
        p.attributes.get("error.type"): p.count for p in otel.points("http.client.request.duration")
    }
    assert errors == {"503": 1, "TransportError": 1, None: 1}
    (active,) = otel.points("http.client.active_requests")
    assert active.value == 0  # the failed attempt left the in-flight count too


async def test_a_call_that_fails_for_good_has_an_error_status(
    fake: FakePatchworks, traced: PatchworksClient, otel: Otel
) -> None:
    instance = fake.add_instance()
    fake.add_faults(Fault.status_code(422))
    with pytest.raises(UnprocessableEntityError):
        await traced.oauth.reauthorise(instance, ReauthoriseRequest(timezone="UTC"))
    (call,) = otel.named("patchworks.reauthorise")
    assert call.status is StatusCode.ERROR
    assert call.description == "UnprocessableEntityError"
    assert call.attributes["error.type"] == "UnprocessableEntityError"
    assert call.attributes["http.response.status_code"] == 422
    assert [event.name for event in call.events] == ["patchworks.gave_up"]


async def test_a_429_pause_is_marked_and_counted(
    fake: FakePatchworks, traced: PatchworksClient, otel: Otel
) -> None:
    instance = fake.add_instance()
    fake.add_faults(Fault.too_many(retry_after=0.05))
    await traced.oauth.reauthorise(instance, ReauthoriseRequest(timezone="UTC"))
    (call,) = otel.named("patchworks.reauthorise")
    assert call.attributes["patchworks.rate_limit.paused"] is True
    assert call.attributes["patchworks.attempts"] == 2
    first, second = attempts_of(otel, call)
    assert first.attributes["http.response.status_code"] == 429
    assert second.attributes["http.response.status_code"] == 200
    assert call.events[0].attributes["error.type"] == "RateLimitError"
    assert call.events[0].attributes["patchworks.retry.delay"] >= 0.05
    assert otel.total("patchworks.client.rate_limited") == 1


async def test_a_validation_error_is_a_span_with_no_attempt_and_nothing_sent(
    fake: FakePatchworks, traced: PatchworksClient, otel: Otel
) -> None:
    with pytest.raises(InvalidRequestError):
        await traced.oauth.reauthorise("", ReauthoriseRequest())
    assert fake.requests == []
    (call,) = otel.finished()
    assert call.name == "patchworks.reauthorise"
    assert call.kind is SpanKind.CLIENT
    assert call.attributes["error.type"] == "InvalidRequestError"
    assert call.attributes["patchworks.attempts"] == 0
    assert call.attributes["url.template"] == TEMPLATE
    assert "patchworks.connector" not in call.attributes  # refused input is not recorded
    assert call.status is StatusCode.ERROR
    assert otel.points("patchworks.client.attempts") == []
    assert otel.points("http.client.request.duration") == []


async def test_a_bulk_job_is_one_parent_span_over_its_items(
    fake: FakePatchworks, traced: PatchworksClient, otel: Otel
) -> None:
    first, second = fake.add_instance(), fake.add_instance()
    items: list[Any] = [
        (first, ReauthoriseRequest(timezone="UTC")),
        ("", ReauthoriseRequest()),  # refused before sending
        (second, ReauthoriseRequest(timezone="UTC")),
    ]
    outcomes = [outcome async for outcome in traced.oauth.reauthorise_many(items, concurrency=2)]
    assert sorted(outcome.ok for outcome in outcomes) == [False, True, True]
    (job,) = otel.named("patchworks.reauthorise_many")
    assert job.parent_id is None
    assert job.attributes["patchworks.bulk.items"] == 3
    assert job.attributes["patchworks.bulk.failed"] == 1
    items_spans = otel.children(job)
    assert len(items_spans) == 3
    assert {span.name for span in items_spans} == {"patchworks.reauthorise"}
    assert sorted(span.attributes["patchworks.attempts"] for span in items_spans) == [0, 1, 1]
    for span in items_spans:
        assert span.trace_id == job.trace_id
        if span.attributes["patchworks.attempts"]:
            assert len(otel.children(span)) == 1
    assert job.end >= max(span.end for span in items_spans)


async def test_calls_nest_under_the_callers_span_and_concurrent_calls_stay_apart(
    fake: FakePatchworks, traced: PatchworksClient, otel: Otel
) -> None:
    instances = [fake.add_instance() for _ in range(20)]
    tracer = otel.tracer_provider.get_tracer("caller")
    with tracer.start_as_current_span("handler") as handler:
        await asyncio.gather(
            *(traced.oauth.reauthorise(i, ReauthoriseRequest(timezone="UTC")) for i in instances)
        )
    calls = otel.named("patchworks.reauthorise")
    assert len(calls) == 20
    for call in calls:
        assert call.parent_id is not None
        assert call.parent_id == handler.get_span_context().span_id
        (attempt,) = otel.children(call)
        assert attempt.name == "patchworks.reauthorise attempt"
    connectors_seen = sorted(call.attributes["patchworks.connector"] for call in calls)
    assert connectors_seen == sorted(instances)
    traceparents = {record.headers["traceparent"].split("-")[2] for record in fake.requests}
    attempt_ids = {f"{s.span_id:016x}" for s in otel.named("patchworks.reauthorise attempt")}
    assert traceparents == attempt_ids


async def test_with_the_aiohttp_instrumentation_its_http_span_is_a_child_of_ours(
    fake: FakePatchworks, otel: Otel
) -> None:
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        instance = fake.add_instance()
        async with PatchworksClient(
            base_url=fake.url,
            api_key=fake.api_key,
            rate_limit=None,
            tracer_provider=otel.tracer_provider,
            meter_provider=otel.meter_provider,
        ) as client:
            await client.oauth.reauthorise(instance, ReauthoriseRequest(timezone="UTC"))
    finally:
        instrumentor.uninstrument()
    (call,) = otel.named("patchworks.reauthorise")
    (attempt,) = otel.children(call)
    (http,) = otel.children(attempt)
    assert http.kind is SpanKind.CLIENT
    assert http.name != call.name
    assert len(otel.finished()) == 3  # no second logical span
    # The innermost span is the one the server hears of.
    assert fake.requests[-1].headers["traceparent"].split("-")[2] == f"{http.span_id:016x}"


# -- metrics -----------------------------------------------------------------------------------


def rates_of(otel: Otel) -> dict[tuple[str, str | None, str | None], float]:
    """The rate gauge's readings by (limiter, connector, limit source)."""
    return {
        (
            p.attributes["patchworks.limiter"],
            p.attributes.get("patchworks.connector"),
            p.attributes.get("patchworks.limit_source"),
        ): p.value
        for p in otel.points("patchworks.client.rate_limit")
    }


async def test_limiter_waits_and_learnt_limits_are_reported(otel: Otel) -> None:
    async with (
        FakePatchworks(quota=1000) as fake,
        PatchworksClient(
            base_url=fake.url,
            api_key=fake.api_key,
            rate_limit=RateLimit("minute", 6000),
            meter_provider=otel.meter_provider,
            tracer_provider=otel.tracer_provider,
        ) as client,
    ):
        instance = fake.add_instance()
        client.set_instance_rate_limit(instance, RateLimit("second", 50))
        # Before any answer: the configured client-wide rate.
        assert rates_of(otel) == {
            ("client", None, "configured"): 100.0,
            ("instance", instance, None): 50.0,
        }
        await client.oauth.reauthorise(instance, ReauthoriseRequest(timezone="UTC"))
        (call,) = otel.named("patchworks.reauthorise")
        for name in ("instance", "in_flight", "client"):
            assert call.attributes[f"patchworks.wait.{name}"] >= 0
        waits = {
            p.attributes["patchworks.limiter"]: p.count
            for p in otel.points("patchworks.client.limiter.wait.duration")
        }
        assert waits == {"instance": 1, "in_flight": 1, "client": 1}
        # The adaptive quota learnt the server's 1,000 a minute from X-RateLimit-Limit.
        assert rates_of(otel) == {
            ("client", None, "server"): 1000 / 60,
            ("instance", instance, None): 50.0,
        }
        state = client.rate_limit_state
        assert state is not None
        (limit,) = otel.points("patchworks.client.quota.limit")
        assert limit.value == state.limit
        (remaining,) = otel.points("patchworks.client.quota.remaining")
        assert remaining.value == state.remaining


async def test_two_clients_of_one_meter_both_report_their_limits(
    fake: FakePatchworks, otel: Otel
) -> None:
    async with (
        PatchworksClient(
            base_url=fake.url, api_key=fake.api_key, meter_provider=otel.meter_provider
        ) as one,
        PatchworksClient(
            base_url=fake.url, api_key=fake.api_key, meter_provider=otel.meter_provider
        ) as two,
    ):
        one.set_instance_rate_limit("a", RateLimit("second", 1))
        two.set_instance_rate_limit("b", RateLimit("second", 2))
        instances = {
            p.attributes.get("patchworks.connector"): p.value
            for p in otel.points("patchworks.client.rate_limit")
            if p.attributes["patchworks.limiter"] == "instance"
        }
        assert instances == {"a": 1.0, "b": 2.0}


def test_the_gauges_observe_a_pipeline_with_no_client_around_it(otel: Otel) -> None:
    # Issue 13: the telemetry reads the pipeline and its rate control (ObservedPipeline),
    # not the client's private names: a bare Pipeline is all it needs.
    config = checked_config(rate_limit=RateLimit("second", 4), meter_provider=otel.meter_provider)
    pipeline = Pipeline(config)
    telemetry = make_telemetry(pipeline, config.telemetry)
    assert telemetry is not None
    pipeline.observe_with(telemetry)
    pipeline.rates.set_instance_rate_limit("a", RateLimit("second", 2))
    assert rates_of(otel) == {("client", None, "configured"): 4.0, ("instance", "a", None): 2.0}
    (active,) = otel.points("http.client.active_requests")
    assert active.value == 0
    assert active.attributes == {"server.address": "core.example"}


def test_a_dropped_client_leaves_the_gauges_at_once(otel: Otel) -> None:
    # The gauges hold each pipeline weakly; the traced call must not make the pipeline
    # a reference cycle, or a dropped client would be reported until a collection.
    client = PatchworksClient(
        api_key="k", base_url="https://core.example", meter_provider=otel.meter_provider
    )
    client.set_instance_rate_limit("a", RateLimit("second", 2))
    assert ("instance", "a", None) in rates_of(otel)
    gc.disable()  # what is freed below is freed by reference counting alone
    try:
        del client
        assert rates_of(otel) == {}
    finally:
        gc.enable()


# -- secrets and hostile input -----------------------------------------------------------------


def exported_text(otel: Otel) -> str:
    """Everything the exporters were given, as text."""
    parts: list[str] = []
    for span in otel.spans.get_finished_spans():
        parts.append(span.to_json())
    data = otel.reader.get_metrics_data()
    if data is not None:
        parts.append(data.to_json())
    return "\n".join(parts)


async def test_no_secret_reaches_a_span_an_event_or_a_metric(otel: Otel) -> None:
    password = "pw-" + "s3cr3t-password-value"
    variable_secret = "variable-secret-value-123456"
    async with FakePatchworks(password=password) as fake:
        fake.add_instance("1")
        async with PatchworksClient(
            base_url=fake.url,
            login=Login(username=fake.username, password=password, url=fake.login_url),
            rate_limit=None,
            retry=FAST,
            tracer_provider=otel.tracer_provider,
            meter_provider=otel.meter_provider,
        ) as client:
            body = ReauthoriseRequest(
                timezone="UTC", variables=[Variable(key="k", value=variable_secret, secret=True)]
            )
            await client.oauth.reauthorise("1", body)
            fake.expire_tokens()
            await client.oauth.reauthorise("1", body)  # a 401, a fresh login, a retry
            fake.add_faults(Fault.status_code(422))
            with pytest.raises(UnprocessableEntityError):
                await client.oauth.reauthorise("1", body)
            tokens = list(fake._tokens)
        async with PatchworksClient(
            base_url=fake.url,
            api_key="wrong-key-" + "0123456789abcdef",
            rate_limit=None,
            tracer_provider=otel.tracer_provider,
        ) as wrong:
            with pytest.raises(AuthenticationError):
                await wrong.oauth.reauthorise("1", body)
        secrets = [password, variable_secret, fake.api_key, "wrong-key-0123456789abcdef", *tokens]
    assert len(otel.named("patchworks.reauthorise")) == 4
    assert_no_secret(secrets, {"exported spans and metrics": exported_text(otel)})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(connector=connectors())
def test_hostile_connectors_are_recorded_as_given_or_not_at_all(connector: Any) -> None:
    async def run() -> None:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        async with FakePatchworks() as fake:
            async with PatchworksClient(
                base_url=fake.url,
                api_key=fake.api_key,
                rate_limit=None,
                retry=RetryPolicy.disabled(),
                tracer_provider=provider,
            ) as client:
                try:
                    await client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))
                except InvalidRequestError:
                    (refused,) = [Span.of(span) for span in exporter.get_finished_spans()]
                    assert "patchworks.connector" not in refused.attributes
                    assert fake.requests == []
                    return
                except Exception:  # noqa: S110  # an unknown instance's 404: still one span
                    pass
            spans = [Span.of(span) for span in exporter.get_finished_spans()]
            (call,) = [span for span in spans if span.parent_id is None]
            assert call.attributes["patchworks.connector"] == str(connector)
            assert call.attributes["url.template"] == TEMPLATE

    asyncio.run(run())


# -- switching it on and off --------------------------------------------------------------------


def test_without_it_nothing_is_wrapped_and_opentelemetry_is_not_imported() -> None:
    code = textwrap.dedent(
        """
        import sys
        from patchworks_async import PatchworksClient
        client = PatchworksClient(api_key="k", base_url="http://127.0.0.1:1")
        assert client._pipeline.telemetry is None
        assert "_call" not in vars(client)
        assert not any(name.startswith("opentelemetry") for name in sys.modules), "imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603  # our code


def test_without_opentelemetry_installed_the_package_works_and_says_what_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
        from patchworks_async import InvalidRequestError, PatchworksClient
        PatchworksClient(api_key="k", base_url="http://127.0.0.1:1")
        for kwargs, field in (
            ({"opentelemetry": True}, "opentelemetry"),
            ({"tracer_provider": object()}, "tracer_provider"),
        ):
            try:
                PatchworksClient(api_key="k", base_url="http://127.0.0.1:1", **kwargs)
            except InvalidRequestError as error:
                assert error.field == field, error.field
                assert "pip install 'patchworks-async[otel]'" in str(error), str(error)
            else:
                raise AssertionError("no error")
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603  # our code


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"opentelemetry": "yes"}, "opentelemetry"),
        ({"tracer_provider": "provider"}, "tracer_provider"),
        ({"meter_provider": 1}, "meter_provider"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(api_key="k", base_url="http://127.0.0.1:1", **kwargs)
    assert info.value.field == field


def test_the_configuration_holds_the_checked_providers(otel: Otel) -> None:
    # Issue 13 (review): the telemetry is built from the frozen configuration's settings.
    client = PatchworksClient(
        api_key="k", base_url="http://127.0.0.1:1", tracer_provider=otel.tracer_provider
    )
    settings = client._config.telemetry
    assert settings.enabled is True  # a provider switches it on
    assert settings.tracer_provider is otel.tracer_provider
    assert settings.meter_provider is None  # the global one
    assert client._pipeline.telemetry is not None
    assert repr(settings) == (
        "<TelemetrySettings enabled=True tracer_provider=TracerProvider meter_provider=None>"
    )
    assert " object at 0x" not in repr(client._config) + repr(client)
    on = PatchworksClient(api_key="k", base_url="http://127.0.0.1:1", opentelemetry=True)
    assert on._config.telemetry.enabled is True
    assert on._config.telemetry.tracer_provider is None


async def test_opentelemetry_true_uses_the_global_providers(fake: FakePatchworks) -> None:
    # The global providers can be set once per process: a subprocess keeps this one's clean.
    code = textwrap.dedent(
        f"""
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from patchworks_async import PatchworksClient
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        async def main():
            async with PatchworksClient(
                api_key={fake.api_key!r}, base_url={fake.url!r}, opentelemetry=True
            ) as client:
                await client.oauth.authenticate()
        asyncio.run(main())
        names = [span.name for span in exporter.get_finished_spans()]
        assert names == ["patchworks.authenticate attempt", "patchworks.authenticate"], names
        """
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await asyncio.wait_for(process.wait(), 60) == 0


# -- the command line --------------------------------------------------------------------------


async def test_cli_otel_console_writes_spans_and_metrics_to_stderr(fake: FakePatchworks) -> None:
    instance = fake.add_instance()
    run = await cli(fake, "reauthorise", instance, "--field", "timezone=UTC", "--otel", "console")
    assert run.returncode == 0, run.stderr
    assert str(run.json()["id"]) == instance  # standard output holds only the answer
    assert '"name": "patchworks.reauthorise"' in run.stderr
    assert '"name": "patchworks.reauthorise attempt"' in run.stderr
    assert '"name": "http.client.request.duration"' in run.stderr
    assert "traceparent" in fake.requests[-1].headers


def test_cli_otel_without_the_sdk_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.metrics", None)  # as if not installed
    monkeypatch.setenv("PATCHWORKS_API_KEY", "k")
    monkeypatch.setenv("PATCHWORKS_BASE_URL", "http://127.0.0.1:1")
    assert main(["authenticate", "--otel", "console"]) == 2
    error = capsys.readouterr().err
    assert "--otel console needs the OpenTelemetry SDK, which is not installed" in error
    assert "pip install 'patchworks-async[otel]' opentelemetry-sdk" in error
