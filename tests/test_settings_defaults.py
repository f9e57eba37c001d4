"""The moderation settings: declared once in moderation/conf.py, read through one accessor.

config/settings.py reads each from its environment variable with the declared default; app
code reads ``moderation_settings``, which follows ``override_settings`` and falls back to the
declared default; the system checks come from the declared kinds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import RequestFactory, override_settings

from config.middleware import RequestSizeLimitMiddleware
from moderation import ratelimit
from moderation.checks import check_moderation_settings
from moderation.conf import DECLARATIONS, DEFAULTS, PREFIX, SETTINGS, Kind, moderation_settings
from moderation.models import HashList

ROOT = Path(__file__).resolve().parent.parent

# A value each checked kind refuses, and the error it gives (ids and messages as they were
# before the declarations existed: operators and tests match on them).
OUT_OF_RANGE = {
    Kind.BITS: (
        65,
        "moderation.E001",
        "{name} must be an integer from 0 to 64 (bits of a 64-bit hash).",
    ),
    Kind.POSITIVE: (0, "moderation.E002", "{name} must be a positive integer."),
    Kind.OFF_OR_MORE: (
        -1,
        "moderation.E005",
        "{name} must be an integer, 0 or more (0 turns it off).",
    ),
    Kind.PERCENT: (
        101,
        "moderation.E007",
        "{name} must be an integer from 0 to 100 (a percentage).",
    ),
}
CHECKED = [setting for setting in DECLARATIONS if setting.kind in OUT_OF_RANGE]

# Files other branches are rewriting: still read ``settings.MODERATION_*`` until merged.
NOT_YET_SWITCHED: set[str] = set()


def config_settings(env: dict[str, str]) -> dict[str, object]:
    """config/settings.py's MODERATION_* values, loaded in a fresh process with ``env`` only."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MODERATION_", "DJANGO_"))}
    code = (
        "import json, config.settings as s; "
        "print(json.dumps({n: getattr(s, n) for n in dir(s) if n.startswith('MODERATION_')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def unconfigured():
    return config_settings({})


@contextmanager
def without_moderation_settings():
    """``override_settings`` with every declared setting deleted, as in a project of its own."""
    with override_settings():
        for setting in DECLARATIONS:
            delattr(django_settings, setting.name)
        yield


def test_every_declared_setting_is_in_config_settings_with_its_declared_default(unconfigured):
    assert {name: unconfigured.get(name) for name in SETTINGS} == DEFAULTS


def test_config_settings_has_no_moderation_setting_that_is_not_declared(unconfigured):
    assert set(unconfigured) == set(SETTINGS)


def test_each_setting_is_read_from_the_environment_variable_of_its_name():
    env = {
        name: "https://moderation.example" if s.kind is Kind.STR else str(s.default + 1)
        for name, s in SETTINGS.items()
    }
    loaded = config_settings(env)
    expected = {
        name: value if SETTINGS[name].kind is Kind.STR else int(value)
        for name, value in env.items()
    }
    assert {name: loaded[name] for name in SETTINGS} == expected


def test_declared_names_carry_the_prefix_and_defaults_match_their_kind():
    for setting in DECLARATIONS:
        assert setting.name.startswith(PREFIX)
        assert setting.description
        assert isinstance(setting.default, str if setting.kind is Kind.STR else int)


@pytest.mark.parametrize("setting", DECLARATIONS, ids=lambda s: s.name)
def test_the_accessor_falls_back_to_the_declared_default_when_the_setting_is_absent(setting):
    attr = setting.name.removeprefix(PREFIX)
    with override_settings():
        delattr(django_settings, setting.name)
        assert not hasattr(django_settings, setting.name)
        assert getattr(moderation_settings, attr) == setting.default


@pytest.mark.parametrize("setting", DECLARATIONS, ids=lambda s: s.name)
def test_the_accessor_honours_override_settings_at_each_access(setting):
    attr = setting.name.removeprefix(PREFIX)
    other = "https://other.example" if setting.kind is Kind.STR else 7
    before = getattr(moderation_settings, attr)
    with override_settings(**{setting.name: other}):
        assert getattr(moderation_settings, attr) == other
    assert getattr(moderation_settings, attr) == before == getattr(django_settings, setting.name)


def test_the_accessor_refuses_a_name_that_is_not_declared():
    with pytest.raises(AttributeError, match="not a moderation setting"):
        moderation_settings.MAX_DISTANCES  # noqa: B018
    with pytest.raises(AttributeError):
        moderation_settings.MODERATION_MAX_DISTANCE  # noqa: B018


def test_the_accessor_is_read_only():
    with pytest.raises(AttributeError, match="read-only"):
        moderation_settings.MAX_DISTANCE = 3


def test_the_accessor_lists_every_declared_setting():
    assert sorted(dir(moderation_settings)) == sorted(n.removeprefix(PREFIX) for n in SETTINGS)


@pytest.mark.parametrize("setting", CHECKED, ids=lambda s: s.name)
def test_checks_report_an_out_of_range_value_with_the_same_id_and_message(setting):
    value, error_id, message = OUT_OF_RANGE[setting.kind]
    for bad in (value, True, str(setting.default), None):
        with override_settings(**{setting.name: bad}):
            errors = [e for e in check_moderation_settings() if e.obj == f"settings.{setting.name}"]
        assert [(e.id, e.msg) for e in errors] == [(error_id, message.format(name=setting.name))]
        if setting.kind is Kind.BITS:
            assert errors[0].hint == (
                f"The default is {setting.default}; see docs/matching.md, 'What it catches'."
            )
        else:
            assert errors[0].hint is None


def test_unchecked_settings_are_not_checked():
    unchecked = [s for s in DECLARATIONS if s.kind not in OUT_OF_RANGE]
    assert {s.name for s in unchecked} == {
        "MODERATION_MAX_REQUEST_BYTES",
        "MODERATION_SITE_URL",
        "MODERATION_SNAPSHOT_DIR",
    }
    with override_settings(**{s.name: None for s in unchecked}):
        assert check_moderation_settings() == []


def test_checks_pass_when_the_project_sets_no_moderation_setting():
    with without_moderation_settings():
        assert check_moderation_settings() == []


def test_switched_app_code_runs_when_the_project_sets_no_moderation_setting(rf: RequestFactory):
    with without_moderation_settings():
        assert HashList(max_distance=None).effective_distance == DEFAULTS["MODERATION_MAX_DISTANCE"]
        request = rf.get("/", HTTP_X_FORWARDED_FOR="203.0.113.9", REMOTE_ADDR="10.0.0.2")
        assert ratelimit.client_ip(request) == "10.0.0.2"  # 0 trusted proxies by default
        big = rf.post("/", data=b"x", content_type="application/octet-stream")
        big.META["CONTENT_LENGTH"] = str(DEFAULTS["MODERATION_MAX_REQUEST_BYTES"] + 1)
        response = RequestSizeLimitMiddleware(lambda request: None)(big)
        assert response.status_code == 413


def test_app_code_reads_moderation_settings_only_through_moderation_conf():
    direct = re.compile(r"\bsettings\.MODERATION_|getattr\(\s*settings,\s*[\"']MODERATION_")
    readers = set()
    for folder in ("config", "moderation", "profiles"):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if "migrations" in path.parts or relative in (
                "config/settings.py",
                "moderation/conf.py",
            ):
                continue
            if direct.search(path.read_text()):
                readers.add(relative)
    assert readers <= NOT_YET_SWITCHED
