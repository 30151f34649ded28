"""OpenTelemetry switch (the ``otel`` extra): arguments checked, the rest loaded only then.

This module imports no ``opentelemetry``: :func:`make_telemetry` imports
``_telemetry`` (which does) only when a client asks for it, so the package imports
and works without opentelemetry-api installed, and a client that does not ask pays
nothing: ``Pipeline.telemetry`` is ``None`` and every hook point in the
call path is skipped by one ``is not None`` check (most of them sit behind the
``observe`` flag the call path computes anyway).

Hook points (kept few, so that the call loop can move without them):

- ``PatchworksClient.__init__``: the :class:`~._telemetry.Telemetry` is made, and
  ``Pipeline.call`` is wrapped in the call span (``wrap_call``, ``Pipeline.observe_with``).
- ``Pipeline.emit``: attempt spans start and end with the ``QUEUED`` /
  ``RESPONSE`` / ``RETRY`` / ``GAVE_UP`` events the pipeline already emits.
- ``Pipeline.attempt``: ``sent`` (the limiter waits, the ``traceparent``
  header) and ``received`` (the status and request id).
- ``OAuth.authorise`` / ``OAuth.reauthorise`` and the bulk job's items: ``refused``
  (input refused before anything was sent).
- ``reauthorise_many``: ``bulk_job`` (one parent span for the job's item spans).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import InvalidRequestError

if TYPE_CHECKING:
    from ._telemetry import ObservedClient, Telemetry

INSTALL_HINT = "pip install 'patchworks-async[otel]'"


# Over 40 lines only by its signature and docstring; the body is a dozen lines.
def make_telemetry(
    client: ObservedClient,
    *,
    enabled: bool,
    tracer_provider: object | None,
    meter_provider: object | None,
) -> Telemetry | None:
    """The client's telemetry, or ``None`` when it was not asked for.

    Passing a provider switches it on too; a provider not passed is the global one.

    Args:
        client: the client whose calls are traced and whose limits are observed.
        enabled: the ``opentelemetry`` argument.
        tracer_provider: an explicit ``TracerProvider``, or ``None`` for the global one.
        meter_provider: an explicit ``MeterProvider``, or ``None`` for the global one.

    Returns:
        The :class:`~._telemetry.Telemetry`, or ``None``.

    Raises:
        InvalidRequestError: a bad argument, or opentelemetry-api is not installed
            (naming the argument that asked for it).
    """
    if not isinstance(enabled, bool):
        raise InvalidRequestError("opentelemetry must be True or False", field="opentelemetry")
    if not enabled and tracer_provider is None and meter_provider is None:
        return None
    asked_by = (
        "opentelemetry"
        if enabled
        else ("tracer_provider" if tracer_provider is not None else "meter_provider")
    )
    try:
        from ._telemetry import Telemetry, check_providers  # here: an optional extra
    except ImportError as exc:
        raise InvalidRequestError(
            f"{asked_by} needs the opentelemetry-api package: {INSTALL_HINT}", field=asked_by
        ) from exc
    tracer, meter = check_providers(tracer_provider, meter_provider)
    return Telemetry(client, tracer_provider=tracer, meter_provider=meter)
