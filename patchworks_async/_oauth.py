"""``client.oauth``: the four calls of the spec's ``Oauth`` tag, and the bulk job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from . import _sansio
from ._bulk import (
    ItemSource,
    ProgressHook,
    ReauthoriseOutcome,
    check_bulk_arguments,
    reauthorise_many,
)
from ._errors import InvalidRequestError
from ._pipeline import Pipeline
from .models import AuthoriseRequest, Connector, Instance, ReauthoriseRequest


class OAuth:
    """The four calls of the spec's ``Oauth`` tag: ``client.oauth``.

    Args:
        pipeline: the pipeline of the client whose ``oauth`` this is (the client makes it).
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def authenticate(self) -> dict[str, Any]:
        """``POST /api/v1/oauth/authenticate``.

        Returns:
            The response's JSON object (its shape is not documented).

        Raises:
            PatchworksError: any error of the package (see the README's table).
        """
        return await self._pipeline.call(_sansio.build_authenticate())

    async def authorise(self, request: AuthoriseRequest) -> Instance:
        """``POST /api/v1/oauth/authorise``: create a new authenticated instance.

        The new instance's limiter is learnt from the request's rate fields and
        the response's ``id``. Retried only when the server certainly did not act
        (connection refused, connect timeout, 429, 503).

        Args:
            request: the new instance's fields; its rate fields set the instance's limiter.

        Returns:
            The new :class:`Instance`: the response's JSON object (a ``dict``) with its
            ``id`` typed.

        Raises:
            InvalidRequestError: ``request`` is not an AuthoriseRequest (nothing sent).
            PatchworksError: any other error of the package.
        """
        pipeline = self._pipeline
        try:
            built = _sansio.build_authorise(request)
        except InvalidRequestError as error:
            pipeline.refused("authorise", error)
            raise
        # One copy of the decoded dict, at C speed; no second decode, no converter.
        result = Instance(await pipeline.call(built))
        pipeline.learn_rate(result.id, request.rate_limit)
        return result

    async def woo_app_auth(self) -> dict[str, Any]:
        """``POST /api/v1/oauth/woo-app-auth``.

        Returns:
            The response's JSON object; ``{}`` for the documented empty body.

        Raises:
            PatchworksError: any error of the package (see the README's table).
        """
        return await self._pipeline.call(_sansio.build_woo_app_auth())

    async def reauthorise(
        self, connector: Connector, request: ReauthoriseRequest | None = None
    ) -> Instance:
        """``PATCH /api/v1/oauth/{connector}/reauthorise``: reauthorise an existing instance.

        Waits on the instance's limiter when its limit is known. When ``request``
        carries both rate fields, the instance's limiter takes the new rate once
        the call succeeds.

        Args:
            connector: the instance id; always sent as exactly one path segment.
            request: the fields to change (all optional); ``None`` sends ``{}``.

        Returns:
            The :class:`Instance`: the response's JSON object (a ``dict``) with its
            ``id`` typed.

        Raises:
            InvalidRequestError: a bad connector or request (nothing sent).
            EventLoopError: the client serves another event loop (nothing sent).
            PatchworksError: any other error of the package.
        """
        pipeline = self._pipeline
        body = request if request is not None else ReauthoriseRequest()
        try:
            built = _sansio.build_reauthorise(connector, body)
        except InvalidRequestError as error:
            pipeline.refused("reauthorise", error)
            raise
        result = Instance(await pipeline.call(built))
        pipeline.learn_rate(built.connector, body.rate_limit)
        return result

    # Over 40 lines only by its docstring (public API); the body is one call.
    def reauthorise_many(
        self,
        items: ItemSource,
        *,
        concurrency: int = 16,
        on_progress: ProgressHook | None = None,
        read_ahead: int | None = None,
        deduplicate: bool = True,
    ) -> AsyncIterator[ReauthoriseOutcome]:
        """Reauthorise many instances; an async iterator of one outcome per item.

        Outcomes come in completion order, each a :class:`ReauthoriseSuccess` or a
        :class:`ReauthoriseFailure`. A failure (bad input included) is an outcome,
        not an exception: the job goes on, unless it cannot succeed (a 401 that a
        fresh login did not cure, three 403s in a row, the host unreachable): then
        nothing more is sent, the outcomes already finished are yielded and
        :class:`BulkStoppedError` is raised. A connector seen earlier in the input
        is not sent again (its outcome: :class:`DuplicateConnectorError`). Input
        is read lazily, at most ``read_ahead`` (default ``max(8 * concurrency, 64)``)
        items ahead; an exception of the iterator itself is raised, unchanged,
        once the items read are finished. ``concurrency`` bounds the items being
        sent at once; items waiting for their instance's limiter or a retry hold
        no slot. Cancel the consuming task (or close the iterator) to stop: every
        task it started is cancelled.

        Args:
            items: an iterable or async iterable of ``(connector, ReauthoriseRequest)``.
            concurrency: items in flight at once (also bounded by ``max_connections``).
            on_progress: called with each outcome as it is yielded.
            read_ahead: how far ahead of the outcomes the input is read.
            deduplicate: send each connector once (the set of connectors seen
                grows by about 90 bytes an item; ``False`` drops it).

        Returns:
            An async iterator of :data:`ReauthoriseOutcome`; iterating it raises
            :class:`BulkStoppedError` when the job stops, and the iterator's own errors.

        Raises:
            InvalidRequestError: a bad ``concurrency`` or ``read_ahead`` (nothing sent).
        """
        check_bulk_arguments(concurrency, read_ahead)
        return reauthorise_many(
            self._pipeline,
            items,
            concurrency=concurrency,
            on_progress=on_progress,
            read_ahead=read_ahead,
            deduplicate=deduplicate,
        )
