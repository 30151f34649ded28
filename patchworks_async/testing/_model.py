"""The fake's API behaviour: a pure, sans-io model of the Patchworks Core API.

No aiohttp, no asyncio: :meth:`PatchworksModel.handle` takes a request's method, raw
path, headers and body bytes and returns the :class:`Answer` (status, headers, body);
the time comes from an injected clock. It routes, authenticates (the API key, or a
bearer token that has not expired), throttles (:class:`AccountQuota`), validates
(:mod:`._rules`, which also holds the routes) and acts on the instances. The fake's
core (``_core``) adds faults and records; ``FakePatchworks`` puts it on the wire.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import orjson

from ._quota import AccountQuota, BackgroundConsumer
from ._rules import (
    AUTHENTICATE,
    AUTHORISE_OPTIONAL,
    AUTHORISE_REQUIRED,
    JSON,
    LOGIN_PATH,
    LOGIN_REQUIRED,
    REAUTHORISE_OPTIONAL,
    WOO_APP_AUTH,
    json_object,
    route,
    validate,
    validation_payload,
)

__all__ = ["Answer"]  # what FakePatchworks.handle answers; the model itself stays private


@attrs.frozen
class Answer:
    """What the model decided for one request, before any fault reshapes it.

    Attributes:
        status: the HTTP status.
        body: the body bytes.
        headers: the headers (``X-Request-Id`` always, the quota's when counted).
        content_type: the ``Content-Type``, or ``None`` for an empty body.
        malformed: the request was not one a client should send (an unknown route,
            a wrong method, a body that is not JSON).
    """

    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str | None = JSON
    malformed: bool = False


def json_answer(
    status: int, payload: Any, headers: dict[str, str] | None = None, *, malformed: bool = False
) -> Answer:
    """An answer with a JSON body.

    Args:
        status: the HTTP status.
        payload: the body, serialised as JSON.
        headers: the headers; default: a fresh ``X-Request-Id`` only.
        malformed: see :class:`Answer`.

    Returns:
        The answer.
    """
    headers = base_headers() if headers is None else headers
    return Answer(status, orjson.dumps(payload), headers, malformed=malformed)


def base_headers() -> dict[str, str]:
    """The headers every answer carries.

    Returns:
        A fresh ``X-Request-Id`` (uuid4 hex).
    """
    return {"X-Request-Id": uuid.uuid4().hex}


def _not_an_object(headers: dict[str, str], malformed: bool) -> Answer:
    message = "The request body must be a JSON object."
    payload = {"message": message, "errors": {"body": [message]}}
    return json_answer(422, payload, headers, malformed=malformed)


def _public(instance: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in instance.items() if key != "reauthorise_count"}


def _route(method: str, path: str) -> tuple[str | None, Answer | None]:
    """The connector a path names (None for the other routes), or the 404/405 answer."""
    found = route(path)
    if found is None:
        return None, json_answer(404, {"message": "Not Found."}, malformed=True)
    expected, connector = found
    if method != expected:
        headers = base_headers()
        headers["Allow"] = expected
        message = f"The {method} method is not supported for this route."
        return None, json_answer(405, {"message": message}, headers, malformed=True)
    return connector, None


class PatchworksModel:
    """The Patchworks Core API's behaviour: instances, logins and tokens, the quota, the 422 rules.

    Sans-io: ``handle`` answers one request; nothing is sent or awaited. The clock
    (``_clock``, read at each call, so a test may replace it) times token expiry and
    the quota's windows; ``wall_clock`` gives ``X-RateLimit-Reset``.

    Attributes:
        api_key: the API key it accepts (``Authorization: <api_key>``).
        username, password: the login it accepts; a login answers a bearer token
            valid for ``token_ttl`` seconds.
        quota, quota_window: requests per window per credential (``None``: no quota);
            both may be changed at any time.
        instances: the instances by id, each a dict of its fields plus ``reauthorise_count``.
        authorise_count, login_count: counters of instances created and logins.
        quota_model: the :class:`AccountQuota` behind ``quota``.

    Args:
        api_key: the API key to accept; default: a random ``pw_test_...`` key.
        username: the login's username.
        password: the login's password; default: random.
        token_ttl: lifetime of a login token, in seconds.
        quota: requests per ``quota_window`` per credential; ``None``: no quota.
        quota_window: the quota's window, in seconds.
        background: another consumer spending part of the API key's quota, or ``None``.
        clock: the time in seconds (default ``time.monotonic``).
        wall_clock: the epoch time, for ``X-RateLimit-Reset`` (default ``time.time``).

    Raises:
        ValueError: ``quota`` is negative, ``quota_window`` is not positive, or
            ``background`` is given without a ``quota``.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        username: str = "fake-user@example.com",
        password: str | None = None,
        token_ttl: float = 86400.0,
        quota: int | None = None,
        quota_window: float = 60.0,
        background: BackgroundConsumer | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if quota is not None and quota < 0:
            raise ValueError("quota must be >= 0 or None")
        if quota_window <= 0:
            raise ValueError("quota_window must be > 0")
        if background is not None and quota is None:
            raise ValueError("background needs a quota to spend")
        self.api_key: str = api_key if api_key is not None else f"pw_test_{secrets.token_hex(16)}"
        self.username: str = username
        self.password: str = password if password is not None else secrets.token_urlsafe(18)
        self.token_ttl = token_ttl
        self.quota = quota
        self.quota_window = quota_window
        self.instances: dict[str, dict[str, Any]] = {}
        self.authorise_count = 0
        self.login_count = 0
        # Token expiry and quota windows read this clock (tests may replace it).
        self._clock: Callable[[], float] = clock or time.monotonic
        self._wall_clock = wall_clock
        self._tokens: dict[str, float] = {}
        # Read through self._clock at each call: tests may replace the clock.
        self.quota_model = AccountQuota(
            quota or 0, quota_window, lambda: self._clock(), background, self.api_key
        )
        self._next_id = 1

    @property
    def background_sent(self) -> int:
        """Requests of the background consumer that the quota allowed."""
        return self.quota_model.background_sent

    @property
    def background_denied(self) -> int:
        """Requests of the background consumer refused for the quota."""
        return self.quota_model.background_denied

    # -- state ------------------------------------------------------------------------

    def add_instance(self, instance_id: str | int | None = None, **fields: Any) -> str:
        """Preseed an instance (not counted in ``authorise_count``); returns its id as str.

        ``reauthorise`` of that id then answers 200 instead of 404. Works before or
        after ``start``. An existing instance with the same id is replaced.

        Args:
            instance_id: the instance's id; without it, the next sequential integer.
            **fields: the instance's other fields (e.g. ``timezone="UTC"``), stored
                and answered as given.

        Returns:
            The id as a string: the key in ``instances`` and the connector to call.

        Raises:
            Nothing: any id and fields are accepted as they are.
        """
        if instance_id is None:
            instance_id = self._new_id()
        key = str(instance_id)
        self.instances[key] = {"id": instance_id, **fields, "reauthorise_count": 0}
        return key

    def issue_token(self, ttl: float | None = None) -> str:
        """Mint a bearer token valid for ``ttl`` seconds (default ``token_ttl``).

        Args:
            ttl: seconds the token is valid for, on the server's clock.

        Returns:
            The token, to pass as ``PatchworksClient(token=...)``.

        Raises:
            Nothing: a zero or negative ``ttl`` gives a token that is already expired.
        """
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self._clock() + (self.token_ttl if ttl is None else ttl)
        return token

    def expire_tokens(self) -> None:
        """Expire every token issued so far (later tokens are not affected).

        The next call with such a token is answered 401, as an expired token is.

        Returns:
            None.
        """
        for token in self._tokens:
            self._tokens[token] = -float("inf")

    def reset_quota(self) -> None:
        """Forget every quota window: every credential starts afresh.

        Returns:
            None.
        """
        self.quota_model.reset()

    def _new_id(self) -> int:
        while str(self._next_id) in self.instances:
            self._next_id += 1
        new = self._next_id
        self._next_id += 1
        return new

    # -- one request ------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Route, authenticate, throttle, validate and act on one request.

        Args:
            method: the HTTP method.
            path: the raw path (percent-encoding kept), without the query.
            headers: the request's headers, looked up by their canonical names
                (``Authorization``, ``Content-Type``): pass a case-insensitive mapping.
            body: the body bytes (``b""`` without one).

        Returns:
            The answer; ``malformed`` when the request was not one a client should send.
        """
        connector, refused = _route(method, path)
        if refused is not None:
            return refused
        if path == LOGIN_PATH:
            return self._login(headers, body)
        credential = headers.get("Authorization", "")
        if not self._authenticated(credential):
            return json_answer(401, {"message": "Unauthenticated."})
        answer_headers = base_headers()
        if self.quota is not None and not self._throttle(credential, answer_headers):
            return json_answer(429, {"message": "Too Many Attempts."}, answer_headers)
        if path == AUTHENTICATE:
            role = "administrator" if credential.startswith("Bearer ") else "manager"
            user = {"email": self.username, "role": role}
            return json_answer(200, {"authenticated": True, "user": user}, answer_headers)
        if path == WOO_APP_AUTH:
            return Answer(200, b"", answer_headers, None)
        return self._act(connector, headers, body, answer_headers)

    def _act(
        self,
        connector: str | None,
        headers: Mapping[str, str],
        body: bytes,
        answer_headers: dict[str, str],
    ) -> Answer:
        """Authorise (no connector) or reauthorise an instance that exists."""
        instance: dict[str, Any] | None = None
        if connector is not None:
            instance = self.instances.get(connector)
            if instance is None:
                message = f"No query results for instance [{connector}]."
                return json_answer(404, {"message": message}, answer_headers)
        data, malformed = json_object(headers, body)
        if data is None:
            return _not_an_object(answer_headers, malformed)
        if instance is None:
            return self._authorise(data, answer_headers)
        return self._reauthorise(instance, data, answer_headers)

    def _authenticated(self, credential: str) -> bool:
        if not credential:
            return False
        if credential.startswith("Bearer "):
            expires = self._tokens.get(credential[7:])
            return expires is not None and self._clock() < expires
        return secrets.compare_digest(credential.encode(), self.api_key.encode())

    def _throttle(self, credential: str, headers: dict[str, str]) -> bool:
        """Count one request; fill the rate-limit headers; False when over the quota."""
        if self.quota is None:
            return True
        model = self.quota_model
        # ``quota`` and ``quota_window`` may be changed on a running fake, as before.
        model.limit, model.window = self.quota, self.quota_window
        decision = model.hit(credential)
        headers["X-RateLimit-Limit"] = str(decision.limit)
        headers["X-RateLimit-Remaining"] = str(decision.remaining)
        if decision.retry_after is not None:
            headers["Retry-After"] = str(decision.retry_after)
            headers["X-RateLimit-Reset"] = str(int(self._wall_clock()) + decision.retry_after)
        return decision.allowed

    def _login(self, headers: Mapping[str, str], body: bytes) -> Answer:
        answer_headers = base_headers()
        data, malformed = json_object(headers, body)
        if data is None:
            return _not_an_object(answer_headers, malformed)
        errors = validate(data, LOGIN_REQUIRED, ())
        if errors:
            return json_answer(422, validation_payload(errors), answer_headers)
        if not (
            secrets.compare_digest(data["username"].encode(), self.username.encode())
            and secrets.compare_digest(data["password"].encode(), self.password.encode())
        ):
            return json_answer(401, {"message": "Invalid credentials."}, answer_headers)
        self.login_count += 1
        payload = {
            "message": "Login successful.",
            "token": self.issue_token(),
            "expires_in": int(self.token_ttl),
        }
        return json_answer(200, payload, answer_headers)

    def _authorise(self, data: dict[str, Any], headers: dict[str, str]) -> Answer:
        errors = validate(data, AUTHORISE_REQUIRED, AUTHORISE_OPTIONAL)
        if errors:
            return json_answer(422, validation_payload(errors), headers)
        new_id = self._new_id()
        fields = {
            field: data[field]
            for field, _ in (*AUTHORISE_REQUIRED, *AUTHORISE_OPTIONAL)
            if field in data
        }
        instance = {"id": new_id, **fields, "reauthorise_count": 0}
        self.instances[str(new_id)] = instance
        self.authorise_count += 1
        return json_answer(200, _public(instance), headers)

    @staticmethod
    def _reauthorise(
        instance: dict[str, Any], data: dict[str, Any], headers: dict[str, str]
    ) -> Answer:
        errors = validate(data, (), REAUTHORISE_OPTIONAL)
        if errors:
            return json_answer(422, validation_payload(errors), headers)
        for field, _ in REAUTHORISE_OPTIONAL:
            if field in data:
                instance[field] = data[field]
        instance["reauthorise_count"] = instance.get("reauthorise_count", 0) + 1
        return json_answer(200, _public(instance), headers)
