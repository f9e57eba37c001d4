"""The banned set held once per host: memory of 5 workers, cold start, lookup, upload at scale.

    python benchmarks/shared_banned_set.py [--entries 10000000] [--workers 5] [--skip-upload]
        [--database-url postgres://postgres@127.0.0.1:5432/moderation_bench_shared]

Every figure comes from the code the site runs: ``banned_set.BannedSet`` in separate worker
processes (``python -c``, as gunicorn's sync workers: one process each, no shared heap) mapping
the snapshot that ``moderation/banned_snapshot.py`` writes.

- ``measure_memory``: a synthetic snapshot of N entries (N / 14 flags with every variant,
  clustered dHashes of ``benchmarks/lookup.py``, random pHashes) is built from arrays, not from
  database rows (the rows would take many minutes to insert at 10M, and what is measured is the
  mapping), and written for an empty SQLite database (change log empty, so it is consistent).
  One worker, then 5, start; each reports its proportional set size (PSS, ``/proc/<pid>/smaps``)
  of the banned set: the snapshot's mapped files plus the anonymous memory its loading added.
- ``measure_cold_start``: in those workers, from ``BannedSet.sync()`` (the process wants to
  answer) to the first answer: map, verify every array's CRC-32, replay the change log after
  the snapshot, look up. The page cache is warm (the snapshot was just written, as at deploy).
- ``measure_lookup``: median and p99 of ``BannedSet.check`` (change-log query included) and of
  the bare dHash index query at distance 10 (``benchmarks/lookup.py``'s figure) in a worker.
- ``measure_upload``: ``benchmarks/upload_latency.py`` (real rows in PostgreSQL, gunicorn with
  the production config, 4 users) with the web workers mapping a snapshot written by
  ``manage.py banned_snapshot``.

Each returns a dict; the CLI prints them and a summary line last. Not part of the test run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.lookup import clustered_hashes  # noqa: E402

FLAG_BITS = 1  # every synthetic entry has a pHash, the site's own distances

# A worker: Django set up on the SQLite database, then the banned set as a web worker loads it
# on its first upload. Prints one JSON line when loaded, then answers "measure" and "quit".
_WORKER = r"""
import json, os, sys, time
import django
django.setup()
import numpy as np
from moderation import banned_set
from moderation.hashing import Fingerprint
from moderation.matching import MatchRule

def anon_pss():
    for line in open(f"/proc/{os.getpid()}/smaps_rollup"):
        if line.startswith("Pss_Anon:"):
            return int(line.split()[1]) * 1024
    return 0

queries = json.loads(sys.argv[1])
rule = MatchRule.from_settings()
before = anon_pss()
banned = banned_set.current()
started = time.perf_counter()
banned.sync()
first = banned.check(Fingerprint(dhash=queries[0], phash=0), rule=rule)
cold = time.perf_counter() - started
print(json.dumps({"cold_start": cold, "anon": anon_pss() - before, "entries": len(banned),
                  "snapshot": banned.snapshot}), flush=True)
def timed(lookup):
    times = []
    for q in queries:
        t = time.perf_counter()
        lookup(q)
        times.append(time.perf_counter() - t)
    return times

for line in sys.stdin:
    if line.strip() == "measure":
        mapped = banned._index
        # The same index in private memory (as every process held it before), for comparison.
        from moderation.banned_index import BannedIndex
        private = BannedIndex.from_state({k: np.array(v) for k, v in mapped.state().items()})
        def fp(q):
            return Fingerprint(dhash=q, phash=q ^ 0x5555)
        answers = {
            "check": timed(lambda q: banned.check(fp(q), rule=rule)),
            "check_mapped": timed(lambda q: mapped.check(fp(q), rule)),
            "check_private": timed(lambda q: private.check(fp(q), rule)),
            "query": timed(lambda q: mapped._index.query_arrays(q, 10)),
            "query_private": timed(lambda q: private._index.query_arrays(q, 10)),
            "query_again": timed(lambda q: mapped._index.query_arrays(q, 10)),
        }
        del private
        print(json.dumps(answers), flush=True)
    else:
        break
"""


def _database(folder: Path) -> dict[str, str]:
    """Environment of an empty, migrated SQLite database in ``folder``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "MODERATION_SNAPSHOT_DIR": str(folder / "banned-set"),
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, check=True, cwd=ROOT
    )
    return env


def synthetic_arrays(entries: int) -> tuple[np.ndarray, ...]:
    """(keys, dhashes, phashes, flags) of entries // 14 flags with every variant."""
    from moderation.banned_index import KEYS_PER_FLAG

    flags = entries // KEYS_PER_FLAG
    n = flags * KEYS_PER_FLAG
    rng = np.random.default_rng(7)
    dhashes = clustered_hashes(n, rng)
    phashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    keys = np.arange(KEYS_PER_FLAG, n + KEYS_PER_FLAG, dtype=np.int64)  # flag ids from 1
    return keys, dhashes, phashes, np.full(n, FLAG_BITS, np.uint32)


