"""The ``patchworks-async`` command line (also ``python -m patchworks_async``).

Subcommands: ``authenticate``, ``authorise``, ``woo-app-auth``, ``reauthorise``,
``bulk-reauthorise``, ``fake-server`` and ``demo``; ``patchworks-async --help``
lists their options, the credentials it reads and its exit codes. The progress
bar and tables use rich (``pip install patchworks-async[cli]``), imported only
when drawn; without it the command prints plain lines.
"""

from __future__ import annotations

from ._app import main

__all__ = ["main"]
