"""Round trip through a hash exchange: export the banned set as PDQ, import it into an empty
site, and compare the decisions on a folder of photos.

    python benchmarks/exchange_round_trip.py PHOTOS_DIR \
        --database-url postgres://postgres@127.0.0.1:5432/NAME [--every-orientation] [--seed N]

Two fresh PostgreSQL databases, ``NAME_source`` and ``NAME_fresh`` (dropped and created,
migrated), each driven by the real commands in a process of its own:

1. source: the photos are split as ``evaluate_matching`` splits them (seeded); the banned half is
   flagged with ``manage.py flag_images``, then ``manage.py export_hashes --banned-set`` writes
   its PDQs (``--every-orientation``: the 8 flips and turns of each);
2. fresh: ``manage.py import_hashes`` reads that file into a hash list, the site's only
   banned content (no dHash flag);
3. each site screens every photo and each of its edited copies (``evaluation.EDITS``) as an
   upload would be screened (``screening.screen_as_upload``: refused, queued or passed);
   the fresh site's process also decides each copy against the exported file held in memory
   as ``evaluate_matching --pdq-list`` holds a list (``evaluation.PdqList``).

Prints, per edit, the banned copies each site blocks and the innocent files each blocks or
queues, then how often the fresh site's decision equals the in-memory list's (the import path
must change nothing: every one) and the source site's. The last line is the summary.
Not part of the test run; its numbers are in docs/exchange.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IN_MEMORY = "in-memory list"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate(url: str, name: str) -> str:
    """Drop and create database ``name`` on ``url``'s server; its URL."""
    import psycopg

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def site_env(url: str, folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_MEDIA_ROOT": str(folder / "media"),
        "MODERATION_QUARANTINE_ROOT": str(folder / "quarantine"),
        "MODERATION_SNAPSHOT_DIR": str(folder / "banned-set"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py`` in a process of its own; its output (fails loudly)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"manage.py {' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def load(photos_dir: str, seed: int):
    from moderation import evaluation
    from moderation.management.commands._files import iter_image_paths

    skipped: list[str] = []
    photos = evaluation.load_photos(iter_image_paths([photos_dir]), skipped)
    banned, innocent = evaluation.split(photos, seed=seed, banned_fraction=0.5)
    return banned, innocent


def decide(photos_dir: str, seed: int, out: Path, list_file: str | None) -> None:
    """In a site's process: every photo's and edit's decision as an upload of it."""
    import django

    django.setup()
    import random

    from django.core.exceptions import ValidationError
    from django.core.files.uploadedfile import SimpleUploadedFile

    from moderation import evaluation, matching, pdq_evaluation
    from moderation.banned_index import BannedIndex
    from moderation.screening import screen_as_upload

    held = None
    if list_file is not None:
        lines = Path(list_file).read_text().splitlines()
        pdqs = [(i, 0, line.split()[0]) for i, line in enumerate(lines, 1) if line.strip()]
        held = {IN_MEMORY: pdq_evaluation.PdqList.of(pdqs, name="file", orientations=(0,))}
    rule = matching.MatchRule.from_settings()
    banned, innocent = load(photos_dir, seed)
    result: dict[str, dict[str, dict[str, str]]] = {}
    for side, group in (("banned", banned), ("innocent", innocent)):
        for photo in group:
            rng = random.Random(f"{seed}:{photo.path.name}")  # noqa: S311 - as evaluate does
            for name, edit in [(evaluation.ORIGINAL, None)] + [
                (e.name, e) for e in evaluation.EDITS
            ]:
                data = photo.data if edit is None else edit.make(photo.image, rng)
                key = f"{side}\t{photo.path.name}\t{name}"
                row = {}
                try:
                    row["site"] = screen_as_upload(
                        SimpleUploadedFile(photo.path.name, data)
                    ).decision
                    if held is not None:
                        row[IN_MEMORY] = evaluation.look_up(
                            data, BannedIndex(), rule, pdq_lists=held
                        ).decision
                except ValidationError as e:
                    row["site"] = row[IN_MEMORY] = f"refused: {' '.join(e.messages)}"
                result[key] = row
    out.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", metavar="PHOTOS_DIR")
    parser.add_argument("--database-url", required=True, help="postgres://.../NAME")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every-orientation", action="store_true")
    parser.add_argument("--decide", metavar="OUT", help=argparse.SUPPRESS)
    parser.add_argument("--list-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decide:
        decide(args.photos, args.seed, Path(args.decide), args.list_file)
        return

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from moderation import matching

    started = time.perf_counter()
    name = urlsplit(args.database_url).path.strip("/") or "round_trip"
    folder = Path(tempfile.mkdtemp(prefix="round_trip_"))
    source = site_env(recreate(args.database_url, f"{name}_source"), folder / "source")
    fresh = site_env(recreate(args.database_url, f"{name}_fresh"), folder / "fresh")
    for env in (source, fresh):
        manage(env, "migrate", "--verbosity", "0")
    banned, innocent = load(args.photos, args.seed)

    flagged = manage(
        source, "flag_images", *[str(p.path) for p in banned], "--reason", "round trip"
    )
    exported = folder / "banned.pdq.txt"
    export_args = ["export_hashes", "--banned-set", "-o", str(exported)]
    if args.every_orientation:
        export_args.append("--every-orientation")
    manage(source, *export_args)
    entries = len(exported.read_text().splitlines())
    imported = manage(
        fresh, "import_hashes", str(exported), "--list", "partner", "--source", "source site"
    )
    print(f"source: {flagged.strip().splitlines()[-1]}")
    kind = "8 orientations" if args.every_orientation else "upright"
    print(f"exported {entries} PDQ lines ({kind})")
    print(f"fresh: {imported.strip().splitlines()[-1]}")
    setup_seconds = time.perf_counter() - started

    decisions = {}
    for label, env, extra in (
        ("source", source, []),
        ("fresh", fresh, ["--list-file", str(exported)]),
    ):
        out = folder / f"{label}.json"
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                args.photos,
                "--database-url",
                args.database_url,
                "--seed",
                str(args.seed),
                "--decide",
                str(out),
                *extra,
            ],
            env=env,
            check=False,
        )
        if done.returncode != 0:
            sys.exit(f"deciding on the {label} site failed")
        decisions[label] = json.loads(out.read_text())

    keys = sorted(decisions["fresh"])
    block = matching.BLOCK
    edits: dict[str, dict[str, int]] = {}
    for key in keys:
        side, _photo, edit = key.split("\t")
        src, new = decisions["source"][key]["site"], decisions["fresh"][key]["site"]
        mem = decisions["fresh"][key][IN_MEMORY]
        row = edits.setdefault(
            edit,
            {
                "banned": 0,
                "innocent": 0,
                "src": 0,
                "new": 0,
                "mem": 0,
                "src_i": 0,
                "new_i": 0,
                "new_q": 0,
            },
        )
        if side == "banned":
            row["banned"] += 1
            row["src"] += src == block
            row["new"] += new == block
            row["mem"] += mem == block
        else:
            row["innocent"] += 1
            row["src_i"] += src == block
            row["new_i"] += new == block
            row["new_q"] += new == matching.REVIEW
    print()
    print(
        "| edit | banned copies blocked: source site (dHash flags) | fresh site (imported "
        "PDQ list) | in-memory list | innocent blocked: source / fresh | innocent queued: "
        "fresh |"
    )
    print("|---|---|---|---|---|---|")
    for edit, r in edits.items():
        print(
            f"| {edit} | {r['src']}/{r['banned']} | {r['new']}/{r['banned']} | "
            f"{r['mem']}/{r['banned']} | {r['src_i']} / {r['new_i']} | {r['new_q']} |"
        )
    same_memory = sum(
        decisions["fresh"][k]["site"] == decisions["fresh"][k][IN_MEMORY] for k in keys
    )
    same_source = sum(decisions["fresh"][k]["site"] == decisions["source"][k]["site"] for k in keys)
    originals = [k for k in keys if k.startswith("banned\t") and k.endswith("\toriginal file")]
    orig_src = sum(decisions["source"][k]["site"] == block for k in originals)
    orig_new = sum(decisions["fresh"][k]["site"] == block for k in originals)
    innocent = [k for k in keys if k.startswith("innocent\t")]
    inn_src = sum(decisions["source"][k]["site"] == block for k in innocent)
    inn_new = sum(decisions["fresh"][k]["site"] == block for k in innocent)
    differ = [
        k.replace("\t", " / ")
        for k in keys
        if decisions["fresh"][k]["site"] != decisions["fresh"][k][IN_MEMORY]
    ]
    for k in differ[:20]:
        print(f"  fresh site and in-memory list differ: {k}")
    print(f"time: set-up {setup_seconds:.0f} s, total {time.perf_counter() - started:.0f} s")
    print(
        f"summary: {len(keys)} files; fresh site = in-memory PDQ list on {same_memory}/"
        f"{len(keys)}, = source site on {same_source}/{len(keys)}; banned originals blocked "
        f"{orig_src}/{len(originals)} (source) and {orig_new}/{len(originals)} (fresh); "
        f"innocent files blocked {inn_src} (source) and {inn_new} (fresh) of {len(innocent)}"
    )


if __name__ == "__main__":
    main()