def write_synthetic_snapshot(entries: int, env: dict[str, str]) -> dict:
    """Build the index of ``entries`` synthetic entries from arrays and write it as the
    snapshot the workers in ``env`` will use (in a child process: its memory is freed)."""
    code = f"""
import json, time, django
django.setup()
from benchmarks.shared_banned_set import synthetic_arrays
from moderation import banned_set
from moderation.banned_index import BannedIndex
started = time.perf_counter()
arrays = synthetic_arrays({entries})
generated = time.perf_counter()
index = BannedIndex()
index.build_arrays(*arrays)
built = time.perf_counter()
store = banned_set.snapshot_store()
with store.lock(blocking=True):
    snap = store.write(index.state(), change_id=0, last_change=[], entries=len(index))
done = time.perf_counter()
size = sum(p.stat().st_size for p in snap.path.iterdir())
# Queries as benchmarks/lookup.py makes them: half stored hashes with 0-4 bits flipped, half
# fresh hashes from the same distribution (innocent uploads).
import numpy as np
from benchmarks.lookup import clustered_hashes, make_queries
rng = np.random.default_rng(11)
queries = make_queries(arrays[1], clustered_hashes(len(arrays[1]), rng)[:1000], rng)
print(json.dumps({{"entries": len(index), "bytes": size, "nbytes": index.nbytes(),
    "generate_s": generated - started, "build_s": built - generated, "write_s": done - built,
    "queries": queries}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, cwd=ROOT, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _snapshot_pss(pid: int, folder: Path) -> int:
    """PSS of every mapping of a file under ``folder`` in process ``pid`` (bytes)."""
    total, inside = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header
            inside = len(fields) >= 6 and fields[5].startswith(str(folder))
        elif inside and fields[0] == "Pss:":
            total += int(fields[1]) * 1024
    return total


class Workers:
    """``count`` worker processes loading the banned set, started one after the other."""

    def __init__(self, count: int, env: dict[str, str], queries: list[int]) -> None:
        self.procs, self.loaded = [], []
        for _ in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER, json.dumps(queries)],
                env=env,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            self.loaded.append(json.loads(proc.stdout.readline()))

    def banned_set_pss(self, folder: Path) -> list[int]:
        return [
            _snapshot_pss(p.pid, folder) + loaded["anon"]
            for p, loaded in zip(self.procs, self.loaded)
        ]

    def measure(self, which: int = 0) -> dict:
        proc = self.procs[which]
        proc.stdin.write("measure\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    def stop(self) -> None:
        for proc in self.procs:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.wait(30)


def _setting_up(entries: int, folder: Path) -> tuple[dict[str, str], dict, list[int]]:
    env = _database(folder)
    written = write_synthetic_snapshot(entries, env)
    return env, written, written.pop("queries")


@functools.cache
def measure_all_local(entries: int, workers: int = 5) -> dict:
    """Memory (1 worker, then ``workers``), cold start and lookup: one snapshot, one run
    (cached: ``measure_memory``, ``measure_cold_start`` and ``measure_lookup`` share it)."""
    with tempfile.TemporaryDirectory(prefix="shared-banned-set-") as tmp:
        folder = Path(tmp)
        env, written, queries = _setting_up(entries, folder)
        snapshots = folder / "banned-set"
        one = Workers(1, env, queries)
        alone = one.banned_set_pss(snapshots)[0]
        lookups = one.measure()
        one.stop()
        many = Workers(workers, env, queries)
        together = many.banned_set_pss(snapshots)
        cold = [w["cold_start"] for w in many.loaded]
        many.stop()
    n = written["entries"]
    ms = {k: np.array(v) * 1e3 for k, v in lookups.items()}
    return {
        "entries": n,
        "snapshot_bytes": written["bytes"],
        "snapshot_bytes_per_entry": written["bytes"] / n,
        "private_copy_bytes_per_entry": written["nbytes"] / n,  # what each process held before
        "build_s": written["build_s"],
        "write_s": written["write_s"],
        "pss_one_worker": alone,
        "pss_workers": together,
        "workers": workers,
        "memory_ratio": sum(together) / alone,
        "pss_bytes_per_entry_host": sum(together) / n,
        "cold_start_s": cold,
        "cold_start_one_s": one.loaded[0]["cold_start"],
        "check_ms_median": float(np.median(ms["check"])),
        "check_ms_p99": float(np.percentile(ms["check"], 99)),
        "query_ms_median": float(np.median(ms["query"])),
        "query_ms_p99": float(np.percentile(ms["query"], 99)),
        "query_again_ms_median": float(np.median(ms["query_again"])),
        "query_private_ms_median": float(np.median(ms["query_private"])),
        "check_mapped_ms_median": float(np.median(ms["check_mapped"])),
        "check_private_ms_median": float(np.median(ms["check_private"])),
        "load_average": os.getloadavg()[0],
    }


def measure_memory(entries: int, workers: int = 5) -> dict:
    """Total PSS of the banned set across ``workers`` worker processes against one's."""
    r = measure_all_local(entries, workers)
    keys = ("entries", "pss_one_worker", "pss_workers", "memory_ratio", "pss_bytes_per_entry_host")
    return {k: r[k] for k in keys}


