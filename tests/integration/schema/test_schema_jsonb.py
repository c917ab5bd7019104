"""Integration: the BSON -> JSONB mapping against a real PostgreSQL 15.

mg_schema_tool (schema_tool.c) renders BSON (hex lines) to JSON, and parses
JSON back to BSON printing its canonical form. Every BSON-corpus case and a
few thousand random documents are loaded with COPY ... (FORMAT binary)
(jsonb binary = version byte 1 + the JSON text, as the copier sends it),
read back through jsonb::text (keys reordered, numbers normalised) and
mapped back: the canonical form must equal the original's, in both
fidelities.
"""

import io
import os
import struct
import subprocess

import pytest

TOOL = os.path.join(os.environ.get("MG_BUILD_DIR", "../../build"), "tests", "bin",
                    "mg_schema_tool")


def tool(*args, lines=()):
    """tool runs mg_schema_tool with lines on stdin; returns its output lines."""
    data = "".join(line + "\n" for line in lines)
    proc = subprocess.run([TOOL, *args], input=data, capture_output=True, text=True,
                          timeout=300, check=True)
    return proc.stdout.splitlines()


def copy_binary(conn, table, docs):
    """copy_binary loads (id, json text) rows with COPY FROM STDIN (FORMAT binary)."""
    out = io.BytesIO()
    out.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
    for i, text in enumerate(docs):
        payload = b"\x01" + text.encode("utf-8")  # jsonb binary format version 1
        out.write(struct.pack("!hii", 2, 4, i))
        out.write(struct.pack("!i", len(payload)) + payload)
    out.write(struct.pack("!h", -1))
    out.seek(0)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, doc jsonb NOT NULL)")
        cur.copy_expert(f"COPY {table} (id, doc) FROM STDIN (FORMAT binary)", out)


def read_back(conn, table):
    """read_back returns doc::text of every row in id order."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT doc::text FROM {table} ORDER BY id")
        return [row[0] for row in cur.fetchall()]


def check_through_jsonb(postgres, hexes, labels, fidelity, table):
    """Renders hexes, loads them, reads them back and compares canonical forms."""
    rendered = tool("render", fidelity, lines=hexes)
    assert len(rendered) == len(hexes)
    failed = [(labels[i], r) for i, r in enumerate(rendered) if r.startswith("ERR ")]
    assert not failed, failed[:5]
    conn = postgres.connect()
    try:
        copy_binary(conn, table, rendered)
        texts = read_back(conn, table)
    finally:
        conn.close()
    assert len(texts) == len(hexes)
    want = tool("canon", fidelity, lines=hexes)
    got = tool("parse", fidelity, lines=texts)
    assert len(want) == len(got) == len(hexes)
    errors = [line for line in want + got if line.startswith("ERR ")]
    assert not errors, errors[:5]
    bad = [(labels[i], rendered[i], texts[i], got[i])
           for i in range(len(hexes)) if got[i] != want[i]]
    assert not bad, bad[:3]
    return rendered, texts


@pytest.fixture(scope="module")
def corpus():
    rows = [line.split("\t", 1) for line in tool("corpus")]
    assert len(rows) >= 700
    return [r[0] for r in rows], [r[1] for r in rows]


@pytest.mark.parametrize("fidelity", ["exact", "relaxed"])
def test_corpus_through_jsonb(postgres, corpus, fidelity):
    hexes, labels = corpus
    check_through_jsonb(postgres, hexes, labels, fidelity, f"corpus_{fidelity}")


@pytest.mark.parametrize("fidelity", ["exact", "relaxed"])
def test_random_documents_through_jsonb(postgres, fidelity):
    hexes = tool("random", "3000", "20261126")
    labels = [f"random #{i}" for i in range(len(hexes))]
    check_through_jsonb(postgres, hexes, labels, fidelity, f"random_{fidelity}")


def test_doubles_stay_doubles_and_queryable(postgres):
    """jsonb keeps a '.' in every relaxed double, so it cannot turn into an integer."""
    docs = {"one": 1.0, "huge": 1e300, "tiny": 5e-324, "neg": -2.5e-10, "max": 1.7976931348623157e308}
    # BSON built by hand: {"v": double}
    hexes = []
    for value in docs.values():
        body = b"\x01v\x00" + struct.pack("<d", value)
        doc = struct.pack("<i", 4 + len(body) + 1) + body + b"\x00"
        hexes.append(doc.hex())
    rendered, texts = check_through_jsonb(postgres, hexes, list(docs), "relaxed", "doubles")
    for text in texts:
        number = text.split(": ", 1)[1].rstrip("}")
        assert "." in number and "e" not in number.lower(), text
    rows = postgres.query("SELECT (doc->>'v')::numeric > 1, jsonb_typeof(doc->'v') "
                          "FROM doubles ORDER BY id")
    assert rows == [(False, "number"), (True, "number"), (False, "number"), (False, "number"),
                    (True, "number")]


def test_postgres_refuses_what_the_mapping_escapes(postgres):
    """The facts behind the escapes: jsonb rejects \\u0000, NaN and keeps the last duplicate."""
    import psycopg2

    conn = postgres.connect()
    try:
        with conn.cursor() as cur:
            for bad in ['"a\\u0000b"', "NaN", "Infinity"]:
                with pytest.raises(psycopg2.Error):
                    cur.execute("SELECT %s::jsonb", (bad,))
            cur.execute("""SELECT '{"b": 1, "a": 2, "a": 3}'::jsonb::text, '-0.0'::jsonb::text,
                                  '1e300'::jsonb::text LIKE '1000%' AND '1e300'::jsonb::text
                                  NOT LIKE '%.%'""")
            assert cur.fetchone() == ('{"a": 3, "b": 1}', "0.0", True)
    finally:
        conn.close()
    # our rendering of a NUL string is accepted and reads back
    body = b"\x02s\x00" + struct.pack("<i", 4) + b"a\x00b\x00"
    doc = struct.pack("<i", 4 + len(body) + 1) + body + b"\x00"
    check_through_jsonb(postgres, [doc.hex()], ["nul"], "relaxed", "nul")
