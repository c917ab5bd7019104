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
import fractions
import hashlib
import json
import math
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
    ("$undefined",), ("$stringBase64",), ("$literal",), ("$fieldPairs",))}

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
                _document(sc, where + ".$scope", plain=True, pairs=True))
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
    if keys == {"$fieldPairs"}:
        return _field_pairs(f["$fieldPairs"], where)
    raise DecodeError(f"{where}: not a wrapper")  # not reached


def _field_pairs(j, where):
    """_field_pairs reads a $fieldPairs list (docs/type-mapping.md "Duplicate keys"): every
    member of a document, in order, as [name, value] pairs."""
    _expect(isinstance(j, list), f"{where}: $fieldPairs must be an array")
    out = []
    for i, p in enumerate(j):
        _expect(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str),
                f"{where}.$fieldPairs.{i}: not a [name, value] pair")
        _expect("\0" not in p[0], f"{where}.$fieldPairs.{i}: a name holding U+0000")
        out.append((_u8(p[0]), decode_value(p[1], f"{where}.{p[0]}")))
    return (B.DOC, tuple(out))


def _document(obj, where, plain=False, pairs=False):
    """_document maps a JSON object; plain: never read it as a wrapper (top level,
    $scope, $literal's value); pairs: it may be in the pairs form (top level, $scope)."""
    keys = frozenset(k for k, _ in obj.pairs)
    if not plain and keys in WRAPPER_SETS:
        return _wrapper(obj, where)
    if pairs and len(obj.pairs) <= 2 and "$fieldPairs" in keys and keys <= {"$fieldPairs", "_id"}:
        # the pairs form of a top-level document (with its _id's copy) or of a $scope
        f = _fields(obj, where)
        d = _field_pairs(f["$fieldPairs"], where)
        if "_id" in f:
            _expect(canon(decode_value(f["_id"], where + "._id"), False) ==
                    canon(B.get(d, "_id") or B.NULL_V, False),
                    f"{where}: _id beside $fieldPairs is not the first _id of the list")
        return d
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
    return _document(j, "$", plain=True, pairs=True)


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


# ---- the canonical key (docs/type-mapping.md, "The canonical key") ----

KEY_MAX_BYTES = 2600
_I64 = (-2 ** 63, 2 ** 63 - 1)


def double_text(x):
    """double_text is a finite double's shortest text as docs/type-mapping.md "Doubles"
    describes it: no exponent, an integer part, '.', at least one fraction digit."""
    neg = x < 0 or (x == 0 and math.copysign(1.0, x) < 0)
    digits, _, exp = repr(abs(x)).partition("e")  # Python's repr: the shortest round trip
    m, _ = math.frexp(abs(x))
    if 0 < abs(x) < 2.2250738585072014e-308:  # the table under "Doubles": 15 digits
        for prec in (14, 15, 16):  # (more where 15 do not read back, near DBL_MIN)
            digits, _, exp = ("%.*e" % (prec, abs(x))).partition("e")
            if float(digits + "e" + exp) == abs(x):
                break
    elif m == 0.5 and abs(x) >= 2.2250738585072014e-308:  # a power of two: 16 digits, or 17
        digits, _, exp = ("%.15e" % abs(x)).partition("e")
        if float(digits + "e" + exp) != abs(x):
            digits, _, exp = ("%.16e" % abs(x)).partition("e")
    ip, _, fp = digits.partition(".")
    d = (ip + fp).lstrip("0") or "0"
    e = (int(exp) if exp else 0) - len(fp)  # value = int(ip+fp) * 10^e
    d2 = d.rstrip("0")
    e += len(d) - len(d2)
    d = d2 or "0"
    if e >= 0:
        text = d + "0" * e + ".0"
    else:
        n = -e
        if len(d) > n:
            text = d[:-n] + "." + d[-n:]
        else:
            text = "0." + "0" * (n - len(d)) + d
    return ("-" if neg else "") + text


