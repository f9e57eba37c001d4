"""Every figure of the site at scale, in one run, ending with one comparable line.

    python benchmarks/scale.py [--entries N] [--stored M] [--reindex-photos K] [--skip ...]

Runs, each in a process of its own (each benchmark sets up Django against its own database):

- ``shared_banned_set.measure_all_local(N)``: the banned set's PSS across 5 worker processes
  against one, the cold start of a worker from the host's snapshot, and the lookup latency,
  with ``N`` banned entries (default 10M, about 715k flags);
- ``upload_latency.py --banned N --snapshot [--pdq-list M]``: upload p99 at 4 concurrent and
  CPU per upload (with ``--pdq-list M``, also against M PDQ entries of a partner's list);
- ``sweep.measure_sweep(M)``: the sweep after one flag with ``M`` stored photos (default 10M)
  on PostgreSQL, through the index of stored photos;
- ``reindex_workers.measure_reindex(K, 1 and 2)``: reindex throughput with one and two real
  task workers on ``K`` real image files (default 3000: every row is decoded, so this size is
  about throughput, not about the size of the site).

The last line reads ``scale: memory 5 workers X.XX× one; cold start S.SS s; lookup L.LL ms;
sweep T.TT s at M stored; reindex 2 workers R.RR×; upload p99 P ms``. A part that was skipped
or failed shows ``n/a`` there, and the reason is printed above. The figures and their targets
are discussed in docs/performance.md ("At scale"); the machine's load is printed with them,
since on two shared cores it moves every number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
PARTS = ("memory", "upload", "sweep", "reindex")


def _run(module: str, call: str) -> dict:
    """``call`` (an expression using ``module``) evaluated in a new Python process; its value,
    a dict, comes back as the last line of its output."""
    code = (
        "import json, sys; "
        f"sys.path[:0] = [{str(BENCHMARKS)!r}, {str(ROOT)!r}]; "
        f"import {module}; "
        f"print(json.dumps({call}, default=str))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    sys.stderr.write(proc.stderr[-4000:] if proc.returncode else "")
    if proc.returncode:
        raise RuntimeError(f"{module}: {call} exited with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _timed(label: str, what):
    started = time.perf_counter()
    print(f"--- {label} (load average {os.getloadavg()[0]:.1f})", flush=True)
    try:
        result = what()
    except Exception as exc:  # a failed part is reported, the others still run
        print(f"    {label} failed: {exc}", flush=True)
        return None
    print(f"    {json.dumps(result, default=str)}", flush=True)
    print(f"    took {time.perf_counter() - started:.0f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000_000, help="banned entries")
    parser.add_argument("--stored", type=int, default=10_000_000, help="stored photos")
    parser.add_argument("--reindex-photos", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=200, help="uploads timed")
    parser.add_argument(
        "--pdq-list", type=int, default=0, help="PDQ entries in a hash list during the upload"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    args = parser.parse_args()
    n, m = args.entries, args.stored

    shared = sweep = upload = None
    one = two = None
    if "memory" not in args.skip:
        shared = _timed(
            f"banned set at {n:,} entries: memory, cold start, lookup",
            lambda: _run("shared_banned_set", f"shared_banned_set.measure_all_local({n})"),
        )
    if "upload" not in args.skip:
        upload = _timed(
            f"upload latency at {n:,} entries",
            lambda: _run(
                "shared_banned_set",
                f"shared_banned_set.measure_upload({n}, requests={args.requests}, "
                f"pdq_list={args.pdq_list})",
            ),
        )
    if "sweep" not in args.skip:
        sweep = _timed(
            f"sweep after one flag at {m:,} stored photos",
            lambda: _run(
                "sweep", f"sweep.measure_sweep({m}, full_pass_max=0, backfill_max=0, reuse=True)"
            ),
        )
    if "reindex" not in args.skip:
        k = args.reindex_photos
        one = _timed(
            f"reindex of {k:,} photos, one worker",
            lambda: _run("reindex_workers", f"reindex_workers.measure_reindex({k}, 1)"),
        )
        two = _timed(
            f"reindex of {k:,} photos, two workers",
            lambda: _run("reindex_workers", f"reindex_workers.measure_reindex({k}, 2)"),
        )

    def figure(value, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    memory = shared and shared["memory_ratio"]
    cold = shared and max(shared["cold_start_s"])
    lookup = shared and shared["check_ms_median"]
    swept = sweep and sweep["sweep_s"]
    ratio = one and two and two["rows_per_s"] / one["rows_per_s"]
    p99 = upload and upload.get("p99_ms")
    print(
        f"scale: memory 5 workers {figure(memory, '.2f')}× one; cold start "
        f"{figure(cold, '.2f')} s; lookup {figure(lookup, '.2f')} ms; sweep "
        f"{figure(swept, '.2f')} s at {m:,} stored; reindex 2 workers {figure(ratio, '.2f')}×; "
        f"upload p99 {figure(p99, '.0f')} ms"
    )


if __name__ == "__main__":
    main()
