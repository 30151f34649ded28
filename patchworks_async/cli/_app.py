"""The ``patchworks-async`` command: argparse, dispatch, and the exit-code contract.

Errors the user can act on end as ONE line on stderr, ``error: <Class>: message``,
never a traceback and never a credential (the library's messages hold none, and
this module prints no option value that could be one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import orjson

from .. import _constants
from .._argtypes import non_negative_int, positive_float, positive_int
from .._client import PatchworksClient
from .._errors import InvalidRequestError, PatchworksError
from .._retry import RetryPolicy
from .._version import __version__
from ..models import AuthoriseRequest, RateLimit, ReauthoriseRequest
from ..testing import __main__ as fake_server_cli
from . import _config, _usage
from ._codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED, EXIT_USAGE
from ._config import InputError
from ._messages import cli_message
from ._otel import client_arguments
from ._progress import DEFAULT_INTERVAL

PROG: Final = "patchworks-async"
FAKE_SERVER_PROG: Final = f"{PROG} fake-server"

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

Handler = Callable[[argparse.Namespace], int]


def _rate_limit(text: str) -> RateLimit | None:
    try:
        return _config.parse_rate_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
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
    group.add_argument(
        "--otel",
        choices=("console", "otlp"),
        help="export OpenTelemetry traces and metrics to standard error or to an OTLP/HTTP "
        "collector (needs opentelemetry-sdk; otlp also opentelemetry-exporter-otlp-proto-http)",
    )
    return parent


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


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
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

    def command(
        name: str, help_text: str, handler: Handler, epilog: str = EPILOG, **kwargs: Any
    ) -> Any:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=kwargs.pop("description", help_text),
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
            **kwargs,
        )
        # The parser itself, so that main() can word a usage error as this command's.
        sub.set_defaults(handler=handler, command_parser=sub)
        return sub

    command(
        "authenticate", "POST /api/v1/oauth/authenticate; print the answer", _authenticate,
        parents=[connection],
    )  # fmt: skip
    authorise = command(
        "authorise",
        "create an instance: POST /api/v1/oauth/authorise; print the answer",
        _authorise,
        parents=[connection],
    )
    _field_options(authorise)
    command(
        "woo-app-auth", "POST /api/v1/oauth/woo-app-auth; print the answer", _woo_app_auth,
        parents=[connection],
    )  # fmt: skip
    reauthorise = command(
        "reauthorise",
        "reauthorise one instance: PATCH /api/v1/oauth/{connector}/reauthorise",
        _reauthorise,
        parents=[connection],
    )
    reauthorise.add_argument("connector", help="the instance id")
    _field_options(reauthorise)
    _bulk_parser(command("bulk-reauthorise", _BULK_HELP, _bulk, parents=[connection]))
    _fake_server_parser(
        command(
            "fake-server",
            "run a fake Patchworks server on 127.0.0.1 to try these commands against",
            _fake_server,
            epilog=fake_server_cli.EPILOG,
            description=fake_server_cli.DESCRIPTION,
        )
    )
    _demo_parser(command("demo", _DEMO_HELP, _demo, epilog=DEMO_EPILOG))
    return parser


_BULK_HELP: Final = (
    "reauthorise many instances from a CSV or JSON Lines file; one JSON line per outcome"
)
_DEMO_HELP: Final = (
    "reauthorise a few thousand instances of an in-process fake server under the "
    "client's limits, then print what happened (no account needed)"
)


def _bulk_parser(parser: argparse.ArgumentParser) -> None:
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


def _fake_server_parser(parser: argparse.ArgumentParser) -> None:
    fake_server_cli.add_arguments(parser)


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


# -- the commands ----------------------------------------------------------------------------


def _client(args: argparse.Namespace, concurrency: int = 1) -> PatchworksClient:
    environ = os.environ
    try:
        return PatchworksClient(
            **_config.credentials(args.api_key_file, environ),
            base_url=_config.base_url(args.base_url, environ),
            timeout=args.timeout,
            rate_limit=args.rate_limit,
            retry=RetryPolicy(max_attempts=args.max_attempts),
            max_connections=max(_constants.DEFAULT_MAX_CONNECTIONS, concurrency),
            allow_insecure_http=args.allow_insecure_http,
            unreachable_after=getattr(
                args, "unreachable_after", _constants.DEFAULT_UNREACHABLE_AFTER
            )
            or None,
            **client_arguments(args.otel),
        )
    except InvalidRequestError as error:
        raise InputError(_usage.in_cli_words(error, _usage.sources(args))) from None


def _single(
    args: argparse.Namespace, call: Callable[[PatchworksClient], Awaitable[dict[str, Any]]]
) -> int:
    client = _client(args)

    async def run() -> dict[str, Any]:
        async with client:
            return await call(client)

    result = asyncio.run(run())
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    return EXIT_OK


def _authenticate(args: argparse.Namespace) -> int:
    return _single(args, lambda client: client.oauth.authenticate())


def _woo_app_auth(args: argparse.Namespace) -> int:
    return _single(args, lambda client: client.oauth.woo_app_auth())


def _authorise(args: argparse.Namespace) -> int:
    request = _config.request_from_options(
        AuthoriseRequest,
        args.json,
        args.json_file,
        args.field,
        allow_unknown=args.allow_unknown_fields,
    )
    return _single(args, lambda client: client.oauth.authorise(request))


def _reauthorise(args: argparse.Namespace) -> int:
    request = _config.request_from_options(
        ReauthoriseRequest,
        args.json,
        args.json_file,
        args.field,
        allow_unknown=args.allow_unknown_fields,
    )
    return _single(args, lambda client: client.oauth.reauthorise(args.connector, request))


def _bulk(args: argparse.Namespace) -> int:
    from ._bulkcommand import run_bulk_command

    client = _client(args, args.concurrency)
    return run_bulk_command(args, client)


def _demo(args: argparse.Namespace) -> int:
    from ._demo import DemoOptions, exit_code, run_demo
    from ._demosummary import print_summary

    if args.quick:
        options = DemoOptions.quick(args.progress, args.progress_interval)
    else:
        options = DemoOptions(
            instances=args.instances,
            rate=args.rate,
            concurrency=args.concurrency,
            progress=args.progress,
            progress_interval=args.progress_interval,
        )
    report = asyncio.run(run_demo(options))
    print_summary(report)
    return exit_code(report)


def _fake_server(args: argparse.Namespace) -> int:
    return fake_server_cli.serve(args, prog=FAKE_SERVER_PROG)


# -- entry point -------------------------------------------------------------------------------


def _error(error: BaseException) -> None:
    message = cli_message(error)  # one line, in the command line's words
    sys.stderr.write(f"error: {type(error).__name__}: {message}{_usage.hint(error)}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see ``--help``)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _usage.parse(build_parser(), arguments)
        handler: Handler = args.handler
        return handler(args)
    except SystemExit as exc:  # argparse: --help, --version, usage errors (2)
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except (InputError, InvalidRequestError) as error:
        _error(error)
        return EXIT_USAGE
    except (PatchworksError, OSError) as error:
        _error(error)
        return EXIT_FAILED
