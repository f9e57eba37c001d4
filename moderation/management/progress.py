"""Progress bars for the long commands (tqdm, on stderr).

An operator running a multi-hour job must tell stuck from slow: a bar with the total, the rate
and the time left, on stderr so that stdout stays the command's result (one line per file, the
summary) for scripts and logs. Shown on a terminal only, unless ``--progress`` asks for it
(e.g. under a supervisor that keeps stderr); never at ``--verbosity 0``.
"""

from __future__ import annotations

import contextlib

from django.core.management.base import BaseCommand
from tqdm import tqdm


def add_progress_argument(parser) -> None:
    parser.add_argument(
        "--progress",
        action="store_true",
        help="Show the progress bar on stderr even when it is not a terminal.",
    )


def progress_bar(
    command: BaseCommand, *, total: int | None, desc: str, unit: str, options: dict
) -> tqdm:
    """A bar on the command's stderr; disabled (all calls do nothing) when it is not shown."""
    stream = command.stderr._out
    shown = options.get("verbosity", 1) >= 1 and (
        options.get("progress") or (hasattr(stream, "isatty") and stream.isatty())
    )
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=stream,
        disable=not shown,
        mininterval=0.5,
        dynamic_ncols=True,
    )


@contextlib.contextmanager
def above(bar: tqdm):
    """Write lines (to stdout) above the bar without tearing it."""
    if bar.disable:
        yield
        return
    bar.clear()
    try:
        yield
    finally:
        bar.refresh()
