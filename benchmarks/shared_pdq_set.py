"""The hash lists' PDQ entries held once per host: cold start and memory of worker processes.

    python benchmarks/shared_pdq_set.py [--entries 1000000] [--workers 5]
        [--database-url postgres://postgres@127.0.0.1:5432/moderation_bench_pdq]

Real rows: when the database holds fewer active PDQ entries than ``--entries``, the missing
ones are imported as random PDQ lines with ``manage.py import_hashes`` (about 30 s per million
on PostgreSQL). Then, with the code the site runs (``signal_set.SignalSet`` in separate worker
processes, ``python -c``, as gunicorn's sync workers: one process each, no shared heap):

- ``manage.py banned_snapshot`` writes the PDQ snapshot from the database (timed), in a
  temporary ``MODERATION_SNAPSHOT_DIR``;
- cold start, from the worker wanting to answer to its first answer (``signals.lookup``:
  sync, query, the entries' rows): one worker alone from the database
  (``MODERATION_SNAPSHOT_DIR`` empty: as before), one alone from the snapshot (the first maps
  and checks every CRC-32, the next trusts the check: ``banned_snapshot._verified_before``),
  then ``--workers`` starting at once, from the database and from the snapshot (gunicorn's
  workers after a deploy, each taking its first upload);
- proportional set size (PSS, ``/proc/<pid>/smaps``) of the PDQ entries in each worker: the
  snapshot's mapped files plus the anonymous memory the load added; ``--workers`` together
  against one alone.

Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.shared_banned_set import _snapshot_pss  # noqa: E402

# A worker: Django set up, then the PDQ entries as a web worker loads them on its first
# upload's lookup. Prints one JSON line when it has answered, then waits for "quit".
_WORKER = r"""
import json, os, sys, time
import django
django.setup()
from moderation import signal_set, signals

def anon_pss():
    for line in open(f"/proc/{os.getpid()}/smaps_rollup"):
        if line.startswith("Pss_Anon:"):
            return int(line.split()[1]) * 1024
    return 0

queries = json.loads(sys.argv[1])
before = anon_pss()
found = signal_set.current()
started = time.perf_counter()
signals.lookup("pdq", queries[0])
cold = time.perf_counter() - started
times = []
for q in queries[1:]:
    t = time.perf_counter()
    signals.lookup("pdq", q)
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"cold_start": cold, "anon": anon_pss() - before, "entries": len(found),
                  "snapshot": found.snapshot, "lookup_median": times[len(times) // 2]}),
      flush=True)
