"""The public API used as a user would, checked by mypy and never run (stamina's practice).

The name does not start with ``test_``, so pytest does not collect it; mypy checks it
because ``tests`` is in its ``files``. Each ``assert_type`` pins a public signature: a
change to one fails ``mypy --strict`` here before it reaches a user's type checker.
"""

from __future__ import annotations

from typing import Any, assert_type

from opentelemetry.sdk.trace import TracerProvider

from patchworks_async import (
    AdaptiveQuota,
    APIError,
    AuthoriseRequest,
    BulkStoppedError,
    Connector,
    Event,
    EventKind,
    EventLoopError,
    Instance,
    InvalidRequestError,
    Limiter,
    LimiterBackend,
    Login,
    ModelValidationError,
    PatchworksClient,
    PatchworksError,
    PauseTarget,
    QuotaFigures,
    RateLimit,
    RateLimitError,
    RateLimitState,
    RateLimitUnit,
    RateLimitUnitName,
    ReauthoriseFailure,
    ReauthoriseOutcome,
    ReauthoriseRequest,
    ReauthoriseSuccess,
    RetryPolicy,
    Timeout,
    UnprocessableEntityError,
    Variable,
)
from patchworks_async.testing import BackgroundConsumer, FakePatchworks, Fault, RecordedRequest


def _authorise_request() -> AuthoriseRequest:
    return AuthoriseRequest(
        authentication_implementation_id="impl-1",
        timezone="Europe/London",
        date_format="Y-m-d",
        rate_limit_unit="minute",
        rate_limit_duration=60,
    )


async def oauth_calls(client: PatchworksClient) -> None:
    request = _authorise_request()
    assert_type(await client.oauth.authorise(request), Instance)
    assert_type(await client.oauth.authenticate(), dict[str, Any])
    assert_type(await client.oauth.woo_app_auth(), dict[str, Any])
    assert_type(await client.oauth.reauthorise("instance-1"), Instance)
    result = await client.oauth.reauthorise(7, ReauthoriseRequest(timezone="UTC"))
    assert_type(result, Instance)
    assert_type(result.id, Connector | None)
    assert_type(result.id, str | int | None)  # Connector is the alias str | int
    assert_type(result["timezone"], Any)  # every key the server sent stays reachable
    plain: dict[str, Any] = result  # code written for the plain dict keeps working
    assert_type(plain, dict[str, Any])
    connector: Connector = "instance-1"
    await client.oauth.reauthorise(connector)
    await client.oauth.reauthorise(1.5)  # type: ignore[arg-type]  # not a Connector
    assert_type(request.rate_limit, RateLimit)
    assert_type(ReauthoriseRequest().rate_limit, RateLimit | None)


async def bulk(client: PatchworksClient) -> None:
    items = [("instance-1", ReauthoriseRequest(timezone="UTC"))]
    seen: list[ReauthoriseOutcome] = []
    outcomes = client.oauth.reauthorise_many(items, concurrency=4, on_progress=seen.append)
    async for outcome in outcomes:
        assert_type(outcome, ReauthoriseOutcome)
        assert_type(outcome.ok, bool)
        assert_type(outcome.connector, Any)
        assert_type(outcome.result, Instance | None)
        assert_type(outcome.error, PatchworksError | None)
        assert_type(outcome.attempts, int)
        assert_type(outcome.elapsed, float)
        assert_type(outcome.index, int)
        # The outcome is a union: checking success narrows it, and the result is present.
        if outcome.ok:
            assert_type(outcome, ReauthoriseSuccess)
            assert_type(outcome.result, Instance)
            assert_type(outcome.error, None)
        else:
            assert_type(outcome, ReauthoriseFailure)
            assert_type(outcome.error, PatchworksError)
            assert_type(outcome.result, None)
        match outcome:
            case ReauthoriseSuccess(result=result):
                assert_type(result, Instance)
            case ReauthoriseFailure(error=error):
                assert_type(error, PatchworksError)
        if isinstance(outcome, ReauthoriseFailure):
            assert_type(outcome.attempts, int)
    job = client.oauth.reauthorise_many(items, deduplicate=False)
    try:
        async for finished in job:
            assert_type(finished, ReauthoriseSuccess | ReauthoriseFailure)
    except BulkStoppedError as stopped:
        assert_type(stopped.reason, str)
        assert_type(stopped.first_error, PatchworksError)
        assert_type(stopped.finished, int)
        assert_type(stopped.not_sent, int)
    assert_type(PatchworksClient(unreachable_after=None).unreachable_after, int | None)


