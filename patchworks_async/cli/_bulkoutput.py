"""The output of ``bulk-reauthorise``, JSON Lines written line by line (input: ``_bulkinput``).

One outcome per line, flushed as each completes, so the file is a true record at
any moment. ``--resume`` relies on three things:

- a line is written with one ``write`` call of a whole line and flushed at once,
  so a killed process (even SIGKILL) leaves at most a partial *last* line;
- on resume the file is cut back to its last newline before anything is appended,
  and lines that do not parse are ignored when reading;
- the file is locked (``flock``) while a job uses it, so two jobs cannot append to
  the same output and send the same connectors twice.
"""

from __future__ import annotations

import os
from typing import Any, Final

import orjson

from .._errors import InvalidRequestError, ModelValidationError, UnprocessableEntityError
from ._bulkinput import BadLine, ClosedOnExit
from ._config import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover  # Windows has no flock; the lock is skipped there
    fcntl = None  # type: ignore[assignment]  # the module is optional on this platform

_CHUNK: Final = 64 * 1024


def error_fields(error: BaseException) -> dict[str, Any]:
    """An error as the output's ``error`` object: type, message, status (and details).

    ``errors`` holds every problem: the server's (422) or the request's, by path.
    """
    fields: dict[str, Any] = {
        "type": type(error).__name__,
        "message": str(error),
        "status": getattr(error, "status", None),
    }
    if isinstance(error, InvalidRequestError) and error.field is not None:
        fields["field"] = error.field
    if isinstance(error, UnprocessableEntityError | ModelValidationError) and error.errors:
        fields["errors"] = error.errors  # every bad field: the server's, or the model's by path
    return fields


class OutputFile(ClosedOnExit):
    """The JSON Lines output, opened for a new job or (``resume``) to continue one.

    Raises:
        InputError: the file exists with content and ``resume`` is off, it cannot be
            opened, or another job holds it.
    """

    def __init__(self, path: str, *, resume: bool) -> None:
        self.path = path
        self.done: set[str] = set()
        # The bad input lines already recorded, so a resumed job does not repeat them.
        self._bad_lines: set[tuple[Any, ...]] = set()
        try:
            if not resume and os.path.exists(path) and os.path.getsize(path) > 0:
                raise InputError(
                    f"--output {path} already holds outcomes: pass --resume to continue "
                    "that job, or choose another file"
                )
            self._file = open(path, "a+b")  # noqa: SIM115  # closed by close()
        except OSError as exc:
            raise InputError(f"cannot open --output {path}: {exc.strerror}") from None
        try:
            self._lock()
            if resume:
                self._cut_partial_line()
                self._read_done()
        except BaseException:
            self._file.close()
            raise

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"--output {self.path} is in use by another job") from None

    def _cut_partial_line(self) -> None:
        """Truncate back to the last newline: a killed writer may have left half a line."""
        file = self._file
        end = file.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(position - _CHUNK, 0)
            file.seek(start)
            chunk = file.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        else:
            keep = 0
        if keep != end:
            file.truncate(keep)
            file.flush()

    def _read_done(self) -> None:
        """Collect the connectors that already have an ``"ok": true`` line."""
        self._file.seek(0)
        for raw in self._file:
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # not ours, or damaged: ignored, never fatal
            if not isinstance(record, dict):
                continue
            if record.get("ok") is True:
                connector = record.get("connector")
                if isinstance(connector, str | int) and not isinstance(connector, bool):
                    self.done.add(str(connector))
            elif record.get("attempts") == 0 and isinstance(record.get("error"), dict):
                self._bad_lines.add(_bad_line_key(record))

    def write_bad_line(self, bad: BadLine) -> bool:
        """Record a bad input line, unless the (resumed) output already holds the same one.

        Args:
            bad: the line that could not be sent.

        Returns:
            ``True`` when a line was written; ``False`` when it was already there.
        """
        record = bad_line_record(bad)
        key = _bad_line_key(record)
        if key in self._bad_lines:
            return False
        self._bad_lines.add(key)
        self.write(record)
        return True

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as one line and flush it to the operating system at once."""
        try:
            data = orjson.dumps(record)
        except TypeError:
            # A result orjson cannot encode (e.g. an integer over 64 bits) still gets its line.
            record = {**record, "result": None, "result_error": "the result is not encodable"}
            data = orjson.dumps(record, default=str)
        self._file.write(data + b"\n")
        self._file.flush()

    def close(self) -> None:
        """Flush and close (the lock goes with it)."""
        self._file.close()


def _bad_line_key(record: dict[str, Any]) -> tuple[Any, ...]:
    # The same line, connector and reason: a line fixed since the last run is reported anew.
    error = record.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return (record.get("line"), orjson.dumps(record.get("connector"), default=str), message)


def outcome_record(line: int, connector: Any, ok: bool, **fields: Any) -> dict[str, Any]:
    """One output line: ``line``, ``connector``, ``ok`` first, then the rest."""
    return {"line": line, "connector": connector, "ok": ok, **fields}


def bad_line_record(bad: BadLine) -> dict[str, Any]:
    """The output line of a record that could not be sent (no attempts)."""
    return outcome_record(
        bad.line, bad.connector, False, attempts=0, elapsed=0.0, error=error_fields(bad.error)
    )