def _num_class(sign, num, den_pow10):
    """_num_class keys a finite value (-1)^sign * num / 10^den_pow10 (num >= 0) by its class:
    i (an int64 integer), r (exactly a double) or None (neither)."""
    if den_pow10 <= 0:
        v = num * 10 ** (-den_pow10)
        n = -v if sign else v
        if _I64[0] <= n <= _I64[1]:
            return f"i{n};"
        frac = fractions.Fraction(n)
    else:
        frac = fractions.Fraction(-num if sign else num, 10 ** den_pow10)
        if frac.denominator == 1 and _I64[0] <= frac.numerator <= _I64[1]:
            return f"i{frac.numerator};"
    try:
        f = float(frac)  # correctly rounded
    except OverflowError:
        return None
    if math.isinf(f) or fractions.Fraction(f) != frac:
        return None
    return f"r{double_text(f)};"


def _kstr(b):
    try:
        ok = b"\x00" not in b and b.decode("utf-8") is not None
    except UnicodeDecodeError:
        ok = False
    return b"s%d:" % len(b) + b if ok else b"S%d:" % len(b) + b.hex().encode()


def _key_number(v):
    t = v[0]
    if t in (B.INT32, B.INT64):
        return f"i{v[1]};"
    if t == B.DOUBLE:
        x = B.double_value(v)
        if math.isnan(x):
            return "rNaN;"
        if math.isinf(x):
            return "rInfinity;" if x > 0 else "r-Infinity;"
        if x == 0:
            return "i0;"
        fr = fractions.Fraction(x)
        if fr.denominator == 1 and _I64[0] <= fr.numerator <= _I64[1]:
            return f"i{fr.numerator};"
        return f"r{double_text(x)};"
    sign, kind, coef, exp = B.decimal_parts(v[1])
    if kind in ("nan", "snan"):
        return "rNaN;"
    if kind == "inf":
        return "r-Infinity;" if sign else "rInfinity;"
    if coef > 9999999999999999999999999999999999:
        coef = 0
    if coef == 0:
        return "i0;"
    while coef % 10 == 0:
        coef, exp = coef // 10, exp + 1
    k = _num_class(sign, coef, -exp)
    return k if k else f"x{'-' if sign else ''}{coef}E{exp};"


def _key_value(v):
    """_key_value is the canonical key text (bytes) of one value."""
    t = v[0]
    if t in (B.INT32, B.INT64, B.DOUBLE, B.DECIMAL):
        return _key_number(v).encode()
    if t == B.OID:
        return v[1].hex().encode()
    if t in (B.STRING, B.SYMBOL):
        return _kstr(v[1])
    if t == B.DOC:
        return b"{" + b"".join(_kstr(k) + _key_value(x) for k, x in v[1]) + b"}"
    if t == B.ARRAY:
        return b"[" + b"".join(_key_value(x) for _, x in v[1]) + b"]"
    if t == B.BINARY:  # subtype 2's data without its inner length, as the $binary form
        data = v[2][4:] if v[1] == 2 and len(v[2]) >= 4 else v[2]
        return b"B%02x" % v[1] + data.hex().encode() + b";"
    if t == B.BOOL:
        return b"T" if v[1] else b"F"
    if t == B.DATE:
        return b"D%d;" % v[1]
    if t == B.TIMESTAMP:
        return b"t%d,%d;" % (v[1], v[2])
    if t == B.REGEX:
        return b"R" + _kstr(v[1]) + _kstr(v[2])
    if t == B.DBPOINTER:
        return b"P" + _kstr(v[1]) + v[2].hex().encode()
    if t == B.CODE:
        return b"J" + _kstr(v[1])
    if t == B.CODEWSCOPE:
        return b"K" + _kstr(v[1]) + _key_value(v[2])
    return {B.NULL: b"n", B.UNDEFINED: b"u", B.MINKEY: b"<", B.MAXKEY: b">"}[t]


def canonical_key(_id):
    """canonical_key is the key column text of _id for key type canonical (a digest when
    longer than KEY_MAX_BYTES)."""
    k = _key_value(_id)
    if len(k) > KEY_MAX_BYTES:
        return "#" + hashlib.sha256(k).hexdigest()
    return k.decode("utf-8")


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

