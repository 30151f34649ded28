"""OpenTelemetry switch (the ``otel`` extra): arguments checked, the rest loaded only then.

This module imports no ``opentelemetry``: :func:`check_telemetry` (called by
``ClientConfig.check``, which keeps the checked :class:`TelemetrySettings`) and
:func:`make_telemetry` import ``_telemetry`` (which does) only when a client asks
for it, so the package imports
and works without opentelemetry-api installed, and a client that does not ask pays
nothing: ``Pipeline.telemetry`` is ``None`` and every hook point in the
call path is skipped by one ``is not None`` check (most of them sit behind the
``observe`` flag the call path computes anyway).

Hook points (kept few, so that the call loop can move without them):

- ``PatchworksClient.__init__``: the :class:`~._telemetry.Telemetry` is made from
  the configuration's ``telemetry``, and
  ``Pipeline.call`` is wrapped in the call span (``wrap_call``, ``Pipeline.observe_with``).
- ``Pipeline.emit``: attempt spans start and end with the ``QUEUED`` /
  ``RESPONSE`` / ``RETRY`` / ``GAVE_UP`` events the pipeline already emits.
- ``Pipeline.attempt``: ``sent`` (the limiter waits, the ``traceparent``
  header) and ``received`` (the status and request id).
- ``Pipeline.refused`` (called by ``OAuth.authorise`` / ``OAuth.reauthorise``) and the
  bulk job's items: ``refused`` (input refused before anything was sent).
- The gauges observe each client's ``Pipeline`` and its ``RateControl`` (read-only,
  through the ``ObservedPipeline`` Protocol), held weakly.
- ``reauthorise_many``: ``bulk_job`` (one parent span for the job's item spans).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ._errors import InvalidRequestError

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._telemetry import ObservedPipeline, Telemetry

INSTALL_HINT = "pip install 'patchworks-async[otel]'"


@attrs.frozen(kw_only=True)
class TelemetrySettings:
    """The client's three OpenTelemetry arguments, checked (part of ``ClientConfig``).

    Attributes:
        enabled: whether telemetry is on: the ``opentelemetry`` argument was ``True``,
            or a provider was passed (passing one switches it on).
        tracer_provider: the explicit ``TracerProvider``, or ``None`` for the global one.
        meter_provider: the explicit ``MeterProvider``, or ``None`` for the global one.
    """

    enabled: bool
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None

    def __repr__(self) -> str:
        # Providers are no secrets, but their reprs are the user's: name their types only.
        return (
            f"<TelemetrySettings enabled={self.enabled} "
            f"tracer_provider={_type_name(self.tracer_provider)} "
            f"meter_provider={_type_name(self.meter_provider)}>"
        )


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


#: Telemetry off: what the client's defaults check to.
TELEMETRY_OFF = TelemetrySettings(enabled=False)


def check_telemetry(
    enabled: object, tracer_provider: object, meter_provider: object
) -> TelemetrySettings:
    """The ``opentelemetry``, ``tracer_provider`` and ``meter_provider`` arguments, checked.

    Passing a provider switches telemetry on too; a provider not passed is the global
    one. opentelemetry-api is imported only when telemetry is on.

    Args:
        enabled: the ``opentelemetry`` argument.
        tracer_provider: an explicit ``TracerProvider``, or ``None`` for the global one.
        meter_provider: an explicit ``MeterProvider``, or ``None`` for the global one.

    Returns:
        The checked settings (:data:`TELEMETRY_OFF` when it was not asked for).

    Raises:
        InvalidRequestError: a bad argument, or opentelemetry-api is not installed
            (naming the argument that asked for it).
    """
    if not isinstance(enabled, bool):
        raise InvalidRequestError("opentelemetry must be True or False", field="opentelemetry")
    if not enabled and tracer_provider is None and meter_provider is None:
        return TELEMETRY_OFF
    asked_by = (
        "opentelemetry"
        if enabled
        else ("tracer_provider" if tracer_provider is not None else "meter_provider")
    )
    try:
        from ._telemetry import check_providers  # here: an optional extra
    except ImportError as exc:
        raise InvalidRequestError(
            f"{asked_by} needs the opentelemetry-api package: {INSTALL_HINT}", field=asked_by
        ) from exc
    tracer, meter = check_providers(tracer_provider, meter_provider)
    return TelemetrySettings(enabled=True, tracer_provider=tracer, meter_provider=meter)


def make_telemetry(pipeline: ObservedPipeline, settings: TelemetrySettings) -> Telemetry | None:
    """The client's telemetry, built from its checked settings; ``None`` when it is off.

    Args:
        pipeline: the client's pipeline, whose calls are traced and whose limits are observed.
        settings: the configuration's :class:`TelemetrySettings`.

    Returns:
        The :class:`~._telemetry.Telemetry`, or ``None``.
    """
    if not settings.enabled:
        return None
    from ._telemetry import Telemetry  # here: an optional extra, importable once checked

    return Telemetry(
        pipeline, tracer_provider=settings.tracer_provider, meter_provider=settings.meter_provider
    )
