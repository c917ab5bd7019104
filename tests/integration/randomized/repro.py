"""tests/integration/randomized/repro.py - a scenario as runnable pymongo code or as JSON.

`python_script(scenario)` writes a standalone script: the operations as the
commands the test sent (raw BSON in hex, so duplicate fields and exact types
survive, each with a readable comment), with the points where `migrate
init`, `migrate sync --follow`, the end of the copy and the comparison come
in between. `describe(scenario)` is the short human-readable list.
"""

import bsonx as B
import ops as O


def _h(v):
    return B.encode(v).hex()


def _cmd_lines(op, session, indent):
    """the lines running op's commands (db is `dbs[role]`)."""
    pad = " " * indent
    sess = ", session=s" if session else ""
    a = op.args
    k = op.kind
    db = f'dbs["{op.db}"]'
    lines = []

    def run(body, target=None):
        lines.append(f"{pad}try_cmd({target or db}, [{', '.join(body)}]{sess})")

    if k == "create":
        run([f'("create", {op.coll!r})'])
    elif k == "drop":
        run([f'("drop", {op.coll!r})'])
    elif k == "rename":
        run([f'("renameCollection", {db}.name + ".{op.coll}")',
             f'("to", {db}.name + ".{a["to"]}")', f'("dropTarget", {a["drop_target"]})'],
            target="client.admin")
    elif k == "drop_database":
        run(['("dropDatabase", 1)'])
    elif k in ("insert", "insert_many"):
        docs = [a["doc"]] if k == "insert" else a["docs"]
        for d in docs:
            lines.append(f"{pad}# {B.show(d, 300)}")
        run([f'("insert", {op.coll!r})',
             '("documents", [' + ", ".join(f'raw("{_h(d)}")' for d in docs) + "])",
             f'("ordered", {a.get("ordered", True)})'])
    elif k in ("update", "replace", "delete"):
        name, field, stmt = O._statement(k, a)
        lines.append(f"{pad}# {name} {B.show(stmt, 400)}")
        run([f'("{name}", {op.coll!r})', f'("{field}", [raw("{_h(stmt)}")])'])
    elif k == "find_modify":
        body = [f'("findAndModify", {op.coll!r})', f'("query", raw("{_h(a["filter"])}"))']
        lines.append(f"{pad}# findAndModify query {B.show(a['filter'], 200)}")
        if a.get("remove"):
            body.append('("remove", True)')
        else:
            u = a.get("replacement") if a.get("replacement") is not None else a["update"]
            lines.append(f"{pad}#   update {B.show(u, 300)}")
            uu = (f'[raw(h) for h in {[_h(x) for _, x in u[1]]!r}]' if u[0] == B.ARRAY
                  else f'raw("{_h(u)}")')
            body += [f'("update", {uu})', f'("upsert", {a["upsert"]})',
                     f'("new", {bool(a.get("new"))})']
        run(body)
    elif k == "bulk":
        for kind, sub in a["requests"]:
            name, field, stmt = O._statement(kind, sub)
            lines.append(f"{pad}# bulk {name} {B.show(stmt, 300)}")
            run([f'("{name}", {op.coll!r})', f'("{field}", [raw("{_h(stmt)}")])',
                 f'("ordered", {a["ordered"]})'])
    elif k == "txn":
        lines.append(f"{pad}with client.start_session() as s:")
        lines.append(f"{pad}    s.start_transaction()")
        for sub in a["ops"]:
            lines.extend(_cmd_lines(sub, True, indent + 4))
        lines.append(f"{pad}    s.{'commit' if a['commit'] else 'abort'}_transaction()")
    return lines


STEPS = {
    "pre": "before `migrate init`",
    "gap": "after `migrate init`, before `migrate sync` starts",
    "copy": "right after `migrate sync --follow --on-drop truncate --on-rename follow` "
            "started (during the copy)",
    "follow": "after the copy finished (every partition done or failed)",
}


