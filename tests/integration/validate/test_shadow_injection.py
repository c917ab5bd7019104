"""Integration: shadow-read queries cannot inject SQL (issue 17, item 1).

Shadow queries come from files and from the source's profiler, whose field
names an application's users may control. Each query below puts SQL into a
sort key, a projection key or a filter key - long enough to overflow any
fixed buffer, with quotes and backslashes, on a target whose database runs
with standard_conforming_strings off - and the SQL it carries is a call of
nextval() on a sequence the test made. Whatever the tool reports for each
query, the sequence must still be unused afterwards: nothing a query held
ran as SQL. The first payload is the one the issue names (with nextval in
place of pg_sleep): on the code before the fix it ran.
"""

import json

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS


def _payloads(call):
    """_payloads returns (name, query fields) with SQL `call` hidden in keys."""
    out = []
    # the sort: a long first key cuts the fixed buffer inside a literal
    for n in range(100, 141, 4):
        out.append((f"sort_cut_{n}", {"sort": {"a" * n: 1,
                    f"]::text[]) IS NULL THEN 1 END, {call} --": 1}}))
    # very long keys everywhere (past 4 KB, 8 KB and 64 KB expressions)
    for n in (600, 3000, 9000, 70000):
        out.append((f"sort_long_{n}", {"sort": {"k" * n: 1, "'" + call + "--": -1}}))
        out.append((f"proj_long_{n}", {"projection": {"p" * n: 1, "'," + call + ",'": 1}}))
        out.append((f"filter_long_{n}", {"filter": {"f" * n: 1, "g'" + call: {"$gt": 1}}}))
    # quotes and backslashes: with standard_conforming_strings off, \' ends a literal
    for key in ("x\\'," + call + ",'", "x\\\\'," + call + ",'", "\\", "'\\'", "\"", "a\\",
                "\\'); " + call + "; --"):
        out.append((f"quote_sort_{len(out)}", {"sort": {key: 1}}))
        out.append((f"quote_proj_{len(out)}", {"projection": {key: 1}}))
        out.append((f"quote_proj_ex_{len(out)}", {"projection": {key: 0}}))
        out.append((f"quote_filter_{len(out)}", {"filter": {key: "v'\\" + call}}))
        out.append((f"quote_dotted_{len(out)}", {"filter": {"a." + key: {"$in": [1, key]}},
                                                 "sort": {"a." + key: -1}}))
    return out


def test_no_query_runs_sql_it_carries(mongo, dbname, postgres, migrate, tmp_path):
    coll = mongo[dbname]["shop"]
    coll.insert_many([{"_id": i, "a": "x" * i, "k": i % 3, "f": i, "p": [i]} for i in range(20)])
    host, port = mongo.address
    uri = f"mongodb://{host}:{port}/"
    r = migrate("init", "--source", uri, "--target", postgres.uri, "--include", f"{dbname}.*")
    assert r.rc == 0, r
    r = migrate("sync", "--source", uri, "--target", postgres.uri, "--workers", "1")
    assert r.rc == 0, r

    postgres.query("CREATE SEQUENCE public.injected")
    oid = postgres.query("SELECT 'public.injected'::regclass::oid")[0][0]
    call = f"(SELECT nextval({oid}))"
    # literals must not depend on this setting (E'' where a backslash is in the text)
    postgres.query(f"ALTER DATABASE {postgres.dbname} SET standard_conforming_strings = off")
    postgres.query(f"ALTER DATABASE {postgres.dbname} SET escape_string_warning = off")

    payloads = _payloads(call)
    lines = []
    for name, fields in payloads:
        q = {"name": name, "ns": f"{dbname}.shop", "filter": {}}
        q.update(fields)
        lines.append(json_util.dumps(q, json_options=CANONICAL_JSON_OPTIONS))
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--shadow", str(path),
                "--shadow-repeat", "1", "--json")
    assert r.rc in (0, 5), r
    rep = r.json()
    assert len(rep["shadow"]) == len(payloads)

    used = postgres.query("SELECT is_called FROM public.injected")[0][0]
    assert not used, "a shadow query ran SQL hidden in its keys:\n" + "\n".join(
        f"{s['name']}: {s['status']} {s['sql'][:200] if s.get('sql') else ''}"
        for s in rep["shadow"])
    # every query was either translated and run, or refused with a reason: none failed
    # because the generated SQL did not parse
    errors = [s for s in rep["shadow"] if s["status"] == "error"]
    assert not errors, json.dumps(errors, indent=1)[:4000]
    # the ones translated give MongoDB's answer
    for s in rep["shadow"]:
        assert s["status"] in ("match", "not_translated"), (s["name"], s["status"], s["reason"])
