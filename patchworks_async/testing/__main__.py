"""Run FakePatchworks on its own: ``python -m patchworks_async.testing --port 8080``.

The same command is ``patchworks-async fake-server``. It prints five flushed lines
(``url: ...``, ``api_key: ...``, ``username: ...``, ``password: ...``,
``instances: ...``) and serves until SIGINT or SIGTERM, then exits 0. It exits 2 on
a bad option or an unreadable ``--instances-file``, and 1 when it cannot listen
(the port is taken): one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import errno
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from typing import Final

import orjson

from .._argtypes import non_negative_int, positive_seconds, seconds
from .._constants import INPUT_EXTENSIONS
from ._server import FakePatchworks

PROG: Final = "python -m patchworks_async.testing"
DESCRIPTION: Final = (
    "Run the fake Patchworks Core API server on 127.0.0.1 until Ctrl-C, to try the\n"
    "command line against or for tests. It prints its URL, API key, login and instances."
)
EPILOG: Final = """\
instances: --instances N makes the ids 1 to N; --instances-file PATH takes the ids from
  PATH: a .csv file's "connector" column (a bulk-reauthorise input), a .jsonl or
  .ndjson file's "connector" keys, else one id per line. Other ids answer 404 to reauthorise.

exit codes:
  0    stopped by Ctrl-C or SIGTERM
  1    cannot listen (e.g. the port is taken: try --port 0)
  2    bad option, or --instances-file cannot be read
"""

EXIT_OK: Final = 0
EXIT_CANNOT_LISTEN: Final = 1
EXIT_USAGE: Final = 2


class InstancesFileError(Exception):
    """An ``--instances-file`` that cannot be read or holds no usable id."""


# Over 40 lines: one option a few lines, declared in --help's order.
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the fake server's options to ``parser`` (shared with ``patchworks-async``).

    Args:
        parser: the parser of ``python -m patchworks_async.testing`` or of the
            ``fake-server`` subcommand.
    """
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    parser.add_argument(
        "--port", type=non_negative_int, default=8080, help="port, 0 for a free one (8080)"
    )
    parser.add_argument("--api-key", metavar="KEY", help="the API key (default: random)")
    parser.add_argument("--username", default="fake-user@example.com", help="login username")
    parser.add_argument("--password", help="login password (default: random)")
    seed = parser.add_mutually_exclusive_group()
    seed.add_argument(
        "--instances",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="start with the instances 1 to N (default: none)",
    )
    seed.add_argument(
        "--instances-file",
        metavar="PATH",
        help="start with the instance ids in PATH (.csv: its connector column; .jsonl or "
        ".ndjson: each line's connector; else one id per line)",
    )
    parser.add_argument(
        "--token-ttl", type=seconds, default=86400.0, metavar="SECONDS",
        help="login token lifetime (%(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--quota", type=non_negative_int, metavar="N", help="requests per window per credential"
    )
    parser.add_argument(
        "--quota-window", type=positive_seconds, default=60.0, metavar="SECONDS",
        help="quota window (%(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--latency", type=seconds, default=0.0, metavar="SECONDS",
        help="delay before every answer (%(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--record",
        action="store_true",
        help="keep every request in memory (off by default for a long-running server)",
    )


def _parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_arguments(parser)
    return parser


