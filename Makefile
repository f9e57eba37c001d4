# Developer entry points. The README's two commands are `make run` and `make test`.
#
#   make run            venv + requirements, migrate, demo moderator, dev server on 127.0.0.1:8000
#   make test           venv + dev requirements, whole suite on SQLite and, at the same time,
#                       the tests that touch the database on PostgreSQL; each run spread over
#                       TEST_WORKERS processes (pytest-xdist): 8.7 min on the quiet 2-core machine.
#   make test-sqlite    whole suite on SQLite only
#   make test-postgres  whole suite on PostgreSQL only (fails if it is not reachable)
#   make lint           ruff check
#   make bench          benchmarks/run_all.py, or `python -m benchmarks`, or each benchmarks/*.py
#   make clean          caches and test reports;  make distclean: also .venv and local data
#
# Overridable (command line or environment):
#   PYTHON=/path/to/python3.12   interpreter used to create the venv (default: scripts/find-python)
#   VENV=.venv                   where the virtualenv lives
#   DATABASE_URL_PG=postgres://postgres@127.0.0.1:5432/moderation   the PostgreSQL test run
#                                (pytest-django creates and drops test_<name>, e.g. test_moderation)
#   PYTEST_ARGS='-k upload -x'   extra pytest arguments, for every pytest run
#   TEST_WORKERS=2               worker processes per pytest run (0: one process, no xdist)
#   RUNSERVER_ADDR=127.0.0.1:8000
#   CI=true                      an unreachable PostgreSQL fails `make test` instead of being skipped
#
# Plain POSIX sh recipes, GNU make 3.81+ (no .ONESHELL), so it works on Linux and macOS alike.

SHELL := /bin/sh
.DEFAULT_GOAL := help

PYTHON ?=
VENV ?= .venv
PY := $(VENV)/bin/python
DATABASE_URL_PG ?= postgres://postgres@127.0.0.1:5432/moderation
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
BENCH_ARGS ?=
RUNSERVER_ADDR ?= 127.0.0.1:8000
ARTIFACTS ?= artifacts

# Stamp files inside the venv: they hold a checksum of the requirement files (and the venv's
# Python version), so pip runs only when those changed -- not on every `make run`.
STAMP_RUN := $(VENV)/.stamp-requirements
STAMP_DEV := $(VENV)/.stamp-requirements-dev

.PHONY: help venv deps dev-deps run test test-sqlite test-postgres lint bench clean distclean

help:
	@echo "make run            install into $(VENV) if needed, migrate, create the demo moderator,"
	@echo "                    serve on http://$(RUNSERVER_ADDR)/"
	@echo "make test           all tests on SQLite and, at the same time, the database ones on"
	@echo "                    PostgreSQL ($(DATABASE_URL_PG)), $(TEST_WORKERS) workers each"
	@echo "make test-sqlite    all tests on SQLite only"
	@echo "make test-postgres  all tests on PostgreSQL only"
	@echo "make lint           ruff check"
	@echo "make bench          run the benchmarks"
	@echo "make clean          remove caches and test reports (distclean: also $(VENV) and local data)"

# ---------------------------------------------------------------------------------------------
# Virtualenv and requirements

# Create $(VENV) when it is missing, broken, or its Python is older than 3.12.
venv:
	@if [ -x "$(PY)" ] && "$(PY)" -c 'import sys, pip; sys.exit(sys.version_info < (3, 12))' \
	      >/dev/null 2>&1; then \
	    exit 0; \
	fi; \
	if [ -e "$(VENV)" ]; then \
	    if [ ! -f "$(VENV)/pyvenv.cfg" ]; then \
	        echo "$(VENV) exists but is not a virtualenv; refusing to replace it." \
	             "Remove it or set VENV=..." >&2; \
	        exit 1; \
	    fi; \
	    echo ">>> $(VENV) has no usable Python >= 3.12; recreating it"; \
	    rm -rf "$(VENV)"; \
	fi; \
	py=$$(PYTHON="$(PYTHON)" sh scripts/find-python) || exit 1; \
	echo ">>> Creating $(VENV) with $$py ($$("$$py" -V 2>&1))"; \
	"$$py" -m venv "$(VENV)" || { rm -rf "$(VENV)"; exit 1; }

