"""shoal's benchmarks (``make bench`` = ``python -m bench``; see docs/benchmarks.md).

Each benchmark module exposes ``NAME``, ``TITLE`` and ``async def run(ctx) -> Report``; the
harness (``bench.harness``) times, summarises and writes ``bench/results/<name>.json`` and
regenerates ``bench/results/README.md``. Everything runs against 127.0.0.1 only.
"""
