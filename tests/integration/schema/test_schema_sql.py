"""Integration: the SQL helper functions init creates in every target schema
(docs/application.md), against a real PostgreSQL 15.

Each helper's output is read back by the reverse mapping (mg_schema_tool
parse exact, i.e. mg_schema_json_parse) and the BSON value compared with
what the helper was given: the type (a double stays a double, an int64 an
int64) and the exact value (the double's bits, the date's milliseconds, the
decimal's 128 bits, the binary's subtype and bytes). The helpers are
installed in a schema whose name holds a quote, the dollar quote of the
function bodies and non-ASCII letters, twice (CREATE OR REPLACE).
Randomized parts print their seed (MG_TEST_SEED sets it).
"""

import json
import os
import random
import struct
import subprocess

import bson
import psycopg2
import pytest

TOOL = os.path.join(os.environ.get("MG_BUILD_DIR", "../../build"), "tests", "bin",
                    "mg_schema_tool")
SCHEMA = 'app "x" $mg$ \u00e9t\u00e9'
Q = '"' + SCHEMA.replace('"', '""') + '"'


def tool(*args, lines=()):
    """tool runs mg_schema_tool: one line in, one line out, split on "\\n" only (an error
    message can quote a key holding U+2028 or \\x1c, which splitlines() would split on)."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    out = subprocess.run([TOOL, *args], input=data, capture_output=True, timeout=300,
                         check=True).stdout.decode("utf-8", "replace")
    return out.split("\n")[:-1]


@pytest.fixture(scope="module")
def pg(session_postgres):
    conn = session_postgres.connect()
    ddl = "\n".join(tool("helpers", SCHEMA))
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {Q}")
        cur.execute(ddl)
        cur.execute(ddl)  # a re-run replaces them
    yield conn
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {Q} CASCADE")
    conn.close()


def seed():
    s = int(os.environ.get("MG_TEST_SEED", random.randrange(1 << 32)))
    print(f"seed {s} (MG_TEST_SEED={s} repeats it)")
    return random.Random(s)


def values(pg, expr, params):
    """values evaluates {"v": expr} for each parameter; returns the reverse mapping's
    (BSON type, value bytes) of v."""
    texts = []
    with pg.cursor() as cur:
        for p in params:
            cur.execute(f"SELECT jsonb_build_object('v', {expr})::text",
                        p if isinstance(p, tuple) else (p,))
            texts.append(cur.fetchone()[0])
    out = tool("parse", "exact", lines=texts)
    assert len(out) == len(texts)
    bad = [(t, o) for t, o in zip(texts, out) if o.startswith("ERR")]
    assert not bad, bad[:3]
    got = []
    for h in out:
        raw = bytes.fromhex(h)
        assert raw[5:7] == b"v\x00", h  # one element, key "v"
        got.append((raw[4], raw[7:-1]))
    return got


def refused(pg, expr, param, message):
    with pg.cursor() as cur:
        with pytest.raises(psycopg2.Error) as e:
            cur.execute(f"SELECT {expr}", (param,))
    assert message in str(e.value), e.value


def test_double_stays_the_same_double(pg):
    rnd = seed()
    xs = [0.0, 1.0, 10.0, -3.0, 0.1, 1e10, 1e22, 1e300, 1.5e-7, 5e-324, 2.2250738585072014e-308,
          1.7976931348623157e308, 2.0 ** 63, 2.0 ** 53 + 2, 123456789.0]
    xs += [struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0] for _ in range(400)]
    xs += [rnd.uniform(-1e6, 1e6) for _ in range(200)]
    xs = [x for x in xs if x == x and abs(x) != float("inf")]
    got = values(pg, f"{Q}.bson_double(%s::float8)", [repr(x) for x in xs])
    for x, (t, v) in zip(xs, got):
        assert t == 0x01, (x, t)  # a double, never an int32/int64
        assert v == struct.pack("<d", x), (x, struct.unpack("<d", v)[0])
    specials = ["NaN", "Infinity", "-Infinity", "-0"]
    got = values(pg, f"{Q}.bson_double(%s::float8)", specials)
    assert [t for t, _ in got] == [1, 1, 1, 1]
    assert struct.unpack("<d", got[0][1])[0] != struct.unpack("<d", got[0][1])[0]
    assert got[1][1] == struct.pack("<d", float("inf"))
    assert got[2][1] == struct.pack("<d", float("-inf"))
    assert got[3][1] == struct.pack("<d", -0.0)


def test_extra_float_digits_cannot_cut_a_double(pg):
    with pg.cursor() as cur:
        cur.execute("SET extra_float_digits = -15")
        try:
            got = values(pg, f"{Q}.bson_double(%s::float8)", ["0.30000000000000004"])
        finally:
            cur.execute("RESET extra_float_digits")
    assert got == [(1, struct.pack("<d", 0.30000000000000004))]


def test_date_holds_the_milliseconds(pg):
    rnd = seed()
    ms = [0, -1, 1, 253402300799999, 253402300800000, -62135596800000, 1700000000123]
    ms += [rnd.randrange(-200000000000000, 9000000000000000) for _ in range(300)]
    ms += [rnd.randrange(0, 253402300800000) for _ in range(300)]
    micros = [m * 1000 + rnd.randrange(1000) for m in ms]  # cut toward the past
    # built from whole days and microseconds of the day: exact (interval * a large
    # factor goes through a double)
    got = values(pg, f"{Q}.bson_date((timestamp 'epoch' + (%s::bigint / 86400000000) * "
                 "interval '1 day' + (%s::bigint %% 86400000000) * interval '1 microsecond') "
                 "AT TIME ZONE 'UTC')", [(u - u % 86400000000, u % 86400000000) for u in micros])
    for m, (t, v) in zip(ms, got):
        assert t == 0x09 and struct.unpack("<q", v)[0] == m, (m, t, v)
    with pg.cursor() as cur:
        cur.execute(f"SELECT {Q}.bson_date(timestamptz '2024-02-29 13:14:15.678901+00')::text")
        assert cur.fetchone()[0] == '{"$date": "2024-02-29T13:14:15.678Z"}'
        for m in ms[:50]:  # bson_date_value reads both forms back
            d, r = divmod(m, 86400000)
            cur.execute(f"SELECT {Q}.bson_date_value({Q}.bson_date(t)) = t FROM (SELECT "
                        "(timestamp 'epoch' + %s * interval '1 day' + %s * interval "
                        "'1 millisecond') AT TIME ZONE 'UTC' AS t) x", (d, r))
            assert cur.fetchone()[0] is True, m
    refused(pg, f"{Q}.bson_date(%s::timestamptz)", "infinity", "not finite")
    refused(pg, f"{Q}.bson_date_value(%s::jsonb)", '{"$date": 5}', "not a $date wrapper")


def test_oid_long_decimal_binary(pg):
    rnd = seed()
    hexes = ["5F0A1B2C3D4E5F6A7B8C9D0E", "000000000000000000000000"]
    got = values(pg, f"{Q}.bson_oid(%s)", hexes)
    assert got == [(7, bytes.fromhex(h)) for h in hexes]
    refused(pg, f"{Q}.bson_oid(%s)", "5f0a1b2c3d4e5f6a7b8c9d0", "not 24 hexadecimal digits")
    with pg.cursor() as cur:
        cur.execute(f"SELECT {Q}.bson_new_oid(), {Q}.bson_new_oid(), "
                    "extract(epoch FROM now())::bigint")
        a, b, now = cur.fetchone()
    assert a != b and len(a) == 24 and abs(int(a[:8], 16) - now) < 60
    assert values(pg, f"{Q}.bson_oid(%s)", [a]) == [(7, bytes.fromhex(a))]

    longs = [0, 5, -1, 2 ** 31, -(2 ** 63), 2 ** 63 - 1]
    got = values(pg, f"{Q}.bson_long(%s::bigint)", [str(n) for n in longs])
    assert got == [(0x12, struct.pack("<q", n)) for n in longs]  # int64 even when small

    decs = ["1.10", "-0.000123", "0", "1234567890123456789012345678901234",
            "1" + "0" * 40, "0." + "0" * 48 + "1", "NaN", "Infinity", "-Infinity",
            "9" * 34 + "0" * 6111]
    got = values(pg, f"{Q}.bson_decimal(%s::numeric)", decs)
    assert got == [(0x13, bson.Decimal128(d).bid) for d in decs]
    for d in ["12345678901234567890123456789012345", "1.2345678901234567890123456789012345",
              "1" + "0" * 6145, "0." + "0" * 6176 + "1"]:
        refused(pg, f"{Q}.bson_decimal(%s::numeric)", d, "could not make a Decimal128")

    blobs = [(b"", 0), (b"\x00\xff", 0), (bytes(range(256)), 4), (b"x" * 100, 0x80),
             (bytes(rnd.getrandbits(8) for _ in range(1000)), 255)]
    with pg.cursor() as cur:
        texts = []
        for data, sub in blobs:
            cur.execute(f"SELECT jsonb_build_object('v', {Q}.bson_binary(%s, %s))::text",
                        (psycopg2.Binary(data), sub))
            texts.append(cur.fetchone()[0])
    for (data, sub), h in zip(blobs, tool("parse", "exact", lines=texts)):
        raw = bytes.fromhex(h)
        assert raw[4] == 0x05, h
        n = struct.unpack("<i", raw[7:11])[0]
        assert (raw[11], raw[12:12 + n]) == (sub, data)
    refused(pg, f"{Q}.bson_binary('\\x00'::bytea, %s)", 256, "not 0 to 255")


def test_functions_pin_search_path(pg):
    """A function in a schema ahead on the search_path cannot stand in for a built-in."""
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = %s AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c "
                    "WHERE c LIKE 'search_path=pg_catalog, %%pg_temp')", (SCHEMA,))
        assert cur.fetchone() == (0,)
        cur.execute(f"SELECT count(*) FROM pg_proc p JOIN pg_namespace n "
                    "ON n.oid = p.pronamespace WHERE n.nspname = %s", (SCHEMA,))
        assert cur.fetchone() == (17,)


TRICKY = ['"NaN"', '"nan"', '"Infinity"', '"-0.0"', '"1e400"', '"-1e400"', '"1e-400"', '"0x10"',
          '"1.5"', '""', '"bits:7ff8000000000012"', '"bits:7ff80000000000"', '"2147483648"',
          '"-2147483648"', '"9223372036854775808"', '"-9223372036854775808"', '"007"', '"+1"',
          '"5F0A1B2C3D4E5F6A7B8C9D0E"', '"5f0a1b2c3d4e5f6a7b8c9d0"', '"Zg=="', '"Zh=="', '"Zm8="',
          '"Zm9="', '"Zg="', '"AAAA"', '"2024-02-29T00:00:00Z"', '"2023-02-29T00:00:00Z"',
          '"0000-02-29T00:00:00.1Z"', '"2024-01-01T24:00:00Z"', '"2024-04-31T00:00:00.000Z"',
          '"1999-12-31T23:59:59.9999Z"', '"1.10E-400"', '"1E+6145"', '"1E-6177"',
          '"12345678901234567890123456789012345"', '"123456789012345678901234567890123450"',
          '"Inf"', '"-infinity"', '"1e"', '"."', '"bits:' + '0' * 32 + '"', '"80"', '"1ff"',
          '1', '1.0', '-1', '0', '2', '4294967295', '4294967296', '-0', '1e308', '2e308',
          '1' + '0' * 1200, '0.' + '0' * 1200 + '1', 'true', 'false', 'null', '{}', '[]',
          '{"$oid": "5f0a1b2c3d4e5f6a7b8c9d0e"}', '{"$stringBase64": "Zg=="}',
          '{"$stringBase64": "Zh=="}', '[["a", 1]]', '[["a"]]', '[["a", 1, 2]]', '[[1, 1]]',
          '{"$numberLong": "5"}', '{"base64": "", "subType": "00"}',
          '{"base64": "", "subType": "000"}', '{"t": 1, "i": 2}', '{"t": 1.5, "i": 2}',
          '{"pattern": "a", "options": ""}', '{"pattern": 1, "options": ""}',
          '{"$ref": "a.b", "$id": {"$oid": "5f0a1b2c3d4e5f6a7b8c9d0e"}}',
          '{"$ref": "a.b", "$id": 1}']
WRAPPER_KEYS = ["$oid", "$symbol", "$numberInt", "$numberLong", "$numberDouble",
                "$numberDecimal", "$binary", "$code", "$scope", "$timestamp",
                "$regularExpression", "$dbPointer", "$date", "$minKey", "$maxKey", "$undefined",
                "$stringBase64", "$literal", "$fieldPairs"]


def objects(v, out):
    """objects lists every JSON object in v (as parsed), depth first."""
    if isinstance(v, dict):
        out.append(v)
        for x in v.values():
            objects(x, out)
    elif isinstance(v, list):
        for x in v:
            objects(x, out)
    return out


class Raw(str):
    """Raw is JSON text put into a document as is (numbers json cannot write)."""


def dump(v):
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dump(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(dump(x) for x in v) + "]"
    return json.dumps(v)


def mutate(rnd, doc):
    """mutate changes one object of doc in place: a member's value, a key, or the key set."""
    objs = objects(doc, [])
    o = rnd.choice(objs)
    op = rnd.randrange(4)
    if op == 0 and o:
        o[rnd.choice(list(o))] = Raw(rnd.choice(TRICKY))
    elif op == 1 and o:
        k = rnd.choice(list(o))
        o[rnd.choice(WRAPPER_KEYS)] = o.pop(k)
    elif op == 2:
        o[rnd.choice(WRAPPER_KEYS + ["x", "t", "i", "base64"])] = Raw(rnd.choice(TRICKY))
    elif o:
        o.pop(rnd.choice(list(o)))
    return doc


