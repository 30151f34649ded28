"""Benchmarks of patchworks-async, run with one command: ``python -m benchmarks``.

``--quick`` is the smoke run ``.ci/run`` uses (every part, tiny, under 30 s: it
checks that they work, not how fast). ``--only overhead|cpu|limiter|bulk`` runs
one part. Every part talks to a server in a separate process on 127.0.0.1
(``benchmarks._serve``: FakePatchworks with recording off, plus a small control
app for arrival times), so the client's CPU is not shared with it. The results
go to stdout as markdown tables and to ``benchmarks/results/latest.json``; the
bulk run's arrivals are drawn in ``benchmarks/results/requests_per_second.png``.
"""
