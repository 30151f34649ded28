"""OpenTelemetry traces and metrics of the client's calls (imported only when a client asks).

The span tree of one call, and of a bulk job::

    patchworks.reauthorise_many             INTERNAL  one per bulk job
      patchworks.reauthorise                CLIENT    one per logical call (or item)
        patchworks.reauthorise attempt      INTERNAL  one per attempt: retries are siblings
          PATCH                             CLIENT    the aiohttp instrumentation's HTTP span
                                                      (opentelemetry-instrumentation-aiohttp-client)

Retries are child spans, not events on the call span: each attempt has its own
limiter waits, its own status and its own server time, and a waterfall of
sibling spans shows at a glance where the time went (the limiter: from the
attempt's start to its ``patchworks.sent`` event; the server: from there to its
end; the backoff: the gap between two attempts). The attempt span is current
while the request is sent, so the ``traceparent`` the global propagator writes,
and the aiohttp instrumentation's HTTP span, belong to the attempt that sent it.

Only metadata is recorded: operation, method, URL template, server, connector
id, counts, seconds, status, the error's class name, the server's request id.
Never a header, a body, a credential, a token, ``variables``, or an exception's
message (``record_exception`` is never called).
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from ._errors import InvalidRequestError
from ._events import Event, EventKind
from ._ratelimit import RateLimitState, parse_rate_limit_headers
from ._sansio import OAUTH_PREFIX, header
from ._version import __version__

if TYPE_CHECKING:
    import asyncio

    from ._adaptive import QuotaTracker
    from ._backend import CallTracker
    from ._limits import Limits, Slot
    from ._sansio import Request
    from ._transport import RawResponse
    from .models import RateLimit

    class ObservedRates(Protocol):
        """What the gauges read of a client's rate control (``_ratecontrol.RateControl``)."""

        @property
        def rate_limit(self) -> RateLimit | None: ...
        @property
        def quota(self) -> QuotaTracker | None: ...
        @property
        def limits(self) -> Limits | None: ...
        @property
        def pending_rates(self) -> Mapping[str, RateLimit | None]: ...
        @property
        def rate_limit_state(self) -> RateLimitState | None: ...
        @property
        def latest_headers(self) -> tuple[Mapping[str, str], float] | None: ...

    class ObservedPipeline(Protocol):
        """What the telemetry reads of the pipeline it observes (``_pipeline.Pipeline``).

        A Protocol, not an import: ``_pipeline`` imports this module's types, and the
        telemetry reads only these public attributes, never the client's.
        """

        @property
        def base_url(self) -> str: ...
        @property
        def telemetry(self) -> Telemetry | None: ...
        @property
        def rates(self) -> ObservedRates: ...

    class CallFunction(Protocol):
        """The signature of ``Pipeline.call``."""

        def __call__(
            self,
            request: Request,
            extra: asyncio.Semaphore | None = None,
            tracker: CallTracker | None = None,
        ) -> Coroutine[Any, Any, dict[str, Any]]: ...


SCOPE: Final = "patchworks_async"
#: Each operation's method and ``url.template`` (the connector as a template variable).
TEMPLATES: Final[Mapping[str, tuple[str, str]]] = {
    "authenticate": ("POST", f"{OAUTH_PREFIX}/authenticate"),
    "authorise": ("POST", f"{OAUTH_PREFIX}/authorise"),
    "woo_app_auth": ("POST", f"{OAUTH_PREFIX}/woo-app-auth"),
    "reauthorise": ("PATCH", f"{OAUTH_PREFIX}/{{connector}}/reauthorise"),
}
#: The HTTP semantic conventions' advised buckets for ``http.client.request.duration``.
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
)
_WAIT_NAMES: Final = ("instance", "in_flight", "client")
_MAX_REQUEST_ID: Final = 128
_REQUEST_ID_HEADERS: Final = ("X-Request-Id", "Request-Id")

Attributes = dict[str, Any]


def check_providers(
    tracer_provider: object | None, meter_provider: object | None
) -> tuple[TracerProvider | None, MeterProvider | None]:
    """The explicit providers, checked (``None`` stands for the global one).

    Args:
        tracer_provider: the ``tracer_provider`` argument.
        meter_provider: the ``meter_provider`` argument.

    Returns:
        The two providers, typed.

    Raises:
        InvalidRequestError: a provider of the wrong type, naming the argument.
    """
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise InvalidRequestError(
            "tracer_provider must be an opentelemetry.trace.TracerProvider",
            field="tracer_provider",
        )
    if meter_provider is not None and not isinstance(meter_provider, MeterProvider):
        raise InvalidRequestError(
            "meter_provider must be an opentelemetry.metrics.MeterProvider",
            field="meter_provider",
        )
    return tracer_provider, meter_provider