sys.stdin.readline()
"""


def _manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def _active_pdq(env: dict[str, str]) -> int:
    code = (
        "import django; django.setup()\n"
        "from moderation.models import SignalEntry, SignalType\n"
        "print(SignalEntry.objects.active().filter(signal_type=SignalType.PDQ).count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return int(out.stdout.split()[-1])


def ensure_entries(env: dict[str, str], entries: int, folder: Path) -> dict:
    """At least ``entries`` active PDQ entries in the database (imported when missing)."""
    _manage(env, "migrate", "-v0")
    have = _active_pdq(env)
    result = {"entries_before": have, "import_s": None}
    if have < entries:
        lines = folder / "pdq.txt"
        with open(lines, "w") as f:
            for _ in range(entries - have):
                f.write(secrets.token_hex(32) + "\n")
        started = time.perf_counter()
        _manage(
            env, "import_hashes", str(lines), "--list", "bench-pdq", "--source", f"bench-{have}"
        )
        result["import_s"] = time.perf_counter() - started
    result["entries"] = _active_pdq(env)
    return result


def start_workers(count: int, env: dict[str, str], folder: Path | None) -> list[dict]:
    """``count`` workers started at once; each one's cold start, entries and PSS (bytes)."""
    queries = [secrets.token_hex(32) for _ in range(101)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, json.dumps(queries)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    results = []
    for proc in procs:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {proc.pid} exited: {proc.wait()}")
        results.append(json.loads(line))
    for proc, result in zip(procs, results, strict=True):
        mapped = _snapshot_pss(proc.pid, folder) if folder is not None else 0
        result["pss"] = mapped + result["anon"]
        result["pss_mapped"] = mapped
    for proc in procs:
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(60)
    return results


def measure(entries: int, workers: int, database_url: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="shared-pdq-set-") as tmp:
        folder = Path(tmp)
        snapshots = folder / "snapshots"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "MODERATION_SNAPSHOT_DIR": str(snapshots),
            "PYTHONPATH": str(ROOT),
        }
        no_snapshot = {**env, "MODERATION_SNAPSHOT_DIR": ""}
        r = ensure_entries(env, entries, folder)
        started = time.perf_counter()
        r["command_output"] = _manage(env, "banned_snapshot").strip().splitlines()
        r["write_s"] = time.perf_counter() - started
        pdq_folder = snapshots / "pdq"
        current = os.readlink(pdq_folder / "current")
        r["snapshot_bytes"] = sum(p.stat().st_size for p in (pdq_folder / current).iterdir())
        r["alone_database"] = start_workers(1, no_snapshot, None)[0]
        # The first mapping process of the boot checks every CRC-32; later ones trust it.
        (pdq_folder / current / "verified.json").unlink(missing_ok=True)
        r["alone_snapshot_first"] = start_workers(1, env, pdq_folder)[0]
        r["alone_snapshot"] = start_workers(1, env, pdq_folder)[0]
        r["together_database"] = start_workers(workers, no_snapshot, None)
        r["together_snapshot"] = start_workers(workers, env, pdq_folder)
        r["workers"] = workers
        r["load_average"] = os.getloadavg()[0]
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/moderation_bench_pdq"
    )
    parser.add_argument("--json", action="store_true", help="Also print the raw figures.")
    args = parser.parse_args()
    started = time.perf_counter()
    r = measure(args.entries, args.workers, args.database_url)
    mib = 1 << 20
    n = r["entries"]
    if r["import_s"] is not None:
        print(f"imported {n - r['entries_before']:,} PDQ lines in {r['import_s']:.0f} s")
    print(f"banned_snapshot in {r['write_s']:.1f} s:")
    for line in r["command_output"]:
        print(f"  {line}")
    print(f"PDQ snapshot: {n:,} entries, {r['snapshot_bytes'] / mib:.0f} MiB on disk")

    def row(label: str, found: list[dict]) -> None:
        cold = ", ".join(f"{w['cold_start']:.2f}" for w in found)
        pss = [w["pss"] for w in found]
        print(
            f"{label}: cold start {cold} s; PSS {sum(pss) / mib:.0f} MiB "
            f"({', '.join(f'{p / mib:.0f}' for p in pss)}); lookup median "
            f"{found[0]['lookup_median'] * 1e3:.2f} ms; snapshot {found[0]['snapshot']}"
        )

    row("1 worker, from the database", [r["alone_database"]])
    row("1 worker, from the snapshot (first: CRC check)", [r["alone_snapshot_first"]])
    row("1 worker, from the snapshot (check trusted)", [r["alone_snapshot"]])
    row(f"{r['workers']} workers at once, from the database", r["together_database"])
    row(f"{r['workers']} workers at once, from the snapshot", r["together_snapshot"])
    db_pss = sum(w["pss"] for w in r["together_database"])
    snap_pss = sum(w["pss"] for w in r["together_snapshot"])
    print(
        f"shared PDQ entries at {n:,}: {r['workers']} workers' PSS {snap_pss / mib:.0f} MiB "
        f"({snap_pss / r['alone_snapshot']['pss']:.2f}x one) against {db_pss / mib:.0f} MiB "
        f"from the database ({db_pss / r['alone_database']['pss']:.2f}x one); slowest cold "
        f"start {max(w['cold_start'] for w in r['together_snapshot']):.2f} s against "
        f"{max(w['cold_start'] for w in r['together_database']):.2f} s; load average "
        f"{r['load_average']:.1f} ({time.perf_counter() - started:.0f} s)"
    )
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
