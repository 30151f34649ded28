"""What the command line says about an error: on one line, with the option that helps.

The library's messages about a client argument are re-worded where the client is
built (``_app._client`` with :func:`._usage.in_cli_words`, which knows which option
or variable the user set); this module only adds what the command line offers.
"""

from __future__ import annotations

from .._errors import ModelValidationError, problems_text
from .._validation import field_names
from ..models import Variable
from . import _config


def cli_message(error: BaseException) -> str:
    """The error's message as the command line says it.

    A request that cannot be built lists its problems by the names the user wrote
    (no Python class name), mentions ``--allow-unknown-fields`` when a field is
    unknown, and says that the option does not reach inside ``variables``.

    Args:
        error: the exception to describe.

    Returns:
        The message, on one line.
    """
    message = str(error)
    if isinstance(error, ModelValidationError) and error.errors:
        message = problems_text(error.errors, error.valid_fields)
        unknown = [path for path, text in error.errors.items() if text.startswith("is not a field")]
        # "extra" is the models' own word: the option would not send it either.
        if error.valid_fields and any(path != "extra" and "[" not in path for path in unknown):
            message += f"; pass {_config.ALLOW_UNKNOWN_FLAG} to send unknown fields as they are"
        message += variables_note(error.errors)
    return " ".join(message.split())  # one line, whatever the message held


def variables_note(errors: dict[str, str]) -> str:
    """``"; ..."`` when a key inside ``variables`` is unknown, else ``""``.

    Args:
        errors: a ModelValidationError's problems.

    Returns:
        The note that ``--allow-unknown-fields`` does not apply inside ``variables``.
    """
    nested = any("[" in path and text.startswith("is not a field") for path, text in errors.items())
    if not nested:
        return ""
    return (
        f"; {_config.ALLOW_UNKNOWN_FLAG} does not apply inside variables, whose items take "
        f"only {', '.join(field_names(Variable))}"
    )
