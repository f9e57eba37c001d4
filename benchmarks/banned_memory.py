"""Memory of the banned set per flagged image: ``BannedIndex.nbytes()`` at about 1M entries.

    python benchmarks/banned_memory.py [--entries 1000000]

Builds the in-memory banned set the way a process holds it (index + confirmation data) from
N / KEYS_PER_FLAG flags with every variant, dHashes from the clustered generator of
``benchmarks/lookup.py``, random pHashes, and prints bytes per flag and per entry.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from benchmarks.lookup import clustered_hashes  # noqa: E402
from moderation import banned_index  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    per_flag = banned_index.KEYS_PER_FLAG
    flags = args.entries // per_flag
    rng = np.random.default_rng(7)
    dhashes = rng.permutation(np.unique(clustered_hashes(args.entries * 2, rng)))
    phashes = rng.integers(0, 2**64, size=flags * per_flag, dtype=np.uint64)
    index = banned_index.BannedIndex()
    policy = banned_index.list_policy(None, False)
    index.build(
        (
            banned_index.entry_key(flag, variant),
            int(dhashes[flag * per_flag + variant]),
            int(phashes[flag * per_flag + variant]),
            False,
            policy,
        )
        for flag in range(flags)
        for variant in range(per_flag)
    )
    entries = len(index)
    print(
        f"{flags:,} flags x {per_flag} variants = {entries:,} entries: "
        f"{index.nbytes() / flags:.0f} B per flag; per entry {index.nbytes() / entries:.1f} B "
        f"(index {index._index.nbytes() / entries:.1f} B + confirmation data "
        f"{index._data.nbytes() / entries:.1f} B + the upload cuts' own indexes "
        f"{sum(i.nbytes() for i in index._cut_indexes.values()) / entries:.1f} B)"
    )


if __name__ == "__main__":
    main()
