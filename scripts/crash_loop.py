"""Kill the task worker many times at random points and check nothing is lost or done twice.

Runs the crash tests of ``tests/test_crash_safety.py`` for one kind, ``--iterations`` times,
on PostgreSQL (``DATABASE_URL`` must point at it; pytest-django creates ``test_<name>``), then
prints what happened in each iteration and a final summary line. Every iteration makes the
same checks as the suite: each matching copy down exactly once with one audit event, each owed
email sent exactly once, each row reindexed once.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mydb \\
        .venv/bin/python scripts/crash_loop.py --iterations 50 --kind sweep

``--profiles`` (stored profiles a sweep scans, default 3000) and ``--lease`` (seconds, default
2) set the scenario; ``--lease 30 --profiles 100000 --kill-at 0.1 --iterations 1`` is the
operator's (a production lease, killed 0.1 s into the sweep).

``pgrestart`` restarts PostgreSQL itself mid-sweep: a private cluster the test starts
(``tests/private_postgres.py``), ``pg_ctl restart -m fast`` and ``-m immediate`` in turn,
never the server ``DATABASE_URL`` names, which only provides the test database to copy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = {
    "sweep": "test_a_sweep_killed",
    "pgkill": "test_a_sweep_whose_database_connections_are_cut",
    "pgrestart": "test_a_sweep_through_a_postgresql_restart",
    "recheck": "test_a_recheck_killed",
    "digest": "test_a_digest_killed",
    "reindex": "test_a_reindex_killed",
}
# The field saying how long recovery took, per kind.
RECOVERY = {
    "sweep": "kill_to_all_down",
    "pgkill": "kill_to_all_down",
    "pgrestart": "kill_to_all_down",
    "recheck": "kill_to_done",
    "digest": "kill_to_all_sent",
    "reindex": "kill_to_done",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--profiles", type=int, default=3000)
    parser.add_argument("--lease", type=int, default=2)
    parser.add_argument(
        "--kill-at", type=float, help="seconds into a sweep to kill it (default: random)"
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error("set DATABASE_URL=postgres://... (the crash tests need PostgreSQL)")

    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as fh:
        report = Path(fh.name)
    env = {
        **os.environ,
        "CRASH_ITERATIONS": str(args.iterations),
        "CRASH_PROFILES": str(args.profiles),
        "CRASH_LEASE": str(args.lease),
        "CRASH_REPORT": str(report),
        "CRASH_KILL_AT": "" if args.kill_at is None else str(args.kill_at),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_crash_safety.py",
            "-q",
            "-p",
            "no:randomly",
            "-k",
            KINDS[args.kind],
            "--no-header",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    report.unlink(missing_ok=True)
    for row in rows:
        print(json.dumps(row))
    failed = args.iterations - len(rows)
    if proc.returncode != 0:
        print(proc.stdout[-6000:], file=sys.stderr)
    killed_mid_task = [r for r in rows if not r.get("finished_before_kill")]
    recovery = [r[RECOVERY[args.kind]] for r in killed_mid_task]
    extra = ""
    if args.kind in ("sweep", "pgkill", "pgrestart"):
        partial = sum(0 < r.get("down_before_kill", 0) < 5 for r in rows)
        orphans = sum(r["orphaned_public_files"] for r in rows)
        sweep = [r["last_run_seconds"] for r in rows]
        extra = (
            f" killed_between_takedowns={partial} orphaned_public_files={orphans}"
            f" sweep_seconds_median={statistics.median(sweep):.2f}"
            if sweep
            else ""
        )
    if args.kind == "pgrestart":
        modes = [r["mode"] for r in rows]
        retried = sum(r["attempts"] > 1 for r in rows)
        extra += (
            f" restarts_fast={modes.count('fast')} restarts_immediate={modes.count('immediate')}"
            f" sweeps_retried={retried}"
        )
    if args.kind == "digest":
        in_flight = sum(r["in_flight_at_kill"] for r in rows)
        resent = sum(r["retransmitted"] for r in rows)
        extra = f" in_flight_at_kill={in_flight} retransmitted_same_message_id={resent}"
    print(
        f"crash_loop kind={args.kind} iterations={args.iterations} passed={len(rows)} "
        f"failed={failed} killed_mid_task={len(killed_mid_task)} lease={args.lease}s "
        f"profiles={args.profiles} recovery_seconds_median="
        f"{statistics.median(recovery) if recovery else float('nan'):.2f} "
        f"recovery_seconds_max={max(recovery, default=float('nan')):.2f}{extra} "
        f"wall={elapsed:.0f}s"
    )
    return 0 if proc.returncode == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
