"""Integration: the self-contained HTML report of `migrate validate`, opened
in headless Chromium (Debian's chromium package).

Proves: a report with a collection mismatch (named _id and field) and
shadow-read results renders with the expected headings, tables and inline
SVG charts, loads nothing from outside the file, and raises no script or
console error; a screenshot is taken (kept next to the report for people).
"""

import os
import re
import shutil
import subprocess

import pytest
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def mongo_uri(client):
    host, port = client.address
    return f"mongodb://{host}:{port}/"


def chromium(tmp_path, *args):
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup-deps.sh)")
def test_html_report_renders_in_chromium(mongo, dbname, postgres, migrate, tmp_path):
    db = mongo[dbname]
    db["people"].insert_many([{"_id": f"p{i}", "name": f"n{i}", "age": 20 + i,
                               "address": {"city": "Lyon"}} for i in range(50)])
    uri = mongo_uri(mongo)
    assert migrate("init", "--source", uri, "--target", postgres.uri, "--include",
                   f"{dbname}.*").rc == 0
    assert migrate("sync", "--source", uri, "--target", postgres.uri).rc == 0
    postgres.query(f'UPDATE "{dbname}".people SET doc = jsonb_set(doc, '
                   "'{address,city}', '\"<b>Paris</b>\"') WHERE _id = 'p3'")
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json_util.dumps(q, json_options=CANONICAL_JSON_OPTIONS) for q in [
        {"name": "adults", "ns": f"{dbname}.people", "filter": {"age": {"$gte": 40}}},
        {"name": "by_city", "ns": f"{dbname}.people", "filter": {"address.city": "Lyon"},
         "sort": {"_id": 1}},
        {"name": "where", "ns": f"{dbname}.people", "filter": {"$where": "true"}},
    ]) + "\n")
    report = tmp_path / "report.html"
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--full", "--shadow",
                str(queries), "--report-html", str(report))
    assert r.rc == 0, r
    page = report.read_text()
    # self-contained: no external reference of any kind, no script
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)
    assert "<script" not in page

    dom = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for heading in ("<h1>Validation report</h1>", "<h2>Collections</h2>", "<h2>Mismatches</h2>",
                    "<h2>Scan time per collection</h2>", "<h2>Shadow reads</h2>",
                    "<h2>Shadow-read latency</h2>"):
        assert heading in dom.stdout, heading
    assert dom.stdout.count("<svg") == 2
    assert "address.city" in dom.stdout and "&lt;b&gt;Paris&lt;/b&gt;" in dom.stdout
    assert "<b>Paris</b>" not in dom.stdout  # escaped, not markup
    assert "not translated: operator $where" in dom.stdout

    shot = tmp_path / "report.png"
    run = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    errors = [ln for ln in (dom.stderr + run.stderr).splitlines()
              if "Uncaught" in ln or "CONSOLE" in ln and ("Error" in ln or "error" in ln)]
    assert errors == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    keep = os.environ.get("MG_VALIDATE_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
        shutil.copy(report, os.path.splitext(keep)[0] + ".html")
