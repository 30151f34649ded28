"""What the command line says about an error: the user's words, not the library's arguments."""

from __future__ import annotations

import re
from typing import Final

from .._errors import InvalidRequestError, ModelValidationError
from . import _config

# The client's keyword arguments, as the command line spells them: its errors name
# what the user typed (a flag or a variable), never a Python argument.
_FLAGS: Final = {
    "allow_insecure_http=True": "--allow-insecure-http",
    "allow_insecure_http": "--allow-insecure-http",
    "base_url": f"--base-url (or {_config.ENV_BASE_URL})",
    "login.url": _config.ENV_LOGIN_URL,
    "api_key": f"the API key (--api-key-file or {_config.ENV_API_KEY})",
    "token": _config.ENV_TOKEN,
    "login": f"{_config.ENV_USERNAME} and {_config.ENV_PASSWORD}",
    "max_connections": "--concurrency",
    "rate_limit": "--rate-limit",
    "timeout": "--timeout",
}
_FLAG_WORD: Final = re.compile(
    r"(?<![\w.-])(" + "|".join(re.escape(word) for word in _FLAGS) + r")(?![\w.])"
)


def cli_message(error: BaseException) -> str:
    """The error's message as the command line says it.

    An error about one of the client's arguments names the flag or variable the user
    set (``--allow-insecure-http``, not ``allow_insecure_http=True``); a request with
    unknown fields mentions the option that sends them.

    Args:
        error: the exception to describe.

    Returns:
        The message, on one line.
    """
    message = str(error)
    if isinstance(error, ModelValidationError):
        # A request's fields keep their names: they are what the user wrote after -f.
        if error.valid_fields:
            message += f"; pass {_config.ALLOW_UNKNOWN_FLAG} to send unknown fields as they are"
    elif isinstance(error, InvalidRequestError) and error.field in _FLAGS:
        message = _FLAG_WORD.sub(lambda match: _FLAGS[match.group(1)], message)
    return " ".join(message.split())  # one line, whatever the message held