async def configuration() -> None:
    events: list[Event] = []
    async with PatchworksClient(
        login=Login("user@example.com", "secret"),
        timeout=Timeout(total=10.0, connect=2.0),
        rate_limit=RateLimit(RateLimitUnit.SECOND, 4, burst=2),
        retry=RetryPolicy(max_attempts=3, max_time=30.0),
        on_event=events.append,
    ) as client:
        assert_type(client, PatchworksClient)
        assert_type(client.rate_limit, RateLimit | None)
        assert_type(client.retry, RetryPolicy)
        assert_type(client.rate_limit_state, RateLimitState | None)
        assert_type(client.connections_opened, int)
        client.set_instance_rate_limit("instance-1", RateLimit("hour", 600))
        client.set_instance_rate_limit(7, None)
        assert_type(client.instance_rate_limit("instance-1"), RateLimit | None)
    assert_type(PatchworksClient(api_key="key", rate_limit=None, retry=None), PatchworksClient)
    assert_type(PatchworksClient(api_key="key", opentelemetry=True), PatchworksClient)
    assert_type(PatchworksClient(api_key="key", tracer_provider=TracerProvider()), PatchworksClient)
    assert_type(events[0].kind, EventKind)
    assert_type(events[0].connector, str | None)


async def models() -> None:
    unit: RateLimitUnitName = "hour"
    assert_type(RateLimit(unit, 10), RateLimit)
    RateLimit("fortnite", 10)  # type: ignore[arg-type]  # a unit the spec does not have
    ReauthoriseRequest(rate_limit_unit="week")  # type: ignore[arg-type]
    ReauthoriseRequest(timezon="UTC")  # type: ignore[call-arg]  # an unknown field
    assert_type(ReauthoriseRequest.from_dict({"timezone": "UTC"}), ReauthoriseRequest)
    assert_type(
        ReauthoriseRequest.from_dict({"name": "Shop"}, allow_extra=True), ReauthoriseRequest
    )
    assert_type(AuthoriseRequest.from_dict({}), AuthoriseRequest)
    assert_type(Variable.from_dict({"key": "a", "value": 1}), Variable)
    assert_type(RateLimit.from_dict({"unit": "minute", "duration": 60}), RateLimit)
    try:
        ReauthoriseRequest.from_dict({"timezon": "UTC"})
    except ModelValidationError as error:
        assert_type(error.errors, dict[str, str])
        assert_type(error.field, str | None)
        assert_type(error.valid_fields, tuple[str, ...])
        invalid: InvalidRequestError = error
        as_type_error: TypeError = error
        assert_type((invalid, as_type_error), tuple[InvalidRequestError, TypeError])


async def values() -> None:
    rate = RateLimit("minute", 240)
    assert_type(rate.period, float)
    assert_type(rate.interval, float)
    assert_type(rate.per_second, float)
    assert_type(rate.unit, RateLimitUnit)
    assert_type(rate.duration, int)
    assert_type(RateLimitUnit.MINUTE.seconds, float)
    assert_type(RetryPolicy.disabled(), RetryPolicy)
    assert_type(RetryPolicy().max_retry_after, float)
    state = RateLimitState(limit=240, remaining=0, reset_at=1.0e9)
    assert_type(state.pause_for(now=1.0e9), float)
    assert_type(state.remaining, int | None)
    assert_type(state.quota, QuotaFigures | None)


async def adaptive_quota() -> None:
    ceiling = AdaptiveQuota(ceiling=RateLimit("minute", 600))
    async with PatchworksClient(api_key="key", adaptive_quota=ceiling) as client:
        assert_type(client.adaptive_quota, AdaptiveQuota | None)
        state = client.rate_limit_state
        if state is not None and state.quota is not None:
            assert_type(state.quota.limit, int)
            assert_type(state.quota.ignored, dict[str, int])
    assert_type(PatchworksClient(api_key="key", adaptive_quota=False), PatchworksClient)


async def errors(client: PatchworksClient) -> None:
    try:
        await client.oauth.reauthorise("instance-1")
    except InvalidRequestError as error:
        assert_type(error.field, str | None)
    except EventLoopError as error:
        loop_error: PatchworksError = error
        assert_type(loop_error, PatchworksError)
    except RateLimitError as error:
        assert_type(error.retry_after, float | None)
        assert_type(error.status, int)
    except UnprocessableEntityError as error:
        assert_type(error.errors, dict[str, list[str]])
    except APIError as error:
        assert_type(error.request_id, str | None)