def _integral(v):
    """_integral is the integer an _id's number holds (any numeric type), else None."""
    k = _key_number(v) if v[0] in (B.INT32, B.INT64, B.DOUBLE, B.DECIMAL) else ""
    return int(k[1:-1]) if k.startswith("i") else None


def _key_check(keytype, key_text, _id, relaxed, src_keys=None):
    """_key_check returns None when the key column holds _id as documented, else why not.

    keytype is the collection's key type in _migrate.collections (docs/type-mapping.md
    "Key types"), or for targets without one the key column's SQL type; src_keys maps
    id_key of the source's _ids to their canonical keys."""
    if keytype == "jsonb":
        try:
            k = decode_value(parse_json(key_text))
        except (DecodeError, ValueError) as e:
            return f"key column does not decode: {e}"
        return None if canon(k, relaxed) == canon(_id, relaxed) else \
            f"key column {key_text[:120]} is not the document's _id"
    if keytype == "canonical":
        # the key keeps the _id's field order, which the target's doc column (jsonb)
        # has lost: it must be the key of a source _id equal up to that order
        wants = src_keys.get(id_key(_id, relaxed)) if src_keys is not None else None
        if not wants:
            wants = {canonical_key(_id)}
            if _id[0] == B.DOC and len(_id[1]) > 1:
                return None  # no source _id to take the order from: the row is extra anyway
        return None if key_text in wants else \
            f"key {key_text[:160]!r} is not the canonical key {sorted(wants)[0][:160]!r}"
    if keytype in ("text", "text_objectid", "text_string"):
        if _id[0] == B.OID and keytype != "text_string":
            return None if key_text == _id[1].hex() else f"key {key_text!r} is not the ObjectId hex"
        if _id[0] in (B.STRING, B.SYMBOL):
            return None if _u8(key_text) == _id[1] else f"key {key_text[:80]!r} is not the string"
        if keytype == "text":
            return None  # not a documented text key: another encoding (not checked)
        return f"a {keytype} key holds {B.show(_id, 80)}"
    if keytype == "bigint":
        n = _integral(_id)
        if n is not None:
            return None if int(key_text) == n else f"key {key_text} is not the integer"
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
    src_keys = None
    if keytype == "canonical":
        src_keys = {}
        for d in src_docs:
            _id = B.get(d, "_id") or B.NULL_V
            src_keys.setdefault(id_key(_id, relaxed), set()).add(canonical_key(_id))
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
        why = _key_check(keytype, key_text, _id, relaxed, src_keys)
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


def replaced_tables(log_text):
    """replaced_tables returns {(db, table)} the follower's JSON log names in a
    cdc.rename_replaced event: a planned collection a followed rename with dropTarget
    replaced, whose table docs/cdc.md says is kept as it was, no longer written."""
    out = set()
    for line in log_text.splitlines():
        if '"cdc.rename_replaced"' not in line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "cdc.rename_replaced" and "db" in ev and "table" in ev:
            out.add((ev["db"], ev["table"]))
    return out


def compare_slot(client, target, dbnames, relaxed=True, replaced=frozenset()):
    """compare_slot compares the source databases of one scenario with the target.

    dbnames maps a role ("main", "aux") to a source database name; target is
    a TargetView (or a psycopg2 connection); replaced: {(db, table)} of tables kept by a
    followed rename onto a planned collection (replaced_tables), which may hold rows no
    collection maps to. Returns a list of differences."""
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
            d = compare_collection(role, coll, docs, rows,
                                   m.get("key_type") or target.tables[st], relaxed)
            if d and note:
                diffs.append(note)
            diffs.extend(d)
        for (schema, table), _ in target.tables.items():
            if schema != dbname or (schema, table) in used_tables:
                continue
            if any((m["schema_name"], m["table_name"]) == (schema, table)
                   for m in target.mapping.values()):
                continue  # another database's table (--target-schema)
            if (dbname, table) in replaced:
                continue  # kept as it was when its collection was replaced (docs/cdc.md)
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