class _CallState:
    """What one call's spans have learnt so far (held in a context variable)."""

    __slots__ = (
        "attempt_span",
        "attempt_token",
        "attempts",
        "attributes",
        "operation",
        "paused",
        "request_id",
        "retries",
        "sent_at",
        "span",
        "status",
        "waits",
    )

    def __init__(self, span: Span, operation: str, attributes: Attributes) -> None:
        self.span = span
        self.operation = operation
        self.attributes = attributes  # the metrics' attributes (low cardinality)
        self.attempt_span: Span | None = None
        self.attempt_token: object | None = None
        self.attempts = 0
        self.retries = 0
        self.paused = False
        self.request_id: str | None = None
        self.status: int | None = None
        self.sent_at: float | None = None
        self.waits: dict[str, float] = {}


#: The call in progress in this task (each asyncio task has its own context).
_CALL: Final[contextvars.ContextVar[_CallState | None]] = contextvars.ContextVar(
    "patchworks_async_otel_call", default=None
)


def _request_id(headers: Mapping[str, str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = header(headers, name)
        if value:
            return value[:_MAX_REQUEST_ID]
    return None


class Telemetry:
    """One client's tracer, meter and instruments; called at the client's hook points."""

    # Over 40 lines: one instrument a few lines, each declared with its name and unit.
    def __init__(
        self,
        pipeline: ObservedPipeline,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        parts = urlsplit(pipeline.base_url)
        self.server: Attributes = {"server.address": parts.hostname or ""}
        if parts.port is not None:
            self.server["server.port"] = parts.port
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (one per attempt, from send to answer).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._wait_attributes = {
            name: {**self.server, "patchworks.limiter": name} for name in _WAIT_NAMES
        }
        self._wait = meter.create_histogram(
            "patchworks.client.limiter.wait.duration",
            unit="s",
            description="Time an attempt waited in one of the client's limiters.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._attempts = meter.create_counter(
            "patchworks.client.attempts", unit="{attempt}", description="Requests sent."
        )
        self._retries = meter.create_counter(
            "patchworks.client.retries", unit="{retry}", description="Retries scheduled."
        )
        self._rate_limited = meter.create_counter(
            "patchworks.client.rate_limited",
            unit="{response}",
            description="429 answers received.",
        )
        #: Requests sent and not yet answered: observed (``_Gauges``), not counted per call.
        self.in_flight = 0
        _gauges_of(meter).add(pipeline)

    # -- the call span ---------------------------------------------------------------------

    def wrap_call(self, call: CallFunction) -> CallFunction:
        """``call`` (the pipeline's ``call``) inside a call span.

        ``call`` is held weakly: the pipeline keeps the wrapper as its own ``call``,
        and a strong reference back would make it a cycle that outlives its client
        until the garbage collector runs (the gauges, which hold it weakly, would go
        on reporting a client that is gone).

        Args:
            call: the pipeline's own ``call`` (a bound method).

        Returns:
            A function of the same signature that traces each call.
        """
        untraced = weakref.WeakMethod(call)

        async def traced(
            request: Request,
            extra: asyncio.Semaphore | None = None,
            tracker: CallTracker | None = None,
        ) -> dict[str, Any]:
            call = untraced()
            if call is None:  # only reachable through a pipeline, so not while it lives
                raise RuntimeError("the client's pipeline is gone")
            state = self._start_call(request)
            context_token = otel_context.attach(trace.set_span_in_context(state.span))
            state_token = _CALL.set(state)
            try:
                result = await call(request, extra, tracker)
            except BaseException as error:
                self._end_call(state, error)
                raise
            finally:
                _CALL.reset(state_token)
                otel_context.detach(context_token)
            self._end_call(state, None)
            return result

        return traced

    def _start_call(self, request: Request) -> _CallState:
        method, template = TEMPLATES.get(request.operation, (request.method, request.path))
        attributes = {**self.server, "http.request.method": method, "url.template": template}
        span_attributes = dict(attributes)
        if request.connector is not None:
            span_attributes["patchworks.connector"] = request.connector
        span = self._tracer.start_span(
            f"patchworks.{request.operation}", kind=SpanKind.CLIENT, attributes=span_attributes
        )
        return _CallState(span, request.operation, attributes)

    def _end_call(self, state: _CallState, error: BaseException | None) -> None:
        error_type = type(error).__name__ if error is not None else None
        if state.attempt_span is not None:  # cancelled, or refused, while it waited
            self._end_attempt(state, error_type=error_type)
        span = state.span
        attributes: Attributes = {
            "patchworks.attempts": state.attempts,
            "patchworks.retries": state.retries,
            "patchworks.rate_limit.paused": state.paused,
        }
        for name, seconds in state.waits.items():
            attributes[f"patchworks.wait.{name}"] = seconds
        if state.status is not None:
            attributes["http.response.status_code"] = state.status
        if state.request_id is not None:
            attributes["patchworks.request_id"] = state.request_id
        if error_type is not None:
            attributes["error.type"] = error_type
            # The class name only: a message can quote what the server echoed back.
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.set_attributes(attributes)
        span.end()

    def refused(
        self, operation: str, error: BaseException, parent: otel_context.Context | None = None
    ) -> None:
        """Record a call refused before anything was sent (bad input): a span with no attempt.

        Args:
            operation: the call's name (``"reauthorise"``).
            error: the error raised; only its class name is recorded.
            parent: the context to start the span in (default: the current one).
        """
        method, template = TEMPLATES[operation]
        error_type = type(error).__name__
        span = self._tracer.start_span(
            f"patchworks.{operation}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={
                **self.server,
                "http.request.method": method,
                "url.template": template,
                "patchworks.attempts": 0,
                "error.type": error_type,
            },
        )
        span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()

    # -- attempt spans -----------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Follow the client's attempt events (called by ``Pipeline.emit``).

        Args:
            event: the event, in the task of the call it belongs to.
        """
        state = _CALL.get()
        if state is None:
            return
        kind = event.kind
        if kind is EventKind.QUEUED:
            self._start_attempt(state, event.attempt)
        elif kind is EventKind.RESPONSE and event.error is not None:
            self._end_attempt(state, error_type=event.error)
        elif kind is EventKind.RETRY:
            state.retries += 1
            self._retries.add(1, state.attributes)
            state.span.add_event(
                "patchworks.retry",
                {
                    "patchworks.attempt": event.attempt,
                    "patchworks.retry.delay": event.delay or 0.0,
                    "patchworks.retry.reason": event.reason or "",
                    "error.type": event.error or "",
                },
            )
        elif kind is EventKind.GAVE_UP:
            state.span.add_event(
                "patchworks.gave_up",
                {"patchworks.attempt": event.attempt, "patchworks.reason": event.reason or ""},
            )

    def _start_attempt(self, state: _CallState, attempt: int) -> None:
        if state.attempt_span is not None:
            self._end_attempt(state)
        state.attempts = attempt
        state.status = None  # the call's status is its last attempt's (none for a transport error)
        attributes: Attributes = {"patchworks.attempt": attempt}
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        span = self._tracer.start_span(
            f"patchworks.{state.operation} attempt",
            context=trace.set_span_in_context(state.span),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        state.attempt_span = span
        state.attempt_token = otel_context.attach(trace.set_span_in_context(span))

    def sent(self, slot: Slot, headers: dict[str, str]) -> None:
        """The request's turn came: record the limiter waits and write the trace context.

        Args:
            slot: the limiter slot it holds (its ``waits`` were measured).
            headers: the outgoing headers; the global propagator writes into them.
        """
        state = _CALL.get()
        if state is None:
            return
        instance, in_flight, client, paused = slot.waits
        attributes: Attributes = {"patchworks.rate_limit.paused": paused}
        for name, seconds in zip(_WAIT_NAMES, (instance, in_flight, client), strict=True):
            if seconds is None:
                continue  # that limiter does not apply to this request: nothing to report
            state.waits[name] = state.waits.get(name, 0.0) + seconds
            attributes[f"patchworks.wait.{name}"] = seconds
            self._wait.record(seconds, self._wait_attributes[name])
        state.paused = state.paused or paused
        span = state.attempt_span
        if span is not None:
            span.set_attributes(attributes)
            span.add_event("patchworks.sent")
        self._attempts.add(1, state.attributes)
        propagate.inject(headers)
        state.sent_at = time.perf_counter()
        self.in_flight += 1

    def received(self, raw: RawResponse) -> None:
        """A response came back: its status and request id end the attempt span.

        Args:
            raw: the response (only its status and request-id header are read).
        """
        state = _CALL.get()
        if state is None:
            return
        status = raw.status
        state.status = status
        request_id = _request_id(raw.headers)
        if request_id is not None:
            state.request_id = request_id
        if status == 429:
            state.paused = True
            self._rate_limited.add(1, state.attributes)
        self._end_attempt(state, status=status, request_id=request_id)

    def _end_attempt(
        self,
        state: _CallState,
        *,
        status: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        span, state.attempt_span = state.attempt_span, None
        token, state.attempt_token = state.attempt_token, None
        if span is None:
            return
        attributes: Attributes = {}
        if status is not None:
            attributes["http.response.status_code"] = status
            if error_type is None and status >= 400:
                error_type = str(status)  # the HTTP conventions' error.type for a status
        if error_type is not None:
            attributes["error.type"] = error_type
            span.set_status(Status(StatusCode.ERROR, error_type))
        if state.sent_at is not None:
            elapsed = time.perf_counter() - state.sent_at
            state.sent_at = None
            self.in_flight -= 1
            # Status and error.type only: a request id per data point would be unbounded.
            self._duration.record(elapsed, {**state.attributes, **attributes})
        if request_id is not None:
            attributes["patchworks.request_id"] = request_id
        span.set_attributes(attributes)
        span.end()
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]  # the token attach gave

    # -- bulk jobs -----------------------------------------------------------------------------

    def bulk_job(self) -> BulkJob:
        """Start a bulk job's span.

        Returns:
            The :class:`BulkJob`; its item tasks run in ``job.task_context()``.
        """
        span = self._tracer.start_span(
            "patchworks.reauthorise_many", kind=SpanKind.INTERNAL, attributes=dict(self.server)
        )
        return BulkJob(self, span)


class BulkJob:
    """The span of one bulk job, parent of its items' call spans."""

    __slots__ = ("_context", "_telemetry", "failed", "items", "span")

    def __init__(self, telemetry: Telemetry, span: Span) -> None:
        self._telemetry = telemetry
        self.span = span
        self._context = trace.set_span_in_context(span)
        self.items = 0
        self.failed = 0

    def refused(self, operation: str, error: BaseException) -> None:
        """Record an item refused before anything was sent, under the job's span.

        Args:
            operation: the call's name (``"reauthorise"``).
            error: why it was not sent (bad input, a duplicate); only its class name is kept.
        """
        self._telemetry.refused(operation, error, self._context)

    def task_context(self) -> contextvars.Context:
        """A fresh context for one item's task, with the job's span current in it.

        Returns:
            A copy of the current context (one per task: a context cannot be shared).
        """
        context = contextvars.copy_context()
        context.run(otel_context.attach, self._context)
        return context

    def outcome(self, ok: bool) -> None:
        """Count one item's outcome.

        Args:
            ok: whether the item succeeded.
        """
        self.items += 1
        if not ok:
            self.failed += 1

    def end(self, error: BaseException | None = None) -> None:
        """End the job's span with its counts.

        Args:
            error: what ended the job early (cancellation, a broken input), if anything.
        """
        self.span.set_attributes(
            {"patchworks.bulk.items": self.items, "patchworks.bulk.failed": self.failed}
        )
        if error is not None and not isinstance(error, GeneratorExit):  # closed early: no error
            error_type = type(error).__name__
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(Status(StatusCode.ERROR, error_type))
        self.span.end()


# -- observable gauges ------------------------------------------------------------------------


class _Gauges:
    """The learnt limits of every client of one meter, as observable gauges.

    One per meter, because the SDK keeps only the first callbacks registered under an
    instrument name: a second client's gauges would be silently lost. Each client is
    observed through its pipeline, held weakly, so a meter (which lives as long as its
    provider) keeps none alive.
    """

    def __init__(self, meter: Meter) -> None:
        self._pipelines: weakref.WeakSet[ObservedPipeline] = weakref.WeakSet()
        meter.create_observable_gauge(
            "patchworks.client.rate_limit",
            callbacks=[self._rates],
            unit="{request}/s",
            description="The rate the client paces calls at (client-wide, and per instance).",
        )
        meter.create_observable_up_down_counter(
            "http.client.active_requests",
            callbacks=[self._active],
            unit="{request}",
            description="Requests in flight (sent, not yet answered).",
        )
        meter.create_observable_gauge(
            "patchworks.client.quota.limit",
            callbacks=[self._quota_limit],
            unit="{request}",
            description="The server's last X-RateLimit-Limit.",
        )
        meter.create_observable_gauge(
            "patchworks.client.quota.remaining",
            callbacks=[self._quota_remaining],
            unit="{request}",
            description="The server's last X-RateLimit-Remaining.",
        )

    def add(self, pipeline: ObservedPipeline) -> None:
        self._pipelines.add(pipeline)

    def _each(self) -> Iterable[tuple[ObservedPipeline, Attributes]]:
        try:
            pipelines = list(self._pipelines)
        except RuntimeError:  # a client was made (in the loop's thread) during the copy
            return
        for pipeline in pipelines:
            telemetry = pipeline.telemetry
            if telemetry is not None:
                yield pipeline, telemetry.server

    def _rates(self, options: CallbackOptions) -> Iterable[Observation]:
        observations: list[Observation] = []
        for pipeline, server in self._each():
            rates = pipeline.rates
            client_wide = _client_rate(rates)
            if client_wide is not None:
                per_second, source = client_wide
                attributes = {
                    **server,
                    "patchworks.limiter": "client",
                    "patchworks.limit_source": source,
                }
                observations.append(Observation(per_second, attributes))
            for connector, per_second in _instance_rates(rates):
                observations.append(
                    Observation(
                        per_second,
                        {
                            **server,
                            "patchworks.limiter": "instance",
                            "patchworks.connector": connector,
                        },
                    )
                )
        return observations

    def _active(self, options: CallbackOptions) -> Iterable[Observation]:
        # Summed by server: two clients of one server must not hide each other's requests.
        totals: dict[tuple[tuple[str, Any], ...], int] = {}
        for pipeline, server in self._each():
            telemetry = pipeline.telemetry
            key = tuple(sorted(server.items()))
            totals[key] = totals.get(key, 0) + (telemetry.in_flight if telemetry else 0)
        return [Observation(count, dict(key)) for key, count in totals.items()]

    def _quota_limit(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(state.limit, server)
            for pipeline, server in self._each()
            if (state := _server_figures(pipeline.rates)) is not None and state.limit is not None
        ]

    def _quota_remaining(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(state.remaining, server)
            for pipeline, server in self._each()
            if (state := _server_figures(pipeline.rates)) is not None
            and state.remaining is not None
        ]


# The gauges' callbacks run in the exporter's thread: they read the rate control's state
# and change nothing (``current_rate_limit_state`` would: it parses the latest headers in
# place).


def _server_figures(rates: ObservedRates) -> RateLimitState | None:
    """The figures of the latest response's rate-limit headers, parsed here."""
    latest = rates.latest_headers
    if latest is None:
        return rates.rate_limit_state
    headers, seen = latest
    return parse_rate_limit_headers(headers, now=seen)


def _client_rate(rates: ObservedRates) -> tuple[float, str] | None:
    """The client-wide rate, per second, and where it comes from.

    With ``adaptive_quota`` it is the quota learnt from the server's headers
    (``"server"``) until then the configured one; else the configured ``rate_limit``.
    """
    quota = rates.quota
    if quota is not None:
        return quota.limit / quota.window, quota.limit_source
    configured = rates.rate_limit
    if configured is None:
        return None
    return configured.per_second, "configured"


def _instance_rates(rates: ObservedRates) -> list[tuple[str, float]]:
    """Each paced instance's rate; read from the exporter's thread, so copied first."""
    limits = rates.limits
    try:
        if limits is None:
            pending = list(rates.pending_rates.items())
            return [(key, rate.per_second) for key, rate in pending if rate is not None]
        # The registry keeps no public listing; one C-level copy, then no shared state.
        entries = list(limits.instances._entries.items())
    except RuntimeError:  # resized by the loop's thread during the copy: skip this reading
        return []
    return [(key, entry.limiter.rate.per_second) for key, entry in entries]


#: One gauge set per meter (see ``_Gauges``); keyed weakly, so it dies with its meter.
_GAUGES: Final[weakref.WeakKeyDictionary[Meter, _Gauges]] = weakref.WeakKeyDictionary()


def _gauges_of(meter: Meter) -> _Gauges:
    gauges = _GAUGES.get(meter)
    if gauges is None:
        gauges = _GAUGES[meter] = _Gauges(meter)
    return gauges
