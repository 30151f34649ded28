"""What a user sees when something is wrong, in the command line's own words.

Usage errors are worded as the subcommand's, with its usage line, and suggest the
near miss; the library's messages about a client argument name the option or the
environment variable it came from, never a Python keyword; the first mistakes (a
dead server, refused credentials) say what to check. No message here holds an
option's value (it could be a credential).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Final

from .._errors import AuthenticationError, InvalidRequestError, TransportError
from .._validation import did_you_mean as _suggestion
from . import _config


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:  # argparse's list of them
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def parse(parser: argparse.ArgumentParser, arguments: Sequence[str]) -> argparse.Namespace:
    """``parse_args``, with errors worded as the command's own and near misses suggested.

    argparse reports an unknown option of a subcommand as the top-level command's,
    with the top-level usage; here it is the subcommand's, with ``did you mean``.

    Args:
        parser: the whole command line (``build_parser``).
        arguments: the arguments, without the program's name.

    Returns:
        The parsed options.

    Raises:
        SystemExit: 2 after a usage error on stderr; 0 after ``--help``.
    """
    commands = _commands(parser)
    if arguments and not arguments[0].startswith("-") and arguments[0] not in commands:
        word = arguments[0]
        near = _suggestion(word, commands) or f" (choose from {', '.join(commands)})"
        parser.error(f"unknown command {word!r}{near}")
    args, extras = parser.parse_known_args(arguments)
    if extras:
        command: argparse.ArgumentParser = args.command_parser
        options = [o for action in command._actions for o in action.option_strings]
        words = " ".join(extras)
        first = next((e.split("=", 1)[0] for e in extras if e.startswith("-")), "")
        command.error(f"unrecognized arguments: {words}{_suggestion(first, options)}")
    return args


#: The library's words for what the command line calls an option or a variable.
_LIBRARY_WORDS: Final = {"allow_insecure_http=True": "--allow-insecure-http"}


def sources(args: argparse.Namespace) -> dict[str, str]:
    """Where each client argument came from, as the user gave it (option or variable).

    Args:
        args: the parsed options of a command that calls the API.

    Returns:
        The library's field names (``InvalidRequestError.field``) -> option or variable.
    """
    key = "--api-key-file" if args.api_key_file else _config.ENV_API_KEY
    return {
        "max_connections": "--concurrency",
        "rate_limit": "--rate-limit",
        "timeout": "--timeout",
        "retry.max_attempts": "--max-attempts",
        "max_attempts": "--max-attempts",
        "base_url": "--base-url" if args.base_url else _config.ENV_BASE_URL,
        "api_key": key,
        "token": _config.ENV_TOKEN,
        "login.url": _config.ENV_LOGIN_URL,
        "url": _config.ENV_LOGIN_URL,
        "login.username": _config.ENV_USERNAME,
        "username": _config.ENV_USERNAME,
        "login.password": _config.ENV_PASSWORD,
        "password": _config.ENV_PASSWORD,
    }


def in_cli_words(error: InvalidRequestError, sources: dict[str, str]) -> str:
    """The library's message about a client argument, naming the option or variable instead.

    ``base_url must be ...`` becomes ``--base-url must be ...`` (or ``PATCHWORKS_BASE_URL``);
    a Python keyword such as ``allow_insecure_http=True`` becomes its option.

    Args:
        error: the library's error about a client argument.
        sources: what ``sources`` answers.

    Returns:
        The message, in the command line's words.
    """
    message = str(error)
    source = sources.get(error.field or "")
    if source is not None:
        field = error.field or ""
        message = (
            source + message[len(field) :] if message.startswith(field) else f"{source}: {message}"
        )
    for word, option in _LIBRARY_WORDS.items():
        message = message.replace(word, option)
    return message


def hint(error: BaseException) -> str:
    """What to check, for the first mistakes: a dead server and refused credentials.

    Args:
        error: the error that ends the command.

    Returns:
        ``"; ..."`` to append to the error line, or ``""``.
    """
    if isinstance(error, TransportError) and not error.sent:
        return f"; is the server running? check --base-url or {_config.ENV_BASE_URL}"
    if isinstance(error, AuthenticationError):
        return (
            f"; check the credentials (--api-key-file, {_config.ENV_API_KEY}, "
            f"{_config.ENV_TOKEN} or {_config.ENV_USERNAME} + {_config.ENV_PASSWORD})"
        )
    return ""
