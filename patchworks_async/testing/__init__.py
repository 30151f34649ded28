"""Test helpers shipped with patchworks_async: a fake Patchworks Core API server.

``FakePatchworks`` is a real HTTP server on 127.0.0.1 (aiohttp), for your own tests::

    from patchworks_async.testing import FakePatchworks, Fault

    async with FakePatchworks() as fake:
        fake.add_faults(Fault.too_many(retry_after=1))
        ...  # point your client at fake.url with fake.api_key

Run it on its own with ``patchworks-async fake-server --port 8080 --instances 3`` (or
``python -m patchworks_async.testing``, the same options).
"""

from __future__ import annotations

from ._faults import Fault, FaultKind
from ._model import Answer
from ._quota import AccountQuota, BackgroundConsumer
from ._records import RecordedRequest
from ._server import FakePatchworks

__all__ = [
    "AccountQuota",
    "Answer",
    "BackgroundConsumer",
    "FakePatchworks",
    "Fault",
    "FaultKind",
    "RecordedRequest",
]