def read_instance_ids(path: str) -> list[str]:
    """The instance ids in ``path``, in order, without repeats.

    Args:
        path: a ``.csv`` file with a header row and a ``connector`` column, a ``.jsonl``
            (or ``.ndjson``) file of objects with a ``connector`` key, or any other text
            file with one id per line; blank lines (and ``#`` comment lines in a plain
            file) are skipped.

    Returns:
        The ids as text.

    Raises:
        InstancesFileError: the file cannot be read, has no ``connector`` column or
            key, or holds no id.
    """
    fmt = INPUT_EXTENSIONS.get(os.path.splitext(path)[1].lower())
    try:
        # utf-8-sig: a spreadsheet's byte order mark is not part of the first column's name.
        with open(path, encoding="utf-8-sig", newline="") as file:
            if fmt == "csv":
                ids = _csv_ids(file, path)
            elif fmt == "jsonl":
                ids = _jsonl_ids(file, path)
            else:
                ids = [line.strip() for line in file]
                ids = [key for key in ids if key and not key.startswith("#")]
    except OSError as exc:
        raise InstancesFileError(f"cannot read --instances-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InstancesFileError(f"--instances-file {path} is not UTF-8 text") from None
    if not ids:
        raise InstancesFileError(f"--instances-file {path} holds no instance id")
    return list(dict.fromkeys(ids))


def _csv_ids(lines: Iterable[str], path: str) -> list[str]:
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader, [])]  # as bulk-reauthorise reads it
    if "connector" not in header:
        raise InstancesFileError(f'--instances-file {path} has no "connector" column')
    column = header.index("connector")
    cells = (row[column].strip() for row in reader if len(row) > column)
    return [cell for cell in cells if cell]


def _jsonl_ids(lines: Iterable[str], path: str) -> list[str]:
    ids: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise InstancesFileError(f"--instances-file {path} line {number}: not JSON") from None
        if not isinstance(record, dict) or record.get("connector") in (None, ""):
            raise InstancesFileError(f'--instances-file {path} line {number}: no "connector"')
        ids.append(str(record["connector"]))
    return ids


def _seed(fake: FakePatchworks, args: argparse.Namespace, ids: list[str] | None) -> str:
    """Add the instances the options ask for; returns the ``instances:`` line's text."""
    if ids is not None:
        for key in ids:
            fake.add_instance(key)
        return f"{len(ids)} (from {args.instances_file})"
    for _ in range(args.instances):
        fake.add_instance()
    return f"{args.instances} (ids 1 to {args.instances})" if args.instances else "0"


async def _serve(args: argparse.Namespace, ids: list[str] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no add_signal_handler; KeyboardInterrupt still stops it there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with FakePatchworks(
        api_key=args.api_key,
        username=args.username,
        password=args.password,
        token_ttl=args.token_ttl,
        quota=args.quota,
        quota_window=args.quota_window,
        host=args.host,
        port=args.port,
        record=args.record,
        latency=args.latency,
    ) as fake:
        seeded = _seed(fake, args, ids)
        print(f"url: {fake.url}", flush=True)
        print(f"api_key: {fake.api_key}", flush=True)
        print(f"username: {fake.username}", flush=True)
        print(f"password: {fake.password}", flush=True)
        print(f"instances: {seeded}", flush=True)
        await stop.wait()


def serve(args: argparse.Namespace, prog: str = PROG) -> int:
    """Serve until SIGINT or SIGTERM; problems are one line on stderr.

    Args:
        args: the options ``add_arguments`` defines, parsed.
        prog: the command's name, for error lines.

    Returns:
        The exit code: 0 once stopped, 1 when it cannot listen, 2 for a bad
        ``--instances-file``.
    """
    try:
        ids = read_instance_ids(args.instances_file) if args.instances_file else None
    except InstancesFileError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return EXIT_USAGE
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args, ids))
    except OSError as exc:
        # asyncio's message repeats the address; the errno's text is enough
        # (a name that does not resolve has a negative errno and its own strerror).
        code = exc.errno or 0
        reason = os.strerror(code) if code > 0 else exc.strerror or str(exc)
        hint = " (try --port 0 for a free port)" if exc.errno == errno.EADDRINUSE else ""
        sys.stderr.write(
            f"{prog}: error: cannot listen on {args.host}:{args.port}: {reason}{hint}\n"
        )
        return EXIT_CANNOT_LISTEN
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m patchworks_async.testing``.

    Args:
        argv: the options; default ``sys.argv[1:]``.

    Returns:
        The process exit code (see ``--help``).
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
