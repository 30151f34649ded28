"""The ``patchworks-async`` command line as argparse sees it: options, help texts, exit codes.

One function a command (``_authorise_parser``, ``_bulk_parser``, ...) declares its
options; :func:`build_parser` puts them together. Nothing here runs a command: the
parsed options name it (``args.command``) and ``_app`` dispatches.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Final

from .. import _constants
from .._argtypes import non_negative_int, positive_float, positive_int
from .._version import __version__
from ..models import RateLimit
from ..testing import __main__ as fake_server_cli
from . import _config
from ._codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED, EXIT_USAGE
from ._progress import DEFAULT_INTERVAL

PROG: Final = "patchworks-async"

CREDENTIALS_HELP: Final = f"""\
credentials, the first found wins:
  --api-key-file PATH                         an API key, the file's first line
  {_config.ENV_API_KEY}                          an API key
  {_config.ENV_TOKEN}                            a bearer token
  {_config.ENV_USERNAME} + {_config.ENV_PASSWORD}   log in ({_config.ENV_LOGIN_URL} optional)
base URL: --base-url, else {_config.ENV_BASE_URL}, else {_constants.DEFAULT_BASE_URL}
"""

#: The exit codes of the commands that call the API (one row per code: add a row
#: here when a code is added to ``_codes``; a test checks the two agree).
EXIT_CODES: Final[tuple[tuple[int, str], ...]] = (
    (EXIT_OK, "every call succeeded"),
    (EXIT_FAILED, "a call failed (bulk-reauthorise: at least one line failed, "
                  "bad input lines included)"),
    (EXIT_USAGE, "usage or input error (bad option, file, field or credentials): nothing was sent"),
    (EXIT_STOPPED, "bulk-reauthorise stopped: it could not succeed (credentials refused, a run "
                   "of 403s, host unreachable); --resume sends the items not sent"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); bulk-reauthorise keeps every outcome written so far"),
)  # fmt: skip

#: The demo's own: its deliberate failures do not count (``_demo.unexpected_failures``).
DEMO_EXIT_CODES: Final[tuple[tuple[int, str], ...]] = (
    (EXIT_OK, "every call succeeded, but for the deliberate 404s of the unknown connectors"),
    (EXIT_FAILED, "any other call failed (the summary names its error)"),
    (EXIT_USAGE, "bad option"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)


def exit_code_table(rows: Sequence[tuple[int, str]]) -> str:
    """The ``exit codes:`` section of a ``--help``.

    Args:
        rows: (code, meaning) pairs, in the order to print.

    Returns:
        The section, one line per code.
    """
    return "exit codes:\n" + "".join(f"  {code:<4} {meaning}\n" for code, meaning in rows)


EPILOG: Final = (
    CREDENTIALS_HELP
    + "\n"
    + exit_code_table(EXIT_CODES)
    + ("  (demo and fake-server have their own: see their --help)\n")
)
DEMO_EPILOG: Final = (
    "No account, credentials or network needed: the server runs in this process on\n"
    "127.0.0.1. Three connectors that do not exist are called on purpose, to show that a\n"
    "failure is an outcome, not a crash: their 404s are labelled deliberate in the summary.\n"
    "\n" + exit_code_table(DEMO_EXIT_CODES)
)
_BULK_HELP: Final = (
    "reauthorise many instances from a CSV or JSON Lines file; one JSON line per outcome"
)
_DEMO_HELP: Final = (
    "reauthorise a few thousand instances of an in-process fake server under the "
    "client's limits, then print what happened (no account needed)"
)

# The subparsers' ``add_parser`` (argparse keeps its class private).
_Commands = Any


def build_parser() -> argparse.ArgumentParser:
    """The whole command line.

    Returns:
        The parser; its result names the command in ``command`` and holds that
        command's own parser in ``command_parser`` (to word a usage error as its own).
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Command line of patchworks-async, the asyncio client for the "
        "Patchworks Core API. Try: patchworks-async demo",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    connection = _connection_options()
    _command(commands, "authenticate", "POST /api/v1/oauth/authenticate; print the answer",
             parents=[connection])  # fmt: skip
    _authorise_parser(commands, connection)
    _command(commands, "woo-app-auth", "POST /api/v1/oauth/woo-app-auth; print the answer",
             parents=[connection])  # fmt: skip
    _reauthorise_parser(commands, connection)
    _bulk_parser(_command(commands, "bulk-reauthorise", _BULK_HELP, parents=[connection]))
    _fake_server_parser(commands)
    _demo_parser(_command(commands, "demo", _DEMO_HELP, epilog=DEMO_EPILOG))
    return parser


def _command(
    commands: _Commands, name: str, help_text: str, epilog: str = EPILOG, **kwargs: Any
) -> argparse.ArgumentParser:
    """Add one command's parser, with the house formatting."""
    sub: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=kwargs.pop("description", help_text),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        **kwargs,
    )
    # The parser itself, so that main() can word a usage error as this command's.
    sub.set_defaults(command_parser=sub)
    return sub


def _authorise_parser(commands: _Commands, connection: argparse.ArgumentParser) -> None:
    authorise = _command(
        commands,
        "authorise",
        "create an instance: POST /api/v1/oauth/authorise; print the answer",
        parents=[connection],
    )
    _field_options(authorise)


