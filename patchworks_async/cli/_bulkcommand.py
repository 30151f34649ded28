"""``bulk-reauthorise`` from the command line: open the files, run the job, sum it up."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from .._client import PatchworksClient
from ._bulkio import InputReader, OutputFile, count_records, input_format
from ._bulkrun import BulkJob, summary
from ._codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from ._config import InputError
from ._progress import Tally, make_reporter


def run_bulk_command(args: argparse.Namespace, client: PatchworksClient) -> int:
    """Run the job; returns 0 when every line succeeded, 1 when one failed, 130 on Ctrl-C.

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
        if reader.unknown_columns:
            names = ", ".join(reader.unknown_columns)
            sys.stderr.write(
                f"note: column(s) {names} are not reauthorise fields; they are sent as they are\n"
            )
        tally = Tally(count_records(args.input, fmt))
        reporter = make_reporter(
            args.progress, tally, description="reauthorising", interval=args.progress_interval
        )
        job = BulkJob(reader, output, tally, reporter)
        ending = "stopped by an error"
        reporter.start()
        try:
            asyncio.run(_run(job, client, args.concurrency))
            ending = "done"
        except KeyboardInterrupt:
            # asyncio.run cancelled the job: reauthorise_many stopped every call it started.
            ending = "interrupted"
        finally:
            reporter.stop()
            sys.stderr.write(summary(tally, job, args.output, ending=ending) + "\n")
            sys.stderr.flush()
    if ending == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed else EXIT_OK


async def _run(job: BulkJob, client: PatchworksClient, concurrency: int) -> None:
    async with client:
        await job.run(client, concurrency)
