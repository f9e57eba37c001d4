"""Lookup API latency over HTTP: ``GET /api/m/raw_lookup`` of PDQ hashes against a running
server, timed from the client (connect, request, answer), one request at a time.

    python benchmarks/api_latency.py --base http://127.0.0.1:8765/api --token "$TOKEN" \\
        --hashes pdq-1m.txt --queries 1000

``--hashes``: the file of hex PDQ hashes the server's list was imported from. Half the queries
are one of them with 1-31 bits flipped (each must match: checked), half fresh random hashes (an
innocent upload's). The server's workers are warmed first (each loads the PDQ index on its
first lookup). Prints median, p95 and p99 per kind and, as the last line, the summary:
``raw PDQ lookup over HTTP against N entries: median X ms, p95 Y ms, p99 Z ms``.
Not part of the test run; its numbers are in docs/api.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import time
import urllib.parse


def flip(hex_value: str, bits: int, rng: random.Random) -> str:
    value = int(hex_value, 16)
    for bit in rng.sample(range(256), bits):
        value ^= 1 << bit
    return f"{value:064x}"


class Client:
    """One HTTP request at a time to the API (a new connection each: gunicorn's sync workers
    close it after every answer)."""

    def __init__(self, base: str, token: str) -> None:
        parts = urllib.parse.urlsplit(base)
        self.host, self.port, self.prefix = parts.hostname, parts.port or 80, parts.path
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> tuple[int, dict, float]:
        started = time.perf_counter()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        conn.request("GET", self.prefix + path, headers=self.headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        return response.status, json.loads(body), elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--hashes", required=True)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with open(args.hashes) as fh:
        listed = [line.split()[0] for line in fh if line.strip()]
    client = Client(args.base, args.token)

    status, body, _ = client.get("/m/index/status?signal_type=pdq")
    assert status == 200, body
    size = body["pdq"]["size"]
    print(f"index: {size} PDQ entries in force")

    warm = [client.get(f"/m/raw_lookup?signal_type=pdq&signal={flip(listed[0], 5, rng)}")[2]]
    warm += [client.get("/m/index/status")[2] for _ in range(args.warm)]
    print(f"warm-up: first lookup {warm[0] * 1000:.0f} ms, slowest {max(warm) * 1000:.0f} ms")

    times: dict[str, list[float]] = {"near": [], "random": []}
    for i in range(args.queries):
        if i % 2 == 0:
            kind, value = "near", flip(rng.choice(listed), rng.randint(1, 31), rng)
        else:
            kind, value = "random", f"{rng.getrandbits(256):064x}"
        status, body, elapsed = client.get(
            f"/m/raw_lookup?signal_type=pdq&signal={value}&include_distance=true"
        )
        assert status == 200, body
        if kind == "near":
            assert body["matches"], f"no match for a hash {value} near a listed one"
        times[kind].append(elapsed * 1000)

    for kind, values in times.items():
        print(
            f"{kind:>6}: n={len(values)} median {statistics.median(values):.2f} ms, "
            f"p95 {percentile(values, 0.95):.2f} ms, p99 {percentile(values, 0.99):.2f} ms"
        )
    every = times["near"] + times["random"]
    print(
        f"raw PDQ lookup over HTTP against {size} entries: "
        f"median {statistics.median(every):.2f} ms, p95 {percentile(every, 0.95):.2f} ms, "
        f"p99 {percentile(every, 0.99):.2f} ms"
    )


if __name__ == "__main__":
    main()
