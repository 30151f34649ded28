"""``--otel console|otlp``: SDK providers for the command line's client, when the SDK is there.

Spans and metrics go to standard error (``console``; standard output keeps the JSON
result) or to an OTLP/HTTP collector (``otlp``, configured by the usual
``OTEL_EXPORTER_OTLP_*`` variables). The SDK's providers flush at exit.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from ._config import InputError

NEEDS: Final = {
    "console": "pip install 'patchworks-async[otel]' opentelemetry-sdk",
    "otlp": "pip install 'patchworks-async[otel]' opentelemetry-sdk "
    "opentelemetry-exporter-otlp-proto-http",
}


def client_arguments(target: str | None) -> dict[str, Any]:
    """The client's ``tracer_provider`` and ``meter_provider`` for ``--otel``.

    Args:
        target: ``"console"``, ``"otlp"`` or ``None`` (no ``--otel``).

    Returns:
        Keyword arguments for ``PatchworksClient`` (empty without ``--otel``).

    Raises:
        InputError: the OpenTelemetry SDK (or the OTLP exporter) is not installed.
    """
    if target is None:
        return {}
    try:
        return _providers(target)
    except ImportError as exc:
        raise InputError(
            f"--otel {target} needs the OpenTelemetry SDK, which is not installed: {NEEDS[target]}"
        ) from exc


def _providers(target: str) -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )

    tracer_provider = TracerProvider()
    span_exporter: SpanExporter
    metric_exporter: MetricExporter
    if target == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        span_exporter, metric_exporter = OTLPSpanExporter(), OTLPMetricExporter()
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    else:
        span_exporter = ConsoleSpanExporter(out=sys.stderr)
        metric_exporter = ConsoleMetricExporter(out=sys.stderr)
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(metric_exporter)
    return {"tracer_provider": tracer_provider, "meter_provider": MeterProvider([reader])}
