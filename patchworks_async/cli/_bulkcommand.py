"""``bulk-reauthorise`` from the command line: open the files, run the job, sum it up."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping

from .._client import PatchworksClient
from .._errors import BulkStoppedError
from ._bulkinput import InputReader, count_records, input_format
from ._bulkoutput import OutputFile
from ._bulkrun import BulkJob, summary
from ._codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED
from ._config import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_LOGIN_URL,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USERNAME,
    InputError,
)
from ._progress import Reporter, Tally, make_reporter


def run_bulk_command(args: argparse.Namespace, client: PatchworksClient) -> int:
    """Run the job; returns 0 when every line succeeded, 1 when one failed, 3 when it
    stopped because it could not succeed, 130 on Ctrl-C.

    Args:
        args: the parsed command line.
        client: the client to send with (closed at the end).

    Returns:
        The exit code.

    Raises:
        InputError: the input or output cannot be used (nothing was sent).
    """
    fmt = input_format(args.input, args.format)
    if args.input != "-" and os.path.abspath(args.input) == os.path.abspath(args.output):
        raise InputError("--input and --output must be different files")
    with (
        InputReader(
            args.input,
            fmt,
            allow_unknown=args.allow_unknown_fields,
            ignore=args.ignore_column,
        ) as reader,
        OutputFile(args.output, resume=args.resume) as output,
    ):
        _note_unknown_columns(reader)
        tally = Tally(count_records(args.input, fmt))
        reporter = make_reporter(
            args.progress, tally, description="reauthorising", interval=args.progress_interval
        )
        job = BulkJob(reader, output, tally, reporter)
        ending = _run_job(args, client, job, tally, reporter)
    if ending == "interrupted":
        return EXIT_INTERRUPTED
    if ending.startswith("stopped: "):
        return EXIT_STOPPED
    return EXIT_FAILED if tally.failed else EXIT_OK


def _note_unknown_columns(reader: InputReader) -> None:
    if reader.unknown_columns:
        names = ", ".join(reader.unknown_columns)
        sys.stderr.write(
            f"note: column(s) {names} are not reauthorise fields; they are sent as they are\n"
        )


def _run_job(
    args: argparse.Namespace,
    client: PatchworksClient,
    job: BulkJob,
    tally: Tally,
    reporter: Reporter,
) -> str:
    """Run ``job`` under its progress display, then print the summary.

    Returns:
        How it ended: ``done``, ``interrupted`` or ``stopped: ...`` (:func:`stop_line`).
        Any other error is raised, after the summary (which says "stopped by an error").
    """
    ending = "stopped by an error"
    reporter.start()
    try:
        asyncio.run(_run(job, client, args.concurrency))
        ending = "done"
    except BulkStoppedError as stopped:
        ending = stop_line(stopped, tally, args.api_key_file, os.environ, job.host)
    except KeyboardInterrupt:
        # asyncio.run cancelled the job: reauthorise_many stopped every call it started.
        ending = "interrupted"
    finally:
        reporter.stop()
        sys.stderr.write(summary(tally, job, args.output, ending=ending) + "\n")
        sys.stderr.flush()
    return ending


def stop_line(
    stopped: BulkStoppedError,
    tally: Tally,
    api_key_file: str | None,
    environ: Mapping[str, str],
    host: str,
) -> str:
    """What stopped the job, the setting to check, and how many items were not sent.

    Args:
        stopped: the library's error.
        tally: the job's counts (the total, when the input could be counted).
        api_key_file: ``--api-key-file``, to name the credential's source.
        environ: the environment, to name the credential's source.
        host: the API's host.

    Returns:
        ``stopped: ...``, the start of the closing line.
    """
    setting = _credential_setting(api_key_file, environ)
    if stopped.reason == "authentication":
        what = f"{host} refused the credential (401): check {setting}"
    elif stopped.reason == "permission":
        what = (
            f"{host} refused 3 instances in a row (403): the credential may lack the rights "
            f"(check {setting})"
        )
    else:
        what = (
            f"{host} is unreachable ({stopped.first_error.__cause__ or stopped.first_error}): "
            f"check --base-url or {ENV_BASE_URL}, and the network"
        )
        what = " ".join(what.split())
    total = tally.remaining_total
    if total is not None:
        not_sent = f"{max(total - tally.done, 0)} items not sent"
    else:
        not_sent = f"{stopped.not_sent} items read and the rest of the input not sent"
    return f"stopped: {what}; {not_sent}"


def _credential_setting(api_key_file: str | None, environ: Mapping[str, str]) -> str:
    """Where the credential came from (same precedence as ``_config.credentials``)."""
    if api_key_file is not None:
        return "the API key in --api-key-file"
    if environ.get(ENV_API_KEY):
        return f"the API key in {ENV_API_KEY}"
    if environ.get(ENV_TOKEN):
        return f"the token in {ENV_TOKEN} (it may have expired)"
    return f"{ENV_USERNAME} and {ENV_PASSWORD} (and {ENV_LOGIN_URL})"


async def _run(job: BulkJob, client: PatchworksClient, concurrency: int) -> None:
    async with client:
        await job.run(client, concurrency)