def test_bson_valid_agrees_with_the_reverse_mapping(pg):
    """bson_valid(doc), the check an application table can carry, is true exactly when the
    reverse mapping reads doc back: for every rendering of the BSON corpus and of random
    documents (both fidelities), and for seeded mutations of them aimed at the wrappers."""
    rnd = seed()
    hexes = [line.split("\t")[0] for line in tool("corpus")]
    hexes += tool("random", "300", str(rnd.randrange(1 << 31)))
    texts = []
    for fidelity in ("relaxed", "exact"):
        texts += [t for t in tool("render", fidelity, lines=hexes) if not t.startswith("ERR")]
    mutants = []
    for _ in range(3000):
        doc = json.loads(rnd.choice(texts))
        for _ in range(rnd.randrange(1, 3)):
            mutate(rnd, doc)
        mutants.append(dump(doc))
    with pg.cursor() as cur:
        cur.execute("CREATE TEMP TABLE docs (id int, doc jsonb)")
        for i, t in enumerate(texts + mutants):
            cur.execute("INSERT INTO docs VALUES (%s, %s::jsonb)", (i, t))
        cur.execute(f"SELECT id, {Q}.bson_valid(doc), doc::text FROM docs ORDER BY id")
        rows = cur.fetchall()
        cur.execute("DROP TABLE docs")
    verdicts = tool("parse", "exact", lines=[r[2] for r in rows])
    assert all(r[1] for r in rows[:len(texts)]), "a rendered document fails bson_valid"
    wrong = [(r[1], v, r[2][:300]) for r, v in zip(rows, verdicts)
             if r[1] != (not v.startswith("ERR"))]
    refused = sum(1 for v in verdicts if v.startswith("ERR"))
    print(f"{len(rows)} documents, {refused} refused by the reverse mapping")
    assert refused > 500  # the mutations do reach the wrappers
    assert not wrong, f"{len(wrong)} disagreements, e.g. {wrong[:5]}"


def test_bson_valid_as_a_check_constraint(pg):
    with pg.cursor() as cur:
        cur.execute(f"CREATE TABLE {Q}.t (_id text PRIMARY KEY, doc jsonb NOT NULL, "
                    f"CONSTRAINT t_doc_bson CHECK ({Q}.bson_valid(doc)))")
        try:
            cur.execute(f"INSERT INTO {Q}.t VALUES ('a', jsonb_build_object('at', "
                        f"{Q}.bson_date(now()), 'n', {Q}.bson_double(1)))")
            for bad in ['{"at": {"$date": "yesterday"}}', '{"n": {"$numberLong": "1.5"}}',
                        '{"o": {"$oid": "xyz"}}', '[1]']:
                with pytest.raises(psycopg2.errors.CheckViolation):
                    cur.execute(f"INSERT INTO {Q}.t VALUES ('b', %s::jsonb)", (bad,))
        finally:
            cur.execute(f"DROP TABLE {Q}.t")