# Shell expression: checksum of the given files' contents plus the venv's Python version.
req_sum = $$(cat $(1) | cksum | tr -s ' ' '-')-$$("$(PY)" -c 'import sys; print(sys.version.split()[0])')

# $(call pip_sync,<requirements file>,<stamp>,<files the stamp covers>[,<stamp>,<files>])
# The optional second stamp is written too after a successful install (requirements-dev.txt
# includes requirements.txt, so installing it also satisfies `make run`).
define pip_sync
	@sum="$(call req_sum,$(3))"; \
	if [ "$$(cat "$(2)" 2>/dev/null)" = "$$sum" ]; then \
	    echo ">>> $(1): already installed in $(VENV)"; \
	else \
	    echo ">>> Installing $(1) into $(VENV)"; \
	    "$(PY)" -m pip install --disable-pip-version-check -r $(1) || exit 1; \
	    echo "$$sum" > "$(2)"; \
	    $(if $(4),echo "$(call req_sum,$(5))" > "$(4)";) \
	fi
endef

deps: venv
	$(call pip_sync,requirements.txt,$(STAMP_RUN),requirements.txt)

dev-deps: venv
	$(call pip_sync,requirements-dev.txt,$(STAMP_DEV),requirements.txt requirements-dev.txt,$(STAMP_RUN),requirements.txt)

# ---------------------------------------------------------------------------------------------
# Run the site

run: deps
	"$(PY)" manage.py migrate --noinput
	"$(PY)" manage.py demo_setup --samples var/samples --address $(RUNSERVER_ADDR)
	"$(PY)" manage.py runserver $(RUNSERVER_ADDR)

# ---------------------------------------------------------------------------------------------
# Tests
#
# The SQLite run is the whole suite, with DATABASE_URL removed from its environment; the
# PostgreSQL run has DATABASE_URL=$(DATABASE_URL_PG) and, in `make test`, only the tests that
# touch the database. Each run writes a JUnit report to $(ARTIFACTS)/junit-<db>.xml, and the end
# of `make test` repeats the counts and skip reasons. `make test` starts both runs at once (most
# of a test's time is spent waiting on the processes, browsers and servers it starts), each
# writing its output to $(ARTIFACTS)/pytest-<db>.log, printed when the run ends.

# Python snippets run with the venv's Python (exported so the recipes can use "$$VAR").

# argv[1]: a database URL. Connects to the `postgres` maintenance database of that server
# (the test database need not exist). Prints the reason and exits 1 when it cannot.
define PG_CHECK_PY
import sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
if url.scheme not in ("postgres", "postgresql", "pgsql", "postgis"):
    print("DATABASE_URL_PG is not a postgres:// URL")
    sys.exit(1)
conninfo = url._replace(scheme="postgresql", path="/postgres").geturl()
try:
    import psycopg
except ImportError as exc:
    print("psycopg is not installed (%s)" % exc)
    sys.exit(1)
try:
    psycopg.connect(conninfo, connect_timeout=5).close()
except Exception as exc:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    print(lines[0] if lines else type(exc).__name__)
    sys.exit(1)
endef
export PG_CHECK_PY

# argv[1]: label, argv[2]: JUnit XML file. Prints "<label>: N passed, N failed, N skipped" and
# the distinct skip reasons.
define JUNIT_SUMMARY_PY
import sys, xml.etree.ElementTree as ET
label, path = sys.argv[1], sys.argv[2]
try:
    root = ET.parse(path).getroot()
except Exception:
    print("%s: no test report (pytest did not finish)" % label)
    sys.exit(0)
total = failed = skipped = 0
reasons = {}
for case in root.iter("testcase"):
    total += 1
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    elif case.find("skipped") is not None:
        skipped += 1
        msg = case.find("skipped").get("message", "") or "(no reason given)"
        reasons[msg] = reasons.get(msg, 0) + 1
print("%s: %d passed, %d failed, %d skipped" % (label, total - failed - skipped, failed, skipped))
for msg, n in sorted(reasons.items(), key=lambda item: -item[1]):
    print("    %4d skipped: %s" % (n, msg))
endef
export JUNIT_SUMMARY_PY

