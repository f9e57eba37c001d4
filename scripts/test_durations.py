"""Write tests/durations.json (seconds per test file on each database) from JUnit reports.

pytest-xdist hands the longest files out first with it (tests/scheduling.py). After a
``make test``:

    .venv/bin/python scripts/test_durations.py artifacts/junit-sqlite.xml \\
        artifacts/junit-postgresql.xml

Each report's database is taken from its name (``junit-<database>.xml``); a database whose
report is not given keeps its recorded numbers. Best from a run on a quiet machine: the
numbers only order the work, but a file slowed by something else running looks longer.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.scheduling import DURATIONS  # noqa: E402


def file_seconds(report: Path) -> dict[str, float]:
    """Seconds per test file in one JUnit report (setup, call and teardown of its tests)."""
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        # classname is the dotted module path, plus the class for tests in a class.
        parts = case.get("classname", "").split(".")
        module = [p for p in parts if not p[:1].isupper()]
        totals["/".join(module) + ".py"] += float(case.get("time") or 0)
    return {name: round(seconds, 1) for name, seconds in sorted(totals.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="junit-<database>.xml files")
    args = parser.parse_args(argv)
    try:
        recorded = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        recorded = {}
    for report in args.reports:
        match = re.fullmatch(r"junit-(\w+)\.xml", report.name)
        if not match:
            parser.error(f"{report}: expected a name like junit-sqlite.xml")
        recorded[match.group(1)] = file_seconds(report)
        print(f"{report}: {len(recorded[match.group(1)])} files, "
              f"{sum(recorded[match.group(1)].values()):.0f} s")  # fmt: skip
    DURATIONS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DURATIONS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
