"""tests/integration/randomized/compare.py - the randomized test's own source/target comparer.

Independent of `migrate validate` (and of every line of C in the project):

- the source is read as raw BSON and decoded by bsonx, so duplicate field
  names, field order and exact types are visible;
- the target's rows are read with psycopg2 as text and decoded by
  `decode_doc`, a Python reading of docs/type-mapping.md written from the
  document (not from the renderer's code);
- both sides are compared with MongoDB's semantics: every source document
  present exactly once, with the same fields (duplicates included), types
  and values; no extra rows; every collection of the source in scope has a
  table. Where the documented mapping itself gives something up, the
  canonical form says so explicitly (see `canon`).

What the documented mapping cannot carry, and so this comparer cannot
check: the order of fields inside documents (jsonb sorts object keys). The
order of a compound `_id`'s fields is MongoDB identity, so two documents
whose `_id`s differ only in field order must still be two rows (issue 14,
hole 1): the multiset comparison catches the collapse even without the
order.

Differences are dicts: {kind, db (role), coll, id (shown), detail}.
"""

import base64
import calendar
import datetime
import json
import re
import struct

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

import bsonx as B

RAW = CodecOptions(document_class=RawBSONDocument)


class DecodeError(ValueError):
    """DecodeError: target JSON that docs/type-mapping.md does not map back to BSON."""


# ---- decoding the target's JSON (docs/type-mapping.md, "The table") ----

class _Obj:
    """_Obj is a JSON object as parsed: its (key, value) pairs in the order read."""

    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


class _Num:
    """_Num is a JSON number with its text (is_float: it has '.', 'e' or 'E')."""

    __slots__ = ("text", "is_float")

    def __init__(self, text, is_float):
        self.text = text
        self.is_float = is_float


def _bad_constant(name):
    raise DecodeError(f"JSON constant {name} (jsonb never stores it)")


def parse_json(text):
    """parse_json parses JSON keeping objects as _Obj and numbers as _Num (their text)."""
    return json.loads(text, object_pairs_hook=_Obj, parse_float=lambda t: _Num(t, True),
                      parse_int=lambda t: _Num(t, False), parse_constant=_bad_constant)


WRAPPER_SETS = {frozenset(s) for s in (
    ("$oid",), ("$symbol",), ("$numberInt",), ("$numberLong",), ("$numberDouble",),
    ("$numberDecimal",), ("$binary",), ("$code",), ("$code", "$scope"), ("$timestamp",),
    ("$regularExpression",), ("$dbPointer",), ("$date",), ("$minKey",), ("$maxKey",),
    ("$undefined",), ("$stringBase64",), ("$literal",))}

_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?Z$")


def _u8(s):
    return s.encode("utf-8", "surrogatepass")


def _expect(cond, what):
    if not cond:
        raise DecodeError(what)


def _string_slot(j, where):
    """a string, or the $stringBase64 object standing for one (NUL / not UTF-8)."""
    if isinstance(j, str):
        return _u8(j)
    if isinstance(j, _Obj) and [k for k, _ in j.pairs] == ["$stringBase64"]:
        return _b64(j.pairs[0][1], where)
    raise DecodeError(f"{where}: expected a string")


def _b64(j, where):
    _expect(isinstance(j, str), f"{where}: base64 must be a string")
    try:
        return base64.b64decode(j, validate=True)
    except ValueError as e:
        raise DecodeError(f"{where}: bad base64: {e}") from None


def _int_text(j, where, lo, hi):
    _expect(isinstance(j, str) and re.fullmatch(r"-?\d+", j), f"{where}: expected digits")
    n = int(j)
    _expect(lo <= n <= hi, f"{where}: out of range")
    return n


def _json_uint32(j, where):
    _expect(isinstance(j, _Num) and not j.is_float, f"{where}: expected an integer")
    n = int(j.text)
    _expect(0 <= n < 2 ** 32, f"{where}: out of uint32 range")
    return n


def _fields(obj, where):
    d = dict(obj.pairs)
    _expect(len(d) == len(obj.pairs), f"{where}: duplicate keys")
    return d