# argv[1]: OK or FAILED, argv[2:]: JUnit XML files. Prints "<word>: N passed, N failed, N skipped"
# over all runs, as the last line of `make test`.
define JUNIT_TOTAL_PY
import sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in sys.argv[2:]:
    try:
        root = ET.parse(path).getroot()
    except Exception:
        continue
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
print("%s: %d passed, %d failed, %d skipped" % (sys.argv[1], passed, failed, skipped))
endef
export JUNIT_TOTAL_PY

# Each pytest run spreads its test files over TEST_WORKERS processes (pytest-xdist, whole
# files per process: module fixtures such as a browser start once); TEST_WORKERS=0 runs it in
# one process.
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
XDIST_SHOWN = $(if $(XDIST),$(TEST_WORKERS) workers each,one process each)

# $(call run_pytest,<label>,<env command prefix>[,<more pytest options>]) -- sets $$rc to
# pytest's exit status.
define run_pytest
mkdir -p "$(ARTIFACTS)"; rm -f "$(ARTIFACTS)/junit-$(1).xml"; \
echo ""; echo ">>> pytest on $(1)"; \
$(2) "$(PY)" -m pytest --junitxml="$(ARTIFACTS)/junit-$(1).xml" $(XDIST) $(3) $(PYTEST_ARGS); \
rc=$$?; \
if [ $$rc -eq 5 ]; then echo ">>> pytest on $(1): NO TESTS were collected" >&2; fi
endef

# $(call start_pytest,<label>,<env command prefix>[,<more pytest options>]) -- the same run in
# the background, its output in $(ARTIFACTS)/pytest-<label>.log; sets $$pid.
define start_pytest
mkdir -p "$(ARTIFACTS)"; rm -f "$(ARTIFACTS)/junit-$(1).xml"; \
$(2) "$(PY)" -m pytest --junitxml="$(ARTIFACTS)/junit-$(1).xml" $(XDIST) $(3) $(PYTEST_ARGS) \
    </dev/null >"$(ARTIFACTS)/pytest-$(1).log" 2>&1 & \
pid=$$!
endef

# $(call finish_pytest,<label>,<pid>) -- waits for a run started by start_pytest and prints its
# output; sets $$rc to pytest's exit status.
define finish_pytest
wait $(2); rc=$$?; \
echo ""; echo ">>> pytest on $(1) (its output, also in $(ARTIFACTS)/pytest-$(1).log)"; \
cat "$(ARTIFACTS)/pytest-$(1).log"; \
if [ $$rc -eq 5 ]; then echo ">>> pytest on $(1): NO TESTS were collected" >&2; fi
endef

# Sets $$pg_ok (1/0) and $$pg_reason.
define pg_check
pg_reason=$$("$(PY)" -c "$$PG_CHECK_PY" "$(DATABASE_URL_PG)" 2>&1) && pg_ok=1 || pg_ok=0
endef

