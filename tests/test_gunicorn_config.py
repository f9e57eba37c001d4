"""config/gunicorn.conf.py: how many sync workers a host runs when WEB_CONCURRENCY is not set."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parent.parent / "config" / "gunicorn.conf.py"


def _loaded(monkeypatch, **environ: str) -> dict:
    """The config file's names, read as gunicorn reads them, under ``environ``."""
    for name in ("WEB_CONCURRENCY", "MODERATION_S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG))


def _cores() -> int:
    return (getattr(os, "process_cpu_count", None) or os.cpu_count)() or 1


def test_a_host_keeping_photos_on_local_disk_runs_one_worker_per_core(monkeypatch):
    assert _loaded(monkeypatch)["workers"] == _cores()


def test_a_host_storing_photos_in_s3_runs_two_workers_per_core_and_one(monkeypatch):
    assert _loaded(monkeypatch, MODERATION_S3_BUCKET="photos")["workers"] == 2 * _cores() + 1


@pytest.mark.parametrize("bucket", ["", "photos"])
def test_web_concurrency_sets_the_workers_whatever_the_storage(monkeypatch, bucket):
    assert _loaded(monkeypatch, WEB_CONCURRENCY="7", MODERATION_S3_BUCKET=bucket)["workers"] == 7


def test_the_default_follows_the_cores_it_is_given(monkeypatch):
    default_workers = _loaded(monkeypatch)["default_workers"]
    assert default_workers({}, 8) == 8
    assert default_workers({"MODERATION_S3_BUCKET": " "}, 8) == 8  # blank: no S3
    assert default_workers({"MODERATION_S3_BUCKET": "photos"}, 8) == 17