def _double_text(t, where):
    if t == "NaN":
        return B.dbl_bits(0x7FF8000000000000)
    if t == "Infinity":
        return B.dbl_bits(0x7FF0000000000000)
    if t == "-Infinity":
        return B.dbl_bits(0xFFF0000000000000)
    if t.startswith("bits:"):
        _expect(re.fullmatch(r"[0-9a-fA-F]{16}", t[5:]), f"{where}: bad bits")
        return B.dbl_bits(int(t[5:], 16))
    _expect(re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", t), f"{where}: bad double {t!r}")
    return B.dbl(float(t))  # Python's float() is correctly rounded, as strtod


def _date_iso(t, where):
    m = _ISO.match(t)
    _expect(m, f"{where}: bad ISO date {t!r}")
    y, mo, d, h, mi, sec, frac = m.groups()
    secs = calendar.timegm(datetime.datetime(int(y), int(mo), int(d), int(h), int(mi),
                                             int(sec)).timetuple())
    return secs * 1000 + (int(frac.ljust(3, "0")) if frac else 0)


def _wrapper(obj, where):
    f = _fields(obj, where)
    keys = frozenset(f)
    if keys == {"$oid"}:
        v = f["$oid"]
        _expect(isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{24}", v), f"{where}: bad $oid")
        return (B.OID, bytes.fromhex(v))
    if keys == {"$symbol"}:
        return (B.SYMBOL, _string_slot(f["$symbol"], where))
    if keys == {"$numberInt"}:
        return B.i32(_int_text(f["$numberInt"], where, -2 ** 31, 2 ** 31 - 1))
    if keys == {"$numberLong"}:
        return B.i64(_int_text(f["$numberLong"], where, -2 ** 63, 2 ** 63 - 1))
    if keys == {"$numberDouble"}:
        _expect(isinstance(f["$numberDouble"], str), f"{where}: $numberDouble needs a string")
        return _double_text(f["$numberDouble"], where)
    if keys == {"$numberDecimal"}:
        t = f["$numberDecimal"]
        _expect(isinstance(t, str), f"{where}: $numberDecimal needs a string")
        if t.startswith("bits:"):
            _expect(re.fullmatch(r"[0-9a-fA-F]{32}", t[5:]), f"{where}: bad decimal bits")
            hi, lo = int(t[5:21], 16), int(t[21:], 16)
            return (B.DECIMAL, struct.pack("<QQ", lo, hi))
        v = B.decimal_parse(t)
        _expect(v is not None, f"{where}: bad decimal {t!r}")
        return v
    if keys == {"$binary"}:
        inner = f["$binary"]
        _expect(isinstance(inner, _Obj), f"{where}: $binary needs an object")
        g = _fields(inner, where)
        _expect(set(g) == {"base64", "subType"}, f"{where}: $binary keys {sorted(g)}")
        st = g["subType"]
        _expect(isinstance(st, str) and re.fullmatch(r"[0-9a-fA-F]{1,2}", st),
                f"{where}: bad subType")
        data = _b64(g["base64"], where)
        sub = int(st, 16)
        if sub == 2:  # old binary: its inner length is written again
            data = struct.pack("<i", len(data)) + data
        return (B.BINARY, sub, data)
    if keys == {"$code"}:
        return (B.CODE, _string_slot(f["$code"], where))
    if keys == {"$code", "$scope"}:
        sc = f["$scope"]
        _expect(isinstance(sc, _Obj), f"{where}: $scope must be an object")
        return (B.CODEWSCOPE, _string_slot(f["$code"], where),
                _document(sc, where + ".$scope", plain=True))
    if keys == {"$timestamp"}:
        inner = f["$timestamp"]
        _expect(isinstance(inner, _Obj), f"{where}: $timestamp needs an object")
        g = _fields(inner, where)
        _expect(set(g) == {"t", "i"}, f"{where}: $timestamp keys")
        return (B.TIMESTAMP, _json_uint32(g["t"], where), _json_uint32(g["i"], where))
    if keys == {"$regularExpression"}:
        inner = f["$regularExpression"]
        _expect(isinstance(inner, _Obj), f"{where}: $regularExpression needs an object")
        g = _fields(inner, where)
        _expect(set(g) == {"pattern", "options"}, f"{where}: $regularExpression keys")
        _expect(isinstance(g["pattern"], str) and isinstance(g["options"], str),
                f"{where}: regex parts must be strings")
        return (B.REGEX, _u8(g["pattern"]), _u8(g["options"]))
    if keys == {"$dbPointer"}:
        inner = f["$dbPointer"]
        _expect(isinstance(inner, _Obj), f"{where}: $dbPointer needs an object")
        g = _fields(inner, where)
        _expect(set(g) == {"$ref", "$id"}, f"{where}: $dbPointer keys")
        oid = _wrapper(g["$id"], where) if isinstance(g["$id"], _Obj) else None
        _expect(oid is not None and oid[0] == B.OID, f"{where}: $dbPointer.$id must be $oid")
        return (B.DBPOINTER, _string_slot(g["$ref"], where), oid[1])
    if keys == {"$date"}:
        v = f["$date"]
        if isinstance(v, str):
            return (B.DATE, _date_iso(v, where))
        _expect(isinstance(v, _Obj) and [k for k, _ in v.pairs] == ["$numberLong"],
                f"{where}: bad $date")
        return (B.DATE, _int_text(v.pairs[0][1], where, -2 ** 63, 2 ** 63 - 1))
    if keys == {"$minKey"}:
        _expect(isinstance(f["$minKey"], _Num) and f["$minKey"].text == "1", f"{where}: $minKey")
        return B.MINKEY_V
    if keys == {"$maxKey"}:
        _expect(isinstance(f["$maxKey"], _Num) and f["$maxKey"].text == "1", f"{where}: $maxKey")
        return B.MAXKEY_V
    if keys == {"$undefined"}:
        _expect(f["$undefined"] is True, f"{where}: $undefined must be true")
        return B.UNDEFINED_V
    if keys == {"$stringBase64"}:
        return (B.STRING, _b64(f["$stringBase64"], where))
    if keys == {"$literal"}:
        inner = f["$literal"]
        _expect(isinstance(inner, _Obj), f"{where}: $literal needs an object")
        return _document(inner, where, plain=True)
    raise DecodeError(f"{where}: not a wrapper")  # not reached


def _document(obj, where, plain=False):
    """_document maps a JSON object; plain: never read it as a wrapper (top level,
    $scope, $literal's value)."""
    if not plain and frozenset(k for k, _ in obj.pairs) in WRAPPER_SETS:
        return _wrapper(obj, where)
    return (B.DOC, tuple((_u8(k), decode_value(v, f"{where}.{k}")) for k, v in obj.pairs))


def decode_value(j, where="$"):
    """decode_value maps parsed JSON (parse_json) back to a bsonx value."""
    if isinstance(j, _Obj):
        return _document(j, where)
    if isinstance(j, list):
        return (B.ARRAY, tuple((str(i).encode(), decode_value(x, f"{where}.{i}"))
                               for i, x in enumerate(j)))
    if isinstance(j, str):
        return (B.STRING, _u8(j))
    if j is True or j is False:
        return (B.BOOL, j)
    if j is None:
        return B.NULL_V
    if isinstance(j, _Num):
        if j.is_float:
            return _double_text(j.text, where)
        n = int(j.text)
        if -2 ** 31 <= n < 2 ** 31:
            return B.i32(n)
        if -2 ** 63 <= n < 2 ** 63:
            return B.i64(n)
        return B.dbl(float(j.text))
    raise DecodeError(f"{where}: unexpected JSON {j!r}")


def decode_doc(text):
    """decode_doc maps the doc column's JSON text back to a bsonx document value."""
    j = parse_json(text)
    _expect(isinstance(j, _Obj), "the document is not a JSON object")
    return _document(j, "$", plain=True)


# ---- the canonical form: what the comparison treats as equal ----

_NAN = 0x7FF8000000000000
_DEC_NAN = B.decimal_special("nan")


def canon(v, relaxed=True):
    """canon is the hashable form two equal values share.

    Kept exact: types (int32, int64, double, decimal are distinct), double
    bits (-0.0 is not 0.0), string bytes, binary subtypes, duplicate field
    names (a document is the multiset of its (key, value) pairs).
    Given up, because the documented mapping gives them up: the order of a
    document's fields (jsonb sorts keys) and array keys (renumbered). In
    relaxed fidelity also docs/type-mapping.md's "Relaxed equivalents": an
    int64 within int32 range is int32, every double NaN is the quiet NaN,
    and a Decimal128 NaN (sign, payload, sNaN) or non-canonical significand
    is the encoding of its text."""
    t = v[0]
    if t == B.DOC:
        pairs = [(k, canon(x, relaxed)) for k, x in v[1]]
        keys = [k for k, _ in pairs]
        if len(set(keys)) == len(keys):
            pairs.sort(key=lambda kv: kv[0])
        else:
            pairs.sort(key=lambda kv: (kv[0], repr(kv[1])))
        return ("D", tuple(pairs))
    if t == B.ARRAY:
        return ("A", tuple(canon(x, relaxed) for _, x in v[1]))
    if t == B.CODEWSCOPE:
        return (t, v[1], canon(v[2], relaxed))
    if relaxed:
        if t == B.INT64 and -2 ** 31 <= v[1] < 2 ** 31:
            return (B.INT32, v[1])
        if t == B.DOUBLE and (v[1] >> 52) & 0x7FF == 0x7FF and v[1] & 0xFFFFFFFFFFFFF:
            return (B.DOUBLE, _NAN)
        if t == B.DECIMAL:
            sign, kind, coef, exp = B.decimal_parts(v[1])
            if kind in ("nan", "snan"):
                return _DEC_NAN
            if kind == "finite" and coef > 9999999999999999999999999999999999:
                return B.decimal_parse(B.decimal_text(v[1]))
    return v


def id_key(v, relaxed=False):
    """id_key groups _ids that differ at most in field order (the jsonb view of an _id),
    and in relaxed fidelity by its equivalents (NumberLong(1) and NumberInt(1))."""
    return canon(v, relaxed)


# ---- reading both sides ----

def read_source(client, dbname):
    """read_source returns {collection: [document values]} of one source database (raw BSON)."""
    out = {}
    db = client[dbname]
    for name in db.list_collection_names():
        if name.startswith("system."):
            continue
        coll = db.get_collection(name, codec_options=RAW)
        out[name] = [B.decode(d.raw) for d in coll.find(batch_size=200)]
    return out


def read_mapping(conn, dbnames):
    """read_mapping returns {(db, coll): row dict} from the state schema's collections table."""
    with conn.cursor() as cur:
        cur.execute("SELECT db, coll, schema_name, table_name, key_type, status, error "
                    "FROM _migrate.collections WHERE db = ANY(%s)", (list(dbnames),))
        cols = [c[0] for c in cur.description]
        return {(r[0], r[1]): dict(zip(cols, r)) for r in cur.fetchall()}


def read_tables(conn, schemas):
    """read_tables returns {(schema, table): key column type} of every table in schemas."""
    with conn.cursor() as cur:
        cur.execute("SELECT t.table_schema, t.table_name, c.data_type FROM "
                    "information_schema.tables t LEFT JOIN information_schema.columns c "
                    "ON c.table_schema = t.table_schema AND c.table_name = t.table_name "
                    "AND c.column_name = '_id' WHERE t.table_schema = ANY(%s)",
                    (list(schemas),))
        return {(r[0], r[1]): r[2] for r in cur.fetchall()}


def read_rows(conn, schema, table):
    """read_rows returns [(key column text, doc text)] of one table."""
    with conn.cursor() as cur:
        q = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
        cur.execute(f"SELECT _id::text, doc::text FROM {q}")
        return cur.fetchall()


# ---- the comparison ----

def _key_check(keytype, key_text, _id, relaxed):
    """_key_check returns None when the key column holds _id as documented, else why not."""
    if keytype == "jsonb":
        try:
            k = decode_value(parse_json(key_text))
        except (DecodeError, ValueError) as e:
            return f"key column does not decode: {e}"
        return None if canon(k, relaxed) == canon(_id, relaxed) else \
            f"key column {key_text[:120]} is not the document's _id"
    if keytype == "text":
        if _id[0] == B.OID:
            return None if key_text == _id[1].hex() else f"key {key_text!r} is not the ObjectId hex"
        if _id[0] == B.STRING:
            return None if _u8(key_text) == _id[1] else f"key {key_text[:80]!r} is not the string"
        return None  # not a documented text key: another encoding (not checked)
    if keytype == "bigint":
        if _id[0] in (B.INT32, B.INT64):
            return None if int(key_text) == _id[1] else f"key {key_text} is not the integer"
        return f"a bigint key holds a non-integer _id ({B.show(_id, 80)})"
    return None


def _field_diff(src, tgt, relaxed, limit=6):
    """_field_diff names the top-level fields that differ between two documents."""
    out = []
    sk = [(k, canon(v, relaxed), v) for k, v in src[1]]
    tk = [(k, canon(v, relaxed), v) for k, v in tgt[1]]
    tleft = list(tk)
    for k, c, v in sk:
        hit = next((x for x in tleft if x[0] == k and x[1] == c), None)
        if hit is not None:
            tleft.remove(hit)
            continue
        other = next((x for x in tleft if x[0] == k), None)
        if other is not None:
            tleft.remove(other)
            out.append(f"{k.decode('utf-8', 'replace')!r}: source {B.show(v, 160)} "
                       f"target {B.show(other[2], 160)}")
        else:
            out.append(f"{k.decode('utf-8', 'replace')!r}: source {B.show(v, 160)} "
                       f"target (absent)")
    for k, _, v in tleft:
        out.append(f"{k.decode('utf-8', 'replace')!r}: source (absent) target {B.show(v, 160)}")
    if len(out) > limit:
        out = out[:limit] + [f"... {len(out) - limit} more"]
    return out


def compare_collection(role, coll, src_docs, rows, keytype, relaxed):
    """compare_collection compares one collection's documents with its table's rows."""
    diffs = []
    tgt = []
    for key_text, text in rows:
        try:
            d = decode_doc(text)
        except (DecodeError, ValueError) as e:
            diffs.append({"kind": "undecodable_row", "db": role, "coll": coll, "id": key_text[:120],
                          "detail": str(e)[:300]})
            continue
        _id = B.get(d, "_id")
        if _id is None:
            diffs.append({"kind": "row_without_id", "db": role, "coll": coll, "id": key_text[:120],
                          "detail": B.show(d, 200)})
            continue
        why = _key_check(keytype, key_text, _id, relaxed)
        if why:
            diffs.append({"kind": "key_mismatch", "db": role, "coll": coll,
                          "id": B.show(_id, 120), "detail": why})
        tgt.append(d)
    src_c = {}
    for d in src_docs:
        src_c.setdefault(canon(d, relaxed), []).append(d)
    tgt_c = {}
    for d in tgt:
        tgt_c.setdefault(canon(d, relaxed), []).append(d)
    missing, extra = [], []
    for c, ds in src_c.items():
        n = len(tgt_c.get(c, ()))
        missing.extend(ds[n:])
    for c, ds in tgt_c.items():
        n = len(src_c.get(c, ()))
        extra.extend(ds[n:])
    extra_by_id = {}
    for d in extra:
        extra_by_id.setdefault(id_key(B.get(d, "_id"), relaxed), []).append(d)
    src_ids = {}
    for d in src_docs:
        src_ids.setdefault(id_key(B.get(d, "_id") or B.NULL_V, relaxed), []).append(d)
    for d in missing:
        _id = B.get(d, "_id") or B.NULL_V
        k = id_key(_id, relaxed)
        cand = extra_by_id.get(k)
        if cand:
            t = cand.pop(0)
            diffs.append({"kind": "different", "db": role, "coll": coll, "id": B.show(_id, 200),
                          "detail": _field_diff(d, t, relaxed), "_id": _id})
            continue
        detail = "not in the target"
        if len(src_ids.get(k, ())) > 1:
            detail = (f"not in the target; the source holds {len(src_ids[k])} documents whose "
                      f"_ids differ only in field order (or duplicate fields): "
                      + ", ".join(B.show(B.get(x, "_id"), 80) for x in src_ids[k][:3]))
        diffs.append({"kind": "missing_doc", "db": role, "coll": coll, "id": B.show(_id, 200),
                      "detail": detail, "_id": _id})
    for ds in extra_by_id.values():
        for d in ds:
            diffs.append({"kind": "extra_row", "db": role, "coll": coll,
                          "id": B.show(B.get(d, "_id"), 200), "detail": B.show(d, 300),
                          "_id": B.get(d, "_id")})
    return diffs


class TargetView:
    """TargetView: the mapping and tables of a set of source databases on the target."""

    def __init__(self, conn, dbnames):
        self.conn = conn
        self.mapping = read_mapping(conn, dbnames)
        schemas = set(dbnames) | {m["schema_name"] for m in self.mapping.values()}
        self.tables = read_tables(conn, schemas)


def compare_slot(client, target, dbnames, relaxed=True):
    """compare_slot compares the source databases of one scenario with the target.

    dbnames maps a role ("main", "aux") to a source database name; target is
    a TargetView (or a psycopg2 connection). Returns a list of differences."""
    if not isinstance(target, TargetView):
        target = TargetView(target, dbnames.values())
    diffs = []
    for role, dbname in sorted(dbnames.items()):
        src = read_source(client, dbname)
        mapped = {c: m for (d, c), m in target.mapping.items() if d == dbname}
        used_tables = set()
        for coll in sorted(set(src) | set(mapped)):
            m = mapped.get(coll)
            docs = src.get(coll, [])
            if m is None:
                diffs.append({"kind": "missing_collection", "db": role, "coll": coll, "id": None,
                              "detail": f"{len(docs)} documents; no table in the plan "
                                        f"(_migrate.collections has no {dbname}.{coll})"})
                continue
            st = (m["schema_name"], m["table_name"])
            used_tables.add(st)
            if st not in target.tables:
                diffs.append({"kind": "missing_collection", "db": role, "coll": coll, "id": None,
                              "detail": f"planned table {st[0]}.{st[1]} does not exist"})
                continue
            if coll in src and m.get("status") == "failed":
                note = {"kind": "collection_failed", "db": role, "coll": coll, "id": None,
                        "detail": (m.get("error") or "")[:400]}
            else:
                note = None
            rows = read_rows(target.conn, *st)
            d = compare_collection(role, coll, docs, rows, target.tables[st], relaxed)
            if d and note:
                diffs.append(note)
            diffs.extend(d)
        for (schema, table), _ in target.tables.items():
            if schema != dbname or (schema, table) in used_tables:
                continue
            if any((m["schema_name"], m["table_name"]) == (schema, table)
                   for m in target.mapping.values()):
                continue  # another database's table (--target-schema)
            rows = read_rows(target.conn, schema, table)
            if rows:
                diffs.append({"kind": "orphan_table", "db": role, "coll": table, "id": None,
                              "detail": f"{len(rows)} rows in {schema}.{table}, which no "
                                        f"source collection maps to"})
    return diffs


def summarize(diffs, limit=8):
    """summarize renders differences as lines (at most limit, then a count)."""
    lines = []
    for d in diffs[:limit]:
        det = d["detail"]
        if isinstance(det, list):
            det = "; ".join(det)
        lines.append(f"  {d['kind']}: {d['db']}.{d['coll']}"
                     + (f" _id {d['id']}" if d.get("id") else "") + f": {det}")
    if len(diffs) > limit:
        lines.append(f"  ... and {len(diffs) - limit} more")
    return lines


def signature(diffs):
    """signature is the set of difference kinds (what a shrink step must keep)."""
    return frozenset(d["kind"] for d in diffs)