async def fake_server() -> None:
    async with FakePatchworks(quota=10) as fake:
        assert_type(fake, FakePatchworks)
        assert_type(fake.url, str)
        assert_type(fake.api_key, str)
        assert_type(fake.requests, list[RecordedRequest])
        assert_type(fake.instances, dict[str, dict[str, Any]])
        assert_type(fake.add_instance(), str)
        assert_type(fake.add_instance(7, name="shop"), str)
        assert_type(fake.issue_token(ttl=60.0), str)
        assert_type(fake.faults_injected, list[tuple[RecordedRequest, Fault]])
        fake.add_faults(Fault.too_many(retry_after=1), Fault.dropped(), paths="/reauthorise")
        fake.set_fault_rate(0.1, [Fault.status_code(503), Fault.slow(0.5)], seed=1)
        assert_type(fake.requests[0].status, int | None)
    shared = FakePatchworks(quota=240, background=BackgroundConsumer(share=0.4, burst=24))
    assert_type(shared.background_sent, int)
    assert_type(shared.background_denied, int)


class MyLimiter:
    """A user's limiter: a ``rate`` and the two coroutines the client awaits."""

    def __init__(self, rate: RateLimit) -> None:
        self.rate = rate

    async def acquire(self) -> None:
        """Wait for a turn."""

    async def recharge(self, seconds_since_grant: float) -> None:
        """Count the request as leaving now."""


class MyBackend:
    """A user's backend written from scratch: checked structurally against the protocol."""

    def __init__(self) -> None:
        self.gate: PauseTarget | None = None

    def client_limiter(self, rate: RateLimit) -> MyLimiter:
        return MyLimiter(rate)

    def instance_limiter(self, connector: str, rate: RateLimit) -> MyLimiter:
        assert_type(connector, str)
        return MyLimiter(rate)

    def bind(self, credential_fingerprint: str) -> None:
        assert_type(credential_fingerprint, str)

    def attach(self, gate: PauseTarget) -> None:
        assert_type(gate.remaining(), float)
        self.gate = gate

    def pause(self, seconds: float) -> None:
        assert_type(seconds, float)

    async def aclose(self) -> None:
        self.gate = None


class MySubclassBackend(LimiterBackend):
    """A subclass inherits the no-op ``bind``, ``attach``, ``pause`` and ``aclose``."""

    def client_limiter(self, rate: RateLimit) -> MyLimiter:
        return MyLimiter(rate)

    def instance_limiter(self, connector: str, rate: RateLimit) -> MyLimiter:
        return MyLimiter(rate)


class NarrowBackend(MySubclassBackend):
    """Wants more of the gate than a :class:`PauseTarget` promises: mypy refuses it."""

    def attach(self, gate: MyBackend) -> None:  # type: ignore[override]
        gate.gate = None


class HalfBackend(LimiterBackend):
    """Forgets ``client_limiter`` and ``instance_limiter``: mypy refuses to make one."""


class WrongBackend:
    """Has every method, but ``client_limiter`` returns no limiter."""

    def client_limiter(self, rate: RateLimit) -> int:
        return 1

    def instance_limiter(self, connector: str, rate: RateLimit) -> MyLimiter:
        return MyLimiter(rate)

    def bind(self, credential_fingerprint: str) -> None: ...

    def attach(self, gate: PauseTarget) -> None: ...

    def pause(self, seconds: float) -> None: ...

    async def aclose(self) -> None: ...


async def backend() -> None:
    mine: LimiterBackend = MyBackend()
    async with PatchworksClient(api_key="key", limiter=mine) as client:
        assert_type(client, PatchworksClient)
    async with PatchworksClient(api_key="key", limiter=MySubclassBackend()) as client:
        assert_type(client, PatchworksClient)
    limiter: Limiter = MyLimiter(RateLimit("minute", 60))  # a user's limiter is a Limiter
    assert_type(await MySubclassBackend().client_limiter(limiter.rate).acquire(), None)
    HalfBackend()  # type: ignore[abstract]
    PatchworksClient(api_key="key", limiter=WrongBackend())  # type: ignore[arg-type]
