"""The ``patchworks-async`` command: one handler a command, dispatch, and the exit-code contract.

The command line itself (options, help texts, the exit-code table) is ``_parser``.
Errors the user can act on end as ONE line on stderr, ``error: <Class>: message``,
never a traceback and never a credential (the library's messages hold none, and
this module prints no option value that could be one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import orjson

from .. import _constants
from .._client import PatchworksClient
from .._errors import InvalidRequestError, PatchworksError
from .._retry import RetryPolicy
from ..models import AuthoriseRequest, ReauthoriseRequest
from ..testing import __main__ as fake_server_cli
from . import _config, _usage
from ._codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ._config import InputError, Model
from ._messages import cli_message
from ._otel import client_arguments
from ._parser import PROG, build_parser

FAKE_SERVER_PROG: Final = f"{PROG} fake-server"

Handler = Callable[[argparse.Namespace], int]


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
    request = _request(AuthoriseRequest, args)
    return _single(args, lambda client: client.oauth.authorise(request))


def _reauthorise(args: argparse.Namespace) -> int:
    request = _request(ReauthoriseRequest, args)
    return _single(args, lambda client: client.oauth.reauthorise(args.connector, request))


def _request(model: type[Model], args: argparse.Namespace) -> Model:
    """The request of ``authorise`` or ``reauthorise`` from ``--json``/``--json-file``/``-f``."""
    return _config.request_from_options(
        model, args.json, args.json_file, args.field, allow_unknown=args.allow_unknown_fields
    )


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


#: The handler of each command, by the name ``_parser`` gives it (``args.command``).
HANDLERS: Final[Mapping[str, Handler]] = {
    "authenticate": _authenticate,
    "authorise": _authorise,
    "woo-app-auth": _woo_app_auth,
    "reauthorise": _reauthorise,
    "bulk-reauthorise": _bulk,
    "fake-server": _fake_server,
    "demo": _demo,
}


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
        return HANDLERS[args.command](args)
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
