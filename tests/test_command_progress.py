"""Long commands show a progress bar (tqdm) on stderr on a terminal or when asked, never mixed
into stdout, and stay quiet otherwise; a command's output carries no task-framework chatter."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from moderation.models import FlaggedFingerprint
from tests import images
from tests.processes import manage

pytestmark = pytest.mark.django_db


class TTYStringIO(StringIO):
    def isatty(self) -> bool:
        return True


def run(name: str, *args, stderr=None, **options) -> tuple[str, str]:
    out, err = StringIO(), stderr or StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three photos and a file that is not one."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for seed in (1, 2, 3):
        (folder / f"p{seed}.jpg").write_bytes(images.encode(images.photo(seed)))
    (folder / "notes.jpg").write_text("not an image")
    return folder


def test_flag_images_on_a_terminal_shows_a_bar_over_every_file_on_stderr(folder):
    out, err = run("flag_images", str(folder), reason="wave", stderr=TTYStringIO())

    assert re.search(r"flag: 100%\|[^|]*\| 4/4 \[", err)
    assert "notes.jpg: skipped" in err
    assert "flag:" not in out
    assert out.splitlines()[-1] == "Flagged 3 new, 0 already banned, 1 skipped."


def test_flag_images_off_a_terminal_prints_no_bar_unless_asked(folder):
    _, quiet = run("flag_images", str(folder), reason="wave")
    FlaggedFingerprint.objects.all().update(active=False)  # flag the same files again
    _, asked = run("flag_images", str(folder), reason="wave", progress=True)

    assert "flag:" not in quiet and quiet.count("\n") == 1  # the skipped file only
    assert re.search(r"flag: 100%\|[^|]*\| 4/4 \[", asked)


def test_flag_images_at_verbosity_0_shows_no_bar_even_on_a_terminal(folder):
    _, err = run("flag_images", str(folder), reason="wave", verbosity=0, stderr=TTYStringIO())

    assert "flag:" not in err


def test_import_fingerprints_shows_a_bar_over_every_record_when_asked(folder, tmp_path):
    run("flag_images", str(folder), reason="wave")
    export = tmp_path / "banned.jsonl"
    run("export_fingerprints", "-o", str(export))

    out, err = run("import_fingerprints", str(export), dry_run=True, progress=True)

    assert re.search(r"import: 100%\|[^|]*\| 3/3 \[", err)
    assert out.splitlines() == ["Would import 0 fingerprints; 3 already banned."]


@pytest.mark.django_db(transaction=True)
def test_flag_images_prints_no_task_state_lines(folder):
    """The sweeps it queues run (immediate backend) without a "Task id=... state=..." line
    each: with the site's logging, as an operator runs it."""
    result = manage("flag_images", str(folder), "--reason", "wave", check=False)

    assert result.returncode == 0, result.stderr
    assert "Task id=" not in result.stderr + result.stdout
    [line] = result.stderr.splitlines()  # the file that is not an image, nothing else
    assert line.startswith(f"{folder / 'notes.jpg'}: skipped: ")