# Bytecode is written (into the git-ignored __pycache__ folders) even where the environment
# says PYTHONDONTWRITEBYTECODE: without it every worker, and every process a test starts,
# compiles the project again, and pytest rewrites the test modules' asserts again.
SQLITE_ENV := env -u DATABASE_URL -u PYTHONDONTWRITEBYTECODE
PG_ENV := env -u PYTHONDONTWRITEBYTECODE DATABASE_URL="$(DATABASE_URL_PG)"
# Password-free form of DATABASE_URL_PG for messages.
PG_SHOWN = $(shell printf '%s' '$(DATABASE_URL_PG)' | sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#')

test: dev-deps
	@$(call pg_check); \
	$(call start_pytest,sqlite,$(SQLITE_ENV)); sqlite_pid=$$pid; pg_pid=; \
	if [ $$pg_ok = 1 ]; then \
	    $(call start_pytest,postgresql,$(PG_ENV),--database-tests-only); pg_pid=$$pid; \
	fi; \
	trap 'kill $$sqlite_pid $$pg_pid 2>/dev/null; exit 130' INT TERM; \
	both=; [ $$pg_ok = 1 ] && both=" and on postgresql, at the same time"; \
	echo ">>> pytest on sqlite$$both ($(XDIST_SHOWN)); each run's output follows when it ends"; \
	$(call finish_pytest,sqlite,$$sqlite_pid); sqlite_rc=$$rc; \
	if [ $$pg_ok = 1 ]; then \
	    $(call finish_pytest,postgresql,$$pg_pid); pg_rc=$$rc; \
	else \
	    pg_rc=skipped; \
	fi; \
	case "$${CI:-}" in ""|0|false|no) in_ci=0 ;; *) in_ci=1 ;; esac; \
	echo ""; \
	echo "======================================== make test summary ========================================"; \
	"$(PY)" -c "$$JUNIT_SUMMARY_PY" sqlite "$(ARTIFACTS)/junit-sqlite.xml"; \
	echo "    pytest exit status $$sqlite_rc"; \
	if [ $$pg_ok = 1 ]; then \
	    "$(PY)" -c "$$JUNIT_SUMMARY_PY" postgresql "$(ARTIFACTS)/junit-postgresql.xml"; \
	    echo "    pytest exit status $$pg_rc ($(PG_SHOWN))"; \
	else \
	    echo "postgresql: not run"; \
	    echo ""; \
	    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
	    echo "SKIPPED: PostgreSQL run — $(PG_SHOWN) is not reachable: $$pg_reason"; \
	    if [ $$in_ci = 1 ]; then \
	        echo "CI is set, so this is a FAILURE (start PostgreSQL, or see .ci/run)."; \
	    else \
	        echo "Only the SQLite run happened. Start PostgreSQL or set DATABASE_URL_PG=..., then: make test-postgres"; \
	    fi; \
	    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
	fi; \
	status=0; \
	[ "$$sqlite_rc" = 0 ] || status=1; \
	if [ "$$pg_rc" = skipped ]; then [ $$in_ci = 0 ] || status=1; else [ "$$pg_rc" = 0 ] || status=1; fi; \
	if [ $$status = 0 ]; then word=OK; else word=FAILED; fi; \
	echo "make test, all runs together:"; \
	"$(PY)" -c "$$JUNIT_TOTAL_PY" $$word "$(ARTIFACTS)/junit-sqlite.xml" \
	    $$([ $$pg_ok = 1 ] && echo "$(ARTIFACTS)/junit-postgresql.xml"); \
	exit $$status

test-sqlite: dev-deps
	@$(call run_pytest,sqlite,$(SQLITE_ENV)); exit $$rc

test-postgres: dev-deps
	@$(call pg_check); \
	if [ $$pg_ok != 1 ]; then \
	    echo "PostgreSQL at $(PG_SHOWN) is not reachable: $$pg_reason" >&2; \
	    exit 1; \
	fi; \
	$(call run_pytest,postgresql,$(PG_ENV)); exit $$rc

# ---------------------------------------------------------------------------------------------
# Lint and benchmarks

lint: dev-deps
	"$(PY)" -m ruff check .

# benchmarks/ is written by another engineer: use its runner when there is one.
bench: dev-deps
	@export PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}"; \
	export DJANGO_SETTINGS_MODULE="$${DJANGO_SETTINGS_MODULE:-config.settings}"; \
	if [ -f benchmarks/run_all.py ]; then \
	    echo ">>> benchmarks/run_all.py"; \
	    "$(PY)" benchmarks/run_all.py $(BENCH_ARGS); \
	elif [ -f benchmarks/__main__.py ]; then \
	    echo ">>> python -m benchmarks"; \
	    "$(PY)" -m benchmarks $(BENCH_ARGS); \
	elif ls benchmarks/*.py >/dev/null 2>&1; then \
	    rc=0; \
	    for f in benchmarks/*.py; do \
	        case "$${f##*/}" in __init__.py|conftest.py|test_*|_*) continue ;; esac; \
	        echo ">>> $$f"; \
	        "$(PY)" "$$f" $(BENCH_ARGS) || rc=1; \
	    done; \
	    exit $$rc; \
	else \
	    echo "No benchmarks/ yet: nothing to run."; \
	fi

# ---------------------------------------------------------------------------------------------
# Cleaning

clean:
	find . -path "./$(VENV)" -prune -o -path ./.git -prune -o \
	    -type d -name __pycache__ -exec rm -rf {} + 2>/dev/null || true
	rm -rf .pytest_cache .ruff_cache .hypothesis "$(ARTIFACTS)"/junit-*.xml "$(ARTIFACTS)"/pytest-*.log

# Also the virtualenv and the local site's data (SQLite database, media, quarantine, static).
distclean: clean
	rm -rf "$(VENV)" db.sqlite3 var media quarantine staticfiles