def _reauthorise_parser(commands: _Commands, connection: argparse.ArgumentParser) -> None:
    reauthorise = _command(
        commands,
        "reauthorise",
        "reauthorise one instance: PATCH /api/v1/oauth/{connector}/reauthorise",
        parents=[connection],
    )
    reauthorise.add_argument("connector", help="the instance id")
    _field_options(reauthorise)


def _fake_server_parser(commands: _Commands) -> None:
    fake_server = _command(
        commands,
        "fake-server",
        "run a fake Patchworks server on 127.0.0.1 to try these commands against",
        epilog=fake_server_cli.EPILOG,
        description=fake_server_cli.DESCRIPTION,
    )
    fake_server_cli.add_arguments(fake_server)


# -- option groups -----------------------------------------------------------------------------


def _rate_limit(text: str) -> RateLimit | None:
    try:
        return _config.parse_rate_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _connection_options() -> argparse.ArgumentParser:
    """The options of every command that calls the API (a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    _server_options(group)
    _limit_options(group)
    group.add_argument(
        "--otel",
        choices=("console", "otlp"),
        help="export OpenTelemetry traces and metrics to standard error or to an OTLP/HTTP "
        "collector (needs opentelemetry-sdk; otlp also opentelemetry-exporter-otlp-proto-http)",
    )
    return parent


def _server_options(group: Any) -> None:
    """Where the API is and how to reach it."""
    group.add_argument("--base-url", help=f"the API's origin (default: ${_config.ENV_BASE_URL})")
    group.add_argument(
        "--api-key-file", metavar="PATH", help="read the API key from the first line of PATH"
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow an http:// base URL to a host that is not loopback (credentials would "
        "cross the network unencrypted)",
    )


def _limit_options(group: Any) -> None:
    """The client's limits: calls a unit of time, time per attempt, attempts per call."""
    group.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=RateLimit("minute", _constants.DEFAULT_QUOTA_PER_MINUTE),
        metavar="N/UNIT",
        help="client-wide limit on calls, e.g. 240/minute or 4/second; 'none' turns it off "
        "(default: 240/minute, the Core API's quota)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=_constants.DEFAULT_TOTAL_TIMEOUT,
        metavar="SECONDS",
        help="time limit of one attempt (default: %(default)s)",
    )
    group.add_argument(
        "--max-attempts",
        type=positive_int,
        default=_constants.DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help="attempts per call, the first included; 1 turns retries off (default: %(default)s)",
    )


def _field_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("request fields (--field options override --json)")
    group.add_argument(
        "-f",
        "--field",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one field, repeatable; rate_limit_duration and connection_pool_id are integers, "
        "variables is JSON when it is a JSON array, other fields are text",
    )
    _allow_unknown_option(group)
    source = group.add_mutually_exclusive_group()
    source.add_argument("--json", metavar="OBJECT", help="the fields as one JSON object")
    source.add_argument(
        "--json-file",
        metavar="PATH",
        help="read the JSON object from PATH ('-' for stdin); keeps secrets off the command line",
    )


def _allow_unknown_option(group: Any) -> None:
    group.add_argument(
        _config.ALLOW_UNKNOWN_FLAG,
        action="store_true",
        help="send fields (and columns) that are not the request's fields as they are; "
        "without it they are refused, with the closest field suggested",
    )


def _progress_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "off"),
        default="auto",
        help="a live bar on a terminal, plain lines otherwise (default: auto)",
    )
    parser.add_argument(
        "--progress-interval",
        type=positive_float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="seconds between plain progress lines (default: %(default)s)",
    )


# -- bulk-reauthorise and demo -----------------------------------------------------------------


def _bulk_parser(parser: argparse.ArgumentParser) -> None:
    """The options of ``bulk-reauthorise``, in the order ``--help`` lists them."""
    _bulk_file_options(parser)
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=16,
        metavar="N",
        help="calls in flight at once (default: %(default)s)",
    )
    _allow_unknown_option(parser)
    parser.add_argument(
        "--ignore-column",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this CSV column (or JSON Lines key) out of the requests; repeatable",
    )
    parser.add_argument(
        "--unreachable-after",
        type=non_negative_int,
        default=_constants.DEFAULT_UNREACHABLE_AFTER,
        metavar="N",
        help="stop the job (exit 3) once N calls in a row got no answer at all from the host "
        "(connection refused, timeouts); 0 never stops (default: %(default)s)",
    )
    _progress_options(parser)


def _bulk_file_options(parser: argparse.ArgumentParser) -> None:
    """``--input``, ``--format``, ``--output`` and ``--resume``."""
    parser.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="CSV with a header row (a connector column plus reauthorise fields; empty cells "
        "are unset) or JSON Lines (one object with connector and fields per line); '-' is stdin",
    )
    parser.add_argument(
        "--format", choices=("csv", "jsonl"), help="the input's format (default: by extension)"
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="JSON Lines, one outcome per input line, written as each completes",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help='continue a job: skip connectors with an "ok": true line in --output, append',
    )


def _demo_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instances",
        type=positive_int,
        default=2500,
        metavar="N",
        help="instances the fake holds, each reauthorised once (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=positive_int,
        default=100,
        metavar="N",
        help="the client's limit (and the fake's quota), requests a second (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=16,
        metavar="N",
        help="calls in flight at once (default %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a run of a few seconds (300 instances at 200/s)"
    )
    _progress_options(parser)
