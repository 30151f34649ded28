"""Defaults, in one place (the openai/anthropic SDKs' ``_constants.py``)."""

from __future__ import annotations

from typing import Final

from ._version import __version__

DEFAULT_BASE_URL: Final = "https://core.wearepatchworks.com"
DEFAULT_LOGIN_URL: Final = "https://app.wearepatchworks.com/fabric/api/login"
ENV_API_KEY: Final = "PATCHWORKS_API_KEY"
ENV_BASE_URL: Final = "PATCHWORKS_BASE_URL"

USER_AGENT: Final = f"patchworks-async/{__version__}"

# Timeouts, in seconds. Both finite: a hung server never hangs the caller.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_TOTAL_TIMEOUT: Final = 60.0

# Connections kept in the pool; in-flight requests never exceed it.
DEFAULT_MAX_CONNECTIONS: Final = 32
DEFAULT_KEEPALIVE_TIMEOUT: Final = 30.0

# The documented Core API quota: 240 calls a minute (DOMAIN.md).
DEFAULT_QUOTA_PER_MINUTE: Final = 240

# Idle per-instance limiters kept before the least recently used are dropped.
DEFAULT_MAX_INSTANCE_LIMITERS: Final = 10_000

# Retries (RetryPolicy's defaults).
DEFAULT_MAX_ATTEMPTS: Final = 4
DEFAULT_MAX_RETRY_TIME: Final = 300.0
DEFAULT_BACKOFF_BASE: Final = 0.5
DEFAULT_BACKOFF_MAX: Final = 8.0
DEFAULT_MAX_RETRY_AFTER: Final = 120.0
# How long the client pauses after a 429 that carries no Retry-After.
DEFAULT_RETRY_AFTER: Final = 1.0

# The host is deemed unreachable after this many calls in a row got no HTTP answer
# (PatchworksClient(unreachable_after=...)); calls then fail fast for the cool-down.
# 8: more than one call's own retries (4 attempts) and than a brief blip of a few
# calls; at the default 240/minute the 8th call leaves about 2 s after the first.
DEFAULT_UNREACHABLE_AFTER: Final = 8
UNREACHABLE_COOLDOWN: Final = 10.0

# Refresh a login token this long before it expires.
TOKEN_REFRESH_MARGIN: Final = 60.0

# Response bodies larger than this are refused instead of read into memory.
DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024

# How much of an unparseable body an error keeps, for diagnosis.
ERROR_BODY_PREVIEW: Final = 2048

# Redirects followed at most (Authorization is never sent to another origin).
MAX_REDIRECTS: Final = 3

#: Input file extensions (lower case) -> format, for ``bulk-reauthorise --input`` and
#: ``fake-server --instances-file`` alike.
INPUT_EXTENSIONS: Final = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
