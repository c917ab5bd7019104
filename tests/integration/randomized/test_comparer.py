"""Integration: the randomized test's comparer is not blind, and its decoder reads the mapping.

1. test_comparer_finds_planted_differences: one migration of a small planted
   scenario; then each kind of damage is planted in the target (or in the
   source, for what jsonb cannot hold) inside a transaction, compare.py
   must name it with the expected kind, and the transaction is rolled
   back. The untouched target compares clean.
2. test_decoder_reads_what_the_renderer_writes: every valid case of the BSON
   corpus and 3,000 generated documents, rendered by the product's renderer
   (mg_schema_tool render, both fidelities), stored in and read back from a
   real jsonb column, decoded by compare.py's own reading of
   docs/type-mapping.md: the canonical forms must be equal. Values of the
   known hole classes (duplicate field names, non-canonical Decimal128) are
   left to the randomized test.
"""

import random
import subprocess

import pytest

import bsonx as B
import compare
import gen
import harness
from mgharness import build_path


def planted_scenario():
    """documents with an int32, -0.0, a NUL string, an int64, and a compound-_id collection."""
    docs = [
        B.doc(("_id", B.i32(1)), ("n", B.i32(1)), ("s", B.s("a\x00b")), ("z", B.dbl(-0.0)),
              ("big", B.i64(2 ** 40))),
        B.doc(("_id", B.i32(2)), ("n", B.i32(2))),
        B.doc(("_id", B.i32(3)), ("keep", (B.BOOL, True))),
    ]
    ops = [gen.Op("insert", "pre", "p", doc=d) for d in docs]
    ops.append(gen.Op("insert", "pre", "q", doc=B.doc(("_id", B.doc(("a", B.i32(1)),
                                                                      ("b", B.i32(2)))),
                                                      ("v", B.i32(1)))))
    return gen.Scenario(-1, gen.GenOptions(), ops)


def test_comparer_finds_planted_differences(rand_source, postgres, tmp_root, tmp_path):
    uri, real = rand_source.uri, rand_source.real
    env = harness.Env(uri, postgres, build_path("bin", "migrate"), str(tmp_path), root=tmp_root,
                      scope="listed" if real else "all", restart_source=rand_source.restart)
    outcomes = {}

    def plant(batch):
        slot = batch.slots[0]
        assert slot.diffs == [], compare.summarize(slot.diffs)
        main = slot.dbnames["main"]
        src = batch.client[main]
        # the cutover froze the source; the source-side plants need it writable
        batch.client.admin.command({"setUserWriteBlockMode": 1, "global": False})
        conn = env.pg.connect(dbname=batch.prefix, autocommit=False)
        try:
            view = compare.TargetView(conn, slot.dbnames.values())
            p = '"{}"."{}"'.format(*[view.mapping[(main, "p")][k]
                                     for k in ("schema_name", "table_name")])
            q = '"{}"."{}"'.format(*[view.mapping[(main, "q")][k]
                                     for k in ("schema_name", "table_name")])

            def check(name, sql=(), source=None, undo_source=None, replaced=frozenset()):
                with conn.cursor() as cur:
                    for s in sql:
                        cur.execute(s)
                if source:
                    source()
                try:
                    outcomes[name] = compare.compare_slot(batch.client, compare.TargetView(
                        conn, slot.dbnames.values()), slot.dbnames, replaced=replaced)
                finally:
                    conn.rollback()
                    if undo_source:
                        undo_source()

            check("untouched")
            check("row deleted", [f"DELETE FROM {p} WHERE _id = 2"])
            check("row added", [f"""INSERT INTO {p} VALUES (4, '{{"_id": 4}}')"""])
            check("int32 became double", [f"UPDATE {p} SET doc = jsonb_set(doc, '{{n}}', '1.0') "
                                          f"WHERE _id = 1"])
            check("-0.0 became 0.0", [f"UPDATE {p} SET doc = jsonb_set(doc, '{{z}}', '0.0') "
                                      f"WHERE _id = 1"])
            check("NUL lost", [f"""UPDATE {p} SET doc = jsonb_set(doc, '{{s}}', '"ab"') """
                               f"WHERE _id = 1"])
            check("int64 became double", [f"UPDATE {p} SET doc = jsonb_set(doc, '{{big}}', "
                                          f"'1099511627776.0') WHERE _id = 1"])
            check("field lost", [f"UPDATE {p} SET doc = doc - 'keep' WHERE _id = 3"])
            check("bad wrapper", [f"""UPDATE {p} SET doc = jsonb_set(doc, '{{n}}', """
                                  f"""'{{"$oid": 5}}') WHERE _id = 1"""])
            check("key column", [f"UPDATE {p} SET _id = 7 WHERE _id = 3"])
            check("table dropped", [f"DROP TABLE {q}"])
            check("orphan table", [f'CREATE TABLE "{main}".stray (_id int, doc jsonb)',
                                   f"""INSERT INTO "{main}".stray VALUES (1, '{{"_id": 1}}')"""])
            # what jsonb cannot hold is planted on the source side, with the row jsonb keeps
            dup = B.doc(("_id", B.i32(10)), ("a", B.i32(1)), ("a", B.i32(2)))
            check("duplicate field",
                  [f"""INSERT INTO {p} VALUES (10, '{{"_id": 10, "a": 2}}')"""],
                  source=lambda: src.command("insert", "p", documents=[
                      harness.O.raw(dup)]),
                  undo_source=lambda: src["p"].delete_one({"_id": 10}))
            twin = B.doc(("_id", B.doc(("b", B.i32(2)), ("a", B.i32(1)))), ("v", B.i32(1)))
            check("_id field order", source=lambda: src.command("insert", "q", documents=[
                harness.O.raw(twin)]),
                  undo_source=lambda: src["q"].delete_one({"_id": {"b": 2, "a": 1}}))
            # the forms the product writes since issue 14 are read, and misread ones found
            assert view.mapping[(main, "q")]["key_type"] == "canonical"
            check("canonical key in another field order",
                  [f"UPDATE {q} SET _id = '{{s1:bi2;s1:ai1;}}'"])
            check("kept table of a replaced collection",
                  [f'CREATE TABLE "{main}".kept (_id int, doc jsonb)',
                   f"""INSERT INTO "{main}".kept VALUES (1, '{{"_id": 1}}')"""],
                  replaced={(main, "kept")})
            pairs_ok = '{"_id": 10, "$fieldPairs": [["_id", 10], ["a", 1], ["a", 2]]}'
            pairs_bad = '{"_id": 10, "$fieldPairs": [["_id", 10], ["a", 1], ["a", 3]]}'
            for name, row in (("duplicate field as $fieldPairs", pairs_ok),
                              ("duplicate field, $fieldPairs wrong", pairs_bad)):
                check(name, [f"INSERT INTO {p} VALUES (10, '{row}')"],
                      source=lambda: src.command("insert", "p", documents=[harness.O.raw(dup)]),
                      undo_source=lambda: src["p"].delete_one({"_id": 10}))
        finally:
            conn.close()

    res = harness.run_batch(env, [planted_scenario()], after=plant)
    assert res.steps["cutover"]["rc"] == 0, res.steps
    expected = {
        "untouched": set(),
        "row deleted": {"missing_doc"},
        "row added": {"extra_row"},
        "int32 became double": {"different"},
        "-0.0 became 0.0": {"different"},
        "NUL lost": {"different"},
        "int64 became double": {"different"},
        "field lost": {"different"},
        "bad wrapper": {"undecodable_row", "missing_doc"},
        "key column": {"key_mismatch"},
        "table dropped": {"missing_collection"},
        "orphan table": {"orphan_table"},
        "duplicate field": {"different"},
        "_id field order": {"missing_doc"},
        "canonical key in another field order": {"key_mismatch"},
        "kept table of a replaced collection": set(),
        "duplicate field as $fieldPairs": set(),
        "duplicate field, $fieldPairs wrong": {"different"},
    }
    got = {name: {d["kind"] for d in diffs} for name, diffs in outcomes.items()}
    assert got == expected, {n: compare.summarize(outcomes[n]) for n in got if got[n] !=
                             expected.get(n)}
    order = next(d for d in outcomes["_id field order"] if d["kind"] == "missing_doc")
    assert "field order" in order["detail"]


