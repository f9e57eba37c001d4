"""Finding the picture inside a frame: padding, letterbox bars, a screenshot's blank space.

A copy of a banned picture is often not cut but *framed*: padded to a square, letterboxed, or
screenshotted on a phone, where it sits between a status bar, blank space and a few lines of
text. Every dHash cell then sees the frame as well as the picture, and the whole upload lands
far from every stored variant (measured: padding 10% was caught 0.16, screenshots 0.00). Cut
back to the picture, the copy is the flagged picture again.

A frame is told apart from a picture by its rows and columns being *flat*: the blank margin of
a screenshot, a white or black pad, is one shade across (a little JPEG noise aside), while a
row through a photograph is not. So the picture is taken to be the longest run of non-flat rows,
and within it the longest run of non-flat columns. A status bar or a line of text is a short
run of its own, separated from the picture by blank rows, so the longest run skips it.

Nothing here decides anything: ``hashing.check_fingerprints`` fingerprints the box it returns
(when there is one) and the upload path compares that fingerprint like the whole upload's. An
upload with no flat margins -- nearly every photo -- costs one pass over a small copy of its
pixels and no second lookup. The thresholds below are measured with ``evaluate_matching``
(docs/matching.md, "What it catches").
"""

from __future__ import annotations

import numpy as np

# A row or column is flat when its darkest and lightest samples are at most this many grey
# levels apart. JPEG noise in a blank margin stays within a few levels at q60 and above.
FLAT_RANGE = 10
# Margins all thinner than this (a fraction of the side) are no frame: nothing to cut.
MIN_MARGIN = 0.02
# The picture must fill at least this much of each side: a phone screenshot of a landscape
# photo shows it over ~38% of the screen's height, and a box smaller than a quarter of the
# image is more likely a patch of texture than the picture.
MIN_PICTURE = 0.25
# The search runs on a copy at most this many samples on its longer side (a 4x box
# reduction of a 2 MP upload): the box only needs to be right to a few full-size pixels, the
# 9x8 dHash grid cannot see less.
SEARCH_SIDE = 512


def _longest_run(busy: np.ndarray) -> tuple[int, int]:
    """(start, stop) of the longest run of True in ``busy``; (0, 0) when there is none."""
    edges = np.diff(np.concatenate(([0], busy.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not len(starts):
        return 0, 0
    longest = int(np.argmax(stops - starts))
    return int(starts[longest]), int(stops[longest])


def _busy(lines: np.ndarray) -> np.ndarray:
    """Which rows of ``lines`` (2-D, uint8) are not flat."""
    return (lines.max(axis=1).astype(np.int16) - lines.min(axis=1)) > FLAT_RANGE


def picture_box(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box (left, top, right, bottom; in ``grey``'s pixels) of the picture inside a flat
    frame, or None when there is no frame to cut or no picture big enough inside it."""
    height, width = grey.shape
    top, bottom = _longest_run(_busy(grey))
    if bottom - top < MIN_PICTURE * height:
        return None
    left, right = _longest_run(_busy(grey[top:bottom].T))
    if right - left < MIN_PICTURE * width:
        return None
    margins = (left / width, top / height, (width - right) / width, (height - bottom) / height)
    if max(margins) < MIN_MARGIN:
        return None
    return left, top, right, bottom
