"""Zero-code: ``opentelemetry-instrument python app.py`` runs an app that never imports ``telemetry`` with our
set-up, from ``OTEL_*`` (and our ``LLM_TELEMETRY_*``) variables alone.

``opentelemetry-instrument`` (the ``instrument`` extra: ``opentelemetry-instrumentation``) loads, through the
entry points in pyproject.toml:

- :class:`TelemetryDistro` (``opentelemetry_distro``): makes our configurator the one that runs, and skips
  each stock contrib instrumentor that one of ours replaces, so exactly one instruments a framework;
- :class:`TelemetryConfigurator` (``opentelemetry_configurator``): ``telemetry.configure()``, i.e. our views
  (semconv buckets, allow-lists, exemplars chosen when measured and their spans marked, for every metric
  in ``telemetry.semconv.METRICS``), GenAI content capture off unless opted in, OTLP push and/or
  ``/metrics`` per ``OTEL_METRICS_EXPORTER``, and the SDK pipeline's own counters;
- our instrumentors (``opentelemetry_instrumentor``): ``telemetry_fastapi`` (every FastAPI app gets
  ``instrument_fastapi`` when it builds its middleware), ``telemetry_grpc_aio_server`` and
  ``telemetry_grpc_aio_client`` (every ``grpc.aio`` server and channel gets our interceptors).

``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=telemetry_fastapi`` turns ours off, and the contrib one it replaced
(``fastapi``) runs instead. With another distro chosen (``OTEL_PYTHON_DISTRO``) nothing here decides
between ours and contrib's: disable one set by name. An app that also calls ``telemetry.configure()`` or
``instrument_fastapi()`` itself gets the same set-up back, not a second one.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Collection, Iterable
from importlib.metadata import EntryPoint
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from telemetry.settings import Setting, parse_list

logger = logging.getLogger("telemetry.autoinstrument")

CONFIGURATOR = "llm_telemetry"
"""Our ``opentelemetry_configurator`` entry point's name."""

REPLACES = {
    "fastapi": "telemetry_fastapi",
    "grpc_aio_server": "telemetry_grpc_aio_server",
    "grpc_aio_client": "telemetry_grpc_aio_client",
}
"""Contrib instrumentor entry point → ours that instruments the same thing (the contrib one is skipped)."""

DISABLED: Setting[tuple[str, ...]] = Setting(
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
    parse_list,
    (),
    "instrumentor entry points opentelemetry-instrument skips (its own variable, read the same way)",
)


class TelemetryDistro(BaseDistro):  # type: ignore[misc]  # the contrib package ships no type hints
    """Our configurator first; contrib instrumentors that ours replace are skipped."""

    def _configure(self, **kwargs: Any) -> None:
        # The distro runs before the configurators load; another installed configurator (e.g.
        # opentelemetry-distro's) must not set up a second SDK pipeline beside ours. An explicit choice stays.
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", CONFIGURATOR)

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        ours = REPLACES.get(entry_point.name)
        if (
            ours is not None
            and ours not in DISABLED.read()
            and not entry_point.value.startswith("telemetry.")
        ):
            logger.debug("%s: skipped, %s instruments the same thing", entry_point.name, ours)
            return
        super().load_instrumentor(entry_point, **kwargs)


class TelemetryConfigurator:
    """``telemetry.configure()`` from the environment, as ``opentelemetry-instrument`` starts the app."""

    def configure(self, **_kwargs: Any) -> None:
        import telemetry

        telemetry.configure()


class FastAPIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Every ``fastapi.FastAPI`` app: FastAPI's own telemetry off at construction, our middleware outermost
    when its middleware stack is built (so it also wraps middleware added after construction)."""

    _restore: Callable[[], None] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("fastapi >= 0.100",)

    def _instrument(self, **_kwargs: Any) -> None:
        from fastapi import FastAPI

        from telemetry.instrumentation.fastapi import instrument_fastapi, silence_native_telemetry

        init, build = FastAPI.__init__, FastAPI.build_middleware_stack

        @functools.wraps(init)
        def __init__(app: FastAPI, *args: Any, **kwargs: Any) -> None:
            init(app, *args, **kwargs)
            silence_native_telemetry(app)

        @functools.wraps(build)
        def build_middleware_stack(app: FastAPI) -> Any:
            instrument_fastapi(app)  # idempotent: an app instrumented by hand keeps its one middleware
            return build(app)

        setattr(FastAPI, "__init__", __init__)  # noqa: B010 - a method mypy would not let us assign
        setattr(FastAPI, "build_middleware_stack", build_middleware_stack)  # noqa: B010

        def restore() -> None:
            setattr(FastAPI, "__init__", init)  # noqa: B010
            setattr(FastAPI, "build_middleware_stack", build)  # noqa: B010

        self._restore = restore

    def _uninstrument(self, **_kwargs: Any) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None


def _with(interceptors: Iterable[Any] | None, ours: list[Any], kind: type) -> list[Any]:
    """``interceptors`` with ``ours`` first, unless the caller already passed one of ours."""
    given = list(interceptors or ())
    return given if any(isinstance(i, kind) for i in given) else [*ours, *given]


class GrpcAioServerInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Every ``grpc.aio.server(...)`` gets :func:`telemetry.grpc_server_interceptor` first."""

    _original: Callable[..., Any] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("grpcio >= 1.60",)

    def _instrument(self, **_kwargs: Any) -> None:
        from grpc import aio

        from telemetry.instrumentation.grpc import TelemetryServerInterceptor, grpc_server_interceptor

        original = self._original = aio.server

        @functools.wraps(original)
        def server(*args: Any, **kwargs: Any) -> Any:
            interceptors = kwargs.get("interceptors")
            kwargs["interceptors"] = _with(
                interceptors, [grpc_server_interceptor()], TelemetryServerInterceptor
            )
            return original(*args, **kwargs)

        aio.server = server

    def _uninstrument(self, **_kwargs: Any) -> None:
        from grpc import aio

        if self._original is not None:
            aio.server = self._original
            self._original = None


class GrpcAioClientInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Every ``grpc.aio.insecure_channel`` and ``secure_channel`` gets our client interceptors first."""

    _originals: tuple[Callable[..., Any], Callable[..., Any]] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("grpcio >= 1.60",)

    def _instrument(self, **_kwargs: Any) -> None:
        from grpc import aio

        from telemetry.instrumentation.grpc import (
            TelemetryUnaryUnaryClientInterceptor,
            grpc_client_interceptors,
        )

        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(original)
            def channel(*args: Any, **kwargs: Any) -> Any:
                interceptors = kwargs.get("interceptors")
                ours = grpc_client_interceptors()
                kwargs["interceptors"] = _with(interceptors, ours, TelemetryUnaryUnaryClientInterceptor)
                return original(*args, **kwargs)

            return channel

        self._originals = (aio.insecure_channel, aio.secure_channel)
        aio.insecure_channel = wrap(aio.insecure_channel)
        aio.secure_channel = wrap(aio.secure_channel)

    def _uninstrument(self, **_kwargs: Any) -> None:
        from grpc import aio

        if self._originals is not None:
            aio.insecure_channel, aio.secure_channel = self._originals
            self._originals = None