def python_script(scenario, title=""):
    """python_script is runnable code replaying scenario against a MongoDB URI.

    Usage of the script: repro.py URI [PHASE...]: runs the operations of the
    phases named (pre, gap, copy, follow), or of all of them, pausing where
    a migrate command comes in."""
    out = [
        "#!/usr/bin/python3",
        f"# randomized differential test: seed {scenario.seed}, "
        f"options {scenario.options.describe()}",
    ]
    if title:
        out += [f"# {line}" for line in title.splitlines()]
    out += [
        "# usage: repro.py mongodb://HOST:PORT/ [pre|gap|copy|follow ...]",
        "# Commands carry raw BSON (hex) so duplicate fields and exact types arrive as",
        "# generated; a command the server refuses is printed and the script goes on.",
        "# Databases: repro (role main) and reprox (role aux, REPRO_PREFIX to change).",
        "import os",
        "import sys",
        "",
        "import pymongo",
        "from bson.raw_bson import RawBSONDocument",
        "from bson.son import SON",
        "",
        "client = pymongo.MongoClient(sys.argv[1] if len(sys.argv) > 1 else "
        "'mongodb://127.0.0.1:27017/')",
        "prefix = os.environ.get('REPRO_PREFIX', 'repro')",
        "dbs = {'main': client[prefix], 'aux': client[prefix + 'x']}",
        "",
        "",
        "def raw(h):",
        "    return RawBSONDocument(bytes.fromhex(h))",
        "",
        "",
        "def try_cmd(db, body, session=None):",
        "    try:",
        "        r = db.command(SON(body), session=session)",
        "        if r.get('writeErrors'):",
        "            print('write error:', r['writeErrors'][0].get('errmsg'))",
        "    except pymongo.errors.PyMongoError as e:",
        "        print('refused:', e)",
        "",
    ]
    for phase, when in STEPS.items():
        out += ["", "", f"def {phase}():", f'    """{when}"""']
        body = []
        for op in scenario.ops:
            if op.phase == phase:
                body.extend(_cmd_lines(op, False, 4))
        out += body or ["    pass"]
    out += [
        "",
        "",
        "PHASES = {'pre': pre, 'gap': gap, 'copy': copy, 'follow': follow}",
        "chosen = sys.argv[2:] or list(PHASES)",
        "for i, name in enumerate(chosen):",
        "    if i and len(sys.argv) <= 2:",
        "        input(f'next: {name}: {PHASES[name].__doc__}; press Enter when there')",
        "    PHASES[name]()",
    ]
    return "\n".join(out) + "\n"


def describe(scenario, limit=60):
    """describe lists the scenario's operations, one short line each."""
    lines = []
    for i, op in enumerate(scenario.ops[:limit]):
        a = op.args
        detail = ""
        if op.kind == "insert":
            detail = B.show(a["doc"], 200)
        elif op.kind == "insert_many":
            detail = "; ".join(B.show(d, 100) for d in a["docs"])
        elif op.kind in ("update", "replace", "delete", "find_modify"):
            parts = [f"filter {B.show(a['filter'], 100)}"]
            for n in ("update", "replacement"):
                if a.get(n) is not None:
                    parts.append(f"{n} {B.show(a[n], 160)}")
            for n in ("upsert", "multi", "remove"):
                if a.get(n):
                    parts.append(n)
            detail = ", ".join(parts)
        elif op.kind == "rename":
            detail = f"to {a['to']} dropTarget={a['drop_target']}"
        elif op.kind == "txn":
            detail = ("commit: " if a["commit"] else "abort: ") + "; ".join(
                f"{s.kind} {s.coll}" for s in a["ops"])
        elif op.kind == "bulk":
            detail = f"{len(a['requests'])} requests, ordered={a['ordered']}"
        lines.append(f"  {i:3d} [{op.phase:6}] {op.kind} {op.db}.{op.coll or ''} {detail}")
    if len(scenario.ops) > limit:
        lines.append(f"  ... {len(scenario.ops) - limit} more")
    return lines