def measure_cold_start(entries: int, workers: int = 5) -> dict:
    """Seconds from ``BannedSet.sync()`` to the first answer (snapshot mapped): the slowest
    of the workers, each of them, and a worker started alone."""
    r = measure_all_local(entries, workers)
    return {
        "entries": r["entries"],
        "cold_start_s": max(r["cold_start_s"]),
        "cold_start_each_s": r["cold_start_s"],
        "cold_start_alone_s": r["cold_start_one_s"],
    }


def measure_lookup(entries: int, workers: int = 5) -> dict:
    """Lookup latency in a worker: ``BannedSet.check`` and the bare index query (r = 10),
    mapped and, for comparison, in private memory."""
    r = measure_all_local(entries, workers)
    keys = (
        "entries", "check_ms_median", "check_ms_p99", "check_mapped_ms_median",
        "check_private_ms_median", "query_ms_median", "query_ms_p99", "query_private_ms_median",
    )  # fmt: skip
    return {k: r[k] for k in keys}


def measure_upload(
    entries: int,
    requests: int = 200,
    concurrency: int = 4,
    database_url: str = "postgres://postgres@127.0.0.1:5432/moderation_bench_shared",
    pdq_list: int = 0,
) -> dict:
    """``benchmarks/upload_latency.py`` at ``entries`` banned entries, with the snapshot (and
    ``pdq_list`` PDQ entries in an enforced hash list)."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "upload_latency.py"),
            "--banned", str(entries),
            "--requests", str(requests),
            "--concurrency", str(concurrency),
            "--database-url", database_url,
            "--pdq-list", str(pdq_list),
            "--snapshot",
            "--json",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )  # fmt: skip
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--skip-upload", action="store_true")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/moderation_bench_shared"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    r = measure_all_local(args.entries, args.workers)
    mib = 1 << 20
    print(
        f"snapshot: {r['entries']:,} entries, {r['snapshot_bytes'] / mib:.0f} MiB on disk "
        f"({r['snapshot_bytes_per_entry']:.1f} B per entry; a private copy was "
        f"{r['private_copy_bytes_per_entry']:.1f} B per entry per process); built from arrays "
        f"in {r['build_s']:.1f} s, written in {r['write_s']:.1f} s"
    )
    print(
        f"memory: banned set PSS {r['pss_one_worker'] / mib:.0f} MiB in one worker; "
        f"{sum(r['pss_workers']) / mib:.0f} MiB in {r['workers']} together "
        f"({', '.join(f'{p / mib:.0f}' for p in r['pss_workers'])}): "
        f"{r['memory_ratio']:.2f}x one, {r['pss_bytes_per_entry_host']:.1f} B per entry per host"
    )
    print(
        "cold start (sync to first answer): "
        + ", ".join(f"{s:.2f}" for s in r["cold_start_s"])
        + " s"
    )
    print(
        f"lookup: BannedSet.check (rule radius, change-log query) median "
        f"{r['check_ms_median']:.3f} ms, p99 {r['check_ms_p99']:.3f} ms (without the query "
        f"{r['check_mapped_ms_median']:.3f} ms; in private memory "
        f"{r['check_private_ms_median']:.3f} ms); index query r=10 "
        f"median {r['query_ms_median']:.3f} ms (again {r['query_again_ms_median']:.3f} ms; "
        f"the same index in private memory {r['query_private_ms_median']:.3f} ms), "
        f"p99 {r['query_ms_p99']:.3f} ms; load average {r['load_average']:.1f}"
    )
    upload = None
    if not args.skip_upload:
        upload = measure_upload(args.entries, args.requests, database_url=args.database_url)
        print(
            f"upload: p99 {upload['p99_ms']:.0f} ms at {upload['concurrency']} concurrent, "
            f"CPU per upload {upload['web_cpu_ms']:.1f} ms (web) + {upload['db_cpu_ms']:.1f} ms "
            f"(PostgreSQL), {upload['throughput']:.1f}/s"
        )
    tail = f"; upload p99 {upload['p99_ms']:.0f} ms" if upload else ""
    print(
        f"shared banned set at {r['entries']:,} entries: memory {r['workers']} workers "
        f"{r['memory_ratio']:.2f}x one ({r['pss_bytes_per_entry_host']:.1f} B/entry/host); "
        f"cold start {max(r['cold_start_s']):.2f} s; lookup {r['query_ms_median']:.2f} ms "
        f"(check {r['check_ms_median']:.2f} ms)"
        f"{tail} ({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
