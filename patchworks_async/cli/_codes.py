"""The command line's exit codes (``patchworks-async --help`` lists them)."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
#: A call failed (bulk-reauthorise: at least one line failed, bad input lines included).
EXIT_FAILED: Final = 1
#: Usage or input error: nothing was sent.
EXIT_USAGE: Final = 2
#: bulk-reauthorise stopped because it could not succeed (credentials refused, a run
#: of 403s, host unreachable): items not sent have no line, ``--resume`` sends them.
EXIT_STOPPED: Final = 3
#: Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED: Final = 130