def _tool(mode, fidelity, lines):
    p = subprocess.run([build_path("tests", "bin", "mg_schema_tool"), mode, fidelity],
                       input="\n".join(lines) + "\n", capture_output=True, text=True,
                       check=True, timeout=600)
    out = p.stdout.split("\n")[:-1]  # not splitlines(): U+2028 in a JSON string is no line end
    assert len(out) == len(lines)
    return out


def _corpus():
    p = subprocess.run([build_path("tests", "bin", "mg_schema_tool"), "corpus"],
                       capture_output=True, text=True, check=True, timeout=120)
    return [line.split("\t")[0] for line in p.stdout.splitlines() if line]


@pytest.mark.parametrize("fidelity", ["relaxed", "exact"])
def test_decoder_reads_what_the_renderer_writes(postgres, fidelity):
    rng = random.Random(20240607)
    options = gen.GenOptions(exclude=gen.HOLES)
    vg = gen.ValueGen(rng, options)
    docs = [B.decode(bytes.fromhex(h)) for h in _corpus()]
    ncorpus = len(docs)
    for i in range(3000):
        docs.append(B.doc(("_id", B.i32(i)), ("v", vg.value(4)), ("w", vg.scalar()),
                          ("d", vg.document(3))))
    docs = [d for d in docs if not gen.value_tags(d)]
    rendered = _tool("render", fidelity, [B.encode(d).hex() for d in docs])
    refused = [(d, r) for d, r in zip(docs, rendered) if r.startswith("ERR")]
    # the renderer refuses only what the mapping says it cannot hold (keys or regexes
    # that are not UTF-8); nothing generated here is such
    assert not refused, [(B.show(d, 200), r) for d, r in refused[:5]]
    conn = postgres.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t (i int, doc jsonb)")
            cur.executemany("INSERT INTO t VALUES (%s, %s)", list(enumerate(rendered)))
            cur.execute("SELECT i, doc::text FROM t ORDER BY i")
            stored = cur.fetchall()
    finally:
        conn.close()
    relaxed = fidelity == "relaxed"
    bad = []
    for (i, text), d in zip(stored, docs):
        try:
            back = compare.decode_doc(text)
        except compare.DecodeError as e:
            bad.append((i, B.show(d, 300), f"undecodable: {e}"))
            continue
        if compare.canon(back, relaxed) != compare.canon(d, relaxed):
            bad.append((i, B.show(d, 300), B.show(back, 300)))
    assert not bad, (f"{len(bad)} of {len(docs)} ({ncorpus} corpus cases) differ after the "
                     f"trip through jsonb", bad[:5])
