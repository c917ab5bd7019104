"""tests/integration/randomized/bsonx.py - an exact BSON value model with its own codec.

The randomized test must see what pymongo's dicts hide: duplicate field
names, field order, int32 vs int64, NaN payloads, invalid UTF-8, old binary
subtype 2, degenerate array keys. So values are plain tuples whose first
item is the BSON type code, encoded and decoded here byte for byte:

    (0x01, bits)                 double, its IEEE-754 bits as an unsigned int
    (0x02, data)                 string, the raw bytes (may be invalid UTF-8)
    (0x03, ((key, value), ...))  document: keys are bytes, order and duplicates kept
    (0x04, ((key, value), ...))  array: keys as stored ("0", "1", ... normally)
    (0x05, subtype, payload)     binary; payload as stored (subtype 2 includes
                                 its inner int32 length)
    (0x06,)                      undefined
    (0x07, oid)                  ObjectId, 12 bytes
    (0x08, flag)                 boolean
    (0x09, ms)                   UTC datetime, int64 milliseconds
    (0x0A,)                      null
    (0x0B, pattern, options)     regular expression, both bytes
    (0x0C, ns, oid)              DBPointer
    (0x0D, code)                 JavaScript code (bytes)
    (0x0E, symbol)               symbol (bytes)
    (0x0F, code, scope)          code with scope; scope is a document value
    (0x10, n)                    int32
    (0x11, t, i)                 timestamp (seconds, increment)
    (0x12, n)                    int64
    (0x13, bits16)               Decimal128, its 16 bytes as stored (little endian)
    (0x7F,) / (0xFF,)            MaxKey / MinKey

Tuples are hashable and compare by value, so a document is usable as a dict
key as it is. Nothing here imports pymongo: pymongo is only the transport
(RawBSONDocument carries these bytes unchanged).
"""

import base64
import math
import struct

DOUBLE, STRING, DOC, ARRAY, BINARY, UNDEFINED, OID, BOOL, DATE, NULL = (
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A)
REGEX, DBPOINTER, CODE, SYMBOL, CODEWSCOPE, INT32, TIMESTAMP, INT64, DECIMAL = (
    0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13)
MAXKEY, MINKEY = 0x7F, 0xFF

TYPE_NAMES = {DOUBLE: "double", STRING: "string", DOC: "object", ARRAY: "array",
              BINARY: "binData", UNDEFINED: "undefined", OID: "objectId", BOOL: "bool",
              DATE: "date", NULL: "null", REGEX: "regex", DBPOINTER: "dbPointer",
              CODE: "javascript", SYMBOL: "symbol", CODEWSCOPE: "javascriptWithScope",
              INT32: "int", TIMESTAMP: "timestamp", INT64: "long", DECIMAL: "decimal",
              MAXKEY: "maxKey", MINKEY: "minKey"}


class BSONError(ValueError):
    """BSONError: bytes that are not the BSON this module reads."""


# ---- constructors (short names keep generated code and tests readable) ----

def dbl(x):
    """dbl is the double value of a Python float."""
    return (DOUBLE, struct.unpack("<Q", struct.pack("<d", x))[0])


def dbl_bits(bits):
    return (DOUBLE, bits & 0xFFFFFFFFFFFFFFFF)


def s(text):
    """s is a string value; text may be str (UTF-8 encoded) or raw bytes."""
    return (STRING, text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text))


def key(k):
    return k.encode("utf-8", "surrogatepass") if isinstance(k, str) else bytes(k)


def doc(*pairs):
    """doc builds a document from (key, value) pairs (duplicates allowed)."""
    return (DOC, tuple((key(k), v) for k, v in pairs))


def arr(*values):
    return (ARRAY, tuple((str(i).encode(), v) for i, v in enumerate(values)))


def i32(n):
    return (INT32, int(n))


def i64(n):
    return (INT64, int(n))


NULL_V = (NULL,)
MINKEY_V = (MINKEY,)
MAXKEY_V = (MAXKEY,)
UNDEFINED_V = (UNDEFINED,)


def double_value(v):
    """double_value is the Python float of a double value."""
    return struct.unpack("<d", struct.pack("<Q", v[1]))[0]


def is_number(v):
    return v[0] in (DOUBLE, INT32, INT64, DECIMAL)


# ---- encoding ----

def _cstring(b):
    if b"\x00" in b:
        raise BSONError(f"a key or cstring cannot hold NUL: {b!r}")
    return b + b"\x00"


def _string(b):
    return struct.pack("<i", len(b) + 1) + b + b"\x00"


def encode_value(v):
    """encode_value returns the element payload of v (without type byte and key)."""
    t = v[0]
    if t == DOUBLE:
        return struct.pack("<Q", v[1])
    if t in (STRING, CODE, SYMBOL):
        return _string(v[1])
    if t in (DOC, ARRAY):
        return encode_items(v[1])
    if t == BINARY:
        return struct.pack("<iB", len(v[2]), v[1]) + v[2]
    if t in (UNDEFINED, NULL, MINKEY, MAXKEY):
        return b""
    if t == OID:
        assert len(v[1]) == 12
        return v[1]
    if t == BOOL:
        return b"\x01" if v[1] else b"\x00"
    if t == DATE:
        return struct.pack("<q", v[1])
    if t == REGEX:
        return _cstring(v[1]) + _cstring(v[2])
    if t == DBPOINTER:
        return _string(v[1]) + v[2]
    if t == CODEWSCOPE:
        body = _string(v[1]) + encode_items(v[2][1])
        return struct.pack("<i", len(body) + 4) + body
    if t == INT32:
        return struct.pack("<i", v[1])
    if t == TIMESTAMP:
        return struct.pack("<II", v[2], v[1])
    if t == INT64:
        return struct.pack("<q", v[1])
    if t == DECIMAL:
        assert len(v[1]) == 16
        return v[1]
    raise BSONError(f"cannot encode BSON type 0x{t:02x}")


def encode_items(items):
    body = b"".join(bytes([v[0]]) + _cstring(k) + encode_value(v) for k, v in items)
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def encode(d):
    """encode returns the BSON bytes of a document value."""
    if d[0] != DOC:
        raise BSONError("only a document encodes to BSON")
    return encode_items(d[1])


# ---- decoding ----

def _read_cstring(buf, pos):
    end = buf.index(b"\x00", pos)
    return buf[pos:end], end + 1


def _read_string(buf, pos):
    (n,) = struct.unpack_from("<i", buf, pos)
    if n < 1 or pos + 4 + n > len(buf) or buf[pos + 4 + n - 1] != 0:
        raise BSONError(f"bad string length {n} at {pos}")
    return buf[pos + 4:pos + 4 + n - 1], pos + 4 + n


def _decode_items(buf, pos):
    (n,) = struct.unpack_from("<i", buf, pos)
    end = pos + n
    if n < 5 or end > len(buf) or buf[end - 1] != 0:
        raise BSONError(f"bad document length {n} at {pos}")
    pos += 4
    items = []
    while pos < end - 1:
        t = buf[pos]
        k, pos = _read_cstring(buf, pos + 1)
        v, pos = _decode_value(t, buf, pos)
        items.append((k, v))
    if pos != end - 1:
        raise BSONError("document elements overrun its length")
    return tuple(items), end


def _decode_value(t, buf, pos):
    if t == DOUBLE:
        return (DOUBLE, struct.unpack_from("<Q", buf, pos)[0]), pos + 8
    if t in (STRING, CODE, SYMBOL):
        b, pos = _read_string(buf, pos)
        return (t, b), pos
    if t in (DOC, ARRAY):
        items, pos = _decode_items(buf, pos)
        return (t, items), pos
    if t == BINARY:
        n, sub = struct.unpack_from("<iB", buf, pos)
        return (BINARY, sub, bytes(buf[pos + 5:pos + 5 + n])), pos + 5 + n
    if t in (UNDEFINED, NULL, MINKEY, MAXKEY):
        return (t,), pos
    if t == OID:
        return (OID, bytes(buf[pos:pos + 12])), pos + 12
    if t == BOOL:
        return (BOOL, buf[pos] != 0), pos + 1
    if t == DATE:
        return (DATE, struct.unpack_from("<q", buf, pos)[0]), pos + 8
    if t == REGEX:
        p, pos = _read_cstring(buf, pos)
        o, pos = _read_cstring(buf, pos)
        return (REGEX, p, o), pos
    if t == DBPOINTER:
        ns, pos = _read_string(buf, pos)
        return (DBPOINTER, ns, bytes(buf[pos:pos + 12])), pos + 12
    if t == CODEWSCOPE:
        code, p2 = _read_string(buf, pos + 4)
        scope, p3 = _decode_items(buf, p2)
        return (CODEWSCOPE, code, (DOC, scope)), p3
    if t == INT32:
        return (INT32, struct.unpack_from("<i", buf, pos)[0]), pos + 4
    if t == TIMESTAMP:
        i, ts = struct.unpack_from("<II", buf, pos)
        return (TIMESTAMP, ts, i), pos + 8
    if t == INT64:
        return (INT64, struct.unpack_from("<q", buf, pos)[0]), pos + 8
    if t == DECIMAL:
        return (DECIMAL, bytes(buf[pos:pos + 16])), pos + 16
    raise BSONError(f"unknown BSON type 0x{t:02x} at {pos}")


def decode(raw):
    """decode returns the document value of BSON bytes (everything kept as stored)."""
    buf = bytes(raw)
    items, end = _decode_items(buf, 0)
    if end != len(buf):
        raise BSONError(f"{len(buf) - end} bytes after the document")
    return (DOC, items)


def get(d, name):
    """get returns the first value of field name in document d, or None."""
    k = key(name)
    for kk, v in d[1]:
        if kk == k:
            return v
    return None


def depth(v):
    """depth is the nesting depth of v (a scalar is 0, a document of scalars 1)."""
    if v[0] in (DOC, ARRAY):
        return 1 + max((depth(x) for _, x in v[1]), default=0)
    if v[0] == CODEWSCOPE:
        return 1 + depth(v[2])
    return 0


# ---- Decimal128 ----

def decimal_parts(bits16):
    """decimal_parts returns (sign, kind, coefficient, exponent) of Decimal128 bytes.

    kind is "finite", "inf", "nan" or "snan"; a coefficient above 10^34 - 1
    (a non-canonical encoding) is returned as it is."""
    lo, hi = struct.unpack("<QQ", bits16)
    sign = hi >> 63
    comb = (hi >> 58) & 0x1F
    if comb == 0x1F:
        return sign, ("snan" if (hi >> 57) & 1 else "nan"), 0, 0
    if comb == 0x1E:
        return sign, "inf", 0, 0
    if (hi >> 61) & 0x3 == 0x3:  # the 11 form: implicit 100 prefix, always > 10^34
        exp = (hi >> 47) & 0x3FFF
        coef = ((0x8 | ((hi >> 46) & 0x1)) << 110) | ((hi & 0x3FFFFFFFFFFF) << 64) | lo
    else:
        exp = (hi >> 49) & 0x3FFF
        coef = ((hi & 0x1FFFFFFFFFFFF) << 64) | lo
    return sign, "finite", coef, exp - 6176


def decimal_from_parts(sign, coef, exp):
    """decimal_from_parts encodes a finite Decimal128 (coef < 2^113, -6176 <= exp <= 6111)."""
    biased = exp + 6176
    assert 0 <= biased < 0x3000 and 0 <= coef < (1 << 113)
    hi = (sign << 63) | (biased << 49) | (coef >> 64)
    lo = coef & 0xFFFFFFFFFFFFFFFF
    return (DECIMAL, struct.pack("<QQ", lo, hi))


def decimal_special(kind, sign=0, payload=0):
    """decimal_special encodes NaN ("nan"), sNaN ("snan") or Infinity ("inf")."""
    comb = {"inf": 0x1E << 58, "nan": 0x1F << 58, "snan": (0x1F << 58) | (1 << 57)}[kind]
    hi = (sign << 63) | comb | (payload >> 64)
    return (DECIMAL, struct.pack("<QQ", payload & 0xFFFFFFFFFFFFFFFF, hi))


def decimal_text(bits16):
    """decimal_text is the canonical string of the Decimal128 specification (as libbson's)."""
    sign, kind, coef, exp = decimal_parts(bits16)
    if kind in ("nan", "snan"):
        return "NaN"
    pre = "-" if sign else ""
    if kind == "inf":
        return pre + "Infinity"
    if coef > 9999999999999999999999999999999999:
        coef = 0
    digits = str(coef)
    adjusted = exp + len(digits) - 1
    if exp <= 0 and adjusted >= -6:
        if exp == 0:
            return pre + digits
        point = len(digits) + exp
        if point > 0:
            return pre + digits[:point] + "." + digits[point:]
        return pre + "0." + "0" * (-point) + digits
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{pre}{mant}E{'+' if adjusted >= 0 else '-'}{abs(adjusted)}"


def decimal_parse(text):
    """decimal_parse reads a Decimal128 string (the specification's grammar) into its bits.

    Returns None for text it cannot represent exactly (too many digits,
    exponent out of range after clamping)."""
    t = text.strip()
    sign = 0
    if t[:1] in "+-" and t:
        sign, t = (1 if t[0] == "-" else 0), t[1:]
    low = t.lower()
    if low in ("inf", "infinity"):
        return decimal_special("inf", sign)
    if low == "nan":
        return decimal_special("nan", sign)
    mant, _, e = low.partition("e")
    try:
        exp = int(e) if e else 0
    except ValueError:
        return None
    ip, _, fp = mant.partition(".")
    if not (ip + fp).isdigit():
        return None
    digits = (ip + fp).lstrip("0") or "0"
    exp -= len(fp)
    coef = int(digits)
    # clamp: trailing zeros may move into the exponent (or out of it) to fit
    while exp > 6111 and coef and coef * 10 <= 9999999999999999999999999999999999:
        coef, exp = coef * 10, exp - 1
    if coef == 0:
        exp = max(-6176, min(6111, exp))
    while exp < -6176 and coef % 10 == 0 and coef:
        coef, exp = coef // 10, exp + 1
    if coef > 9999999999999999999999999999999999 or not -6176 <= exp <= 6111:
        return None
    return decimal_from_parts(sign, coef, exp)


# ---- display ----

def _str_show(b):
    try:
        t = b.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes(" + b.hex() + ")"
    if len(t) > 60:
        return repr(t[:40]) + f"...({len(b)} bytes)"
    return repr(t)


def show(v, limit=400):
    """show renders v in a mongo-shell-like notation (types explicit), cut at limit chars."""
    out = _show(v)
    return out if len(out) <= limit else out[:limit] + "..."


def _show(v):
    t = v[0]
    if t == DOUBLE:
        x = double_value(v)
        if math.isnan(x):
            return "NaN" if v[1] == 0x7FF8000000000000 else f"NaN(bits {v[1]:016x})"
        if x == 0 and math.copysign(1, x) < 0:
            return "-0.0"
        r = repr(x)
        return r if ("." in r or "e" in r or "n" in r) else r + ".0"
    if t == STRING:
        return _str_show(v[1])
    if t in (DOC, ARRAY):
        if t == ARRAY and all(k == str(i).encode() for i, (k, _) in enumerate(v[1])):
            return "[" + ", ".join(_show(x) for _, x in v[1]) + "]"
        return "{" + ", ".join(_str_show(k) + ": " + _show(x) for k, x in v[1]) + "}" + (
            "(array)" if t == ARRAY else "")
    if t == BINARY:
        p = v[2]
        return f"BinData({v[1]}, {base64.b64encode(p[:48]).decode()}{'...' if len(p) > 48 else ''})"
    if t == UNDEFINED:
        return "undefined"
    if t == OID:
        return f"ObjectId({v[1].hex()})"
    if t == BOOL:
        return "true" if v[1] else "false"
    if t == DATE:
        return f"Date({v[1]})"
    if t == NULL:
        return "null"
    if t == REGEX:
        return f"/{_str_show(v[1])[1:-1]}/{v[2].decode('utf-8', 'replace')}"
    if t == DBPOINTER:
        return f"DBPointer({_str_show(v[1])}, {v[2].hex()})"
    if t == CODE:
        return f"Code({_str_show(v[1])})"
    if t == SYMBOL:
        return f"Symbol({_str_show(v[1])})"
    if t == CODEWSCOPE:
        return f"Code({_str_show(v[1])}, {_show(v[2])})"
    if t == INT32:
        return f"NumberInt({v[1]})"
    if t == TIMESTAMP:
        return f"Timestamp({v[1]}, {v[2]})"
    if t == INT64:
        return f"NumberLong({v[1]})"
    if t == DECIMAL:
        sign, kind, coef, exp = decimal_parts(v[1])
        txt = decimal_text(v[1])
        if kind in ("nan", "snan") and v[1] != decimal_special("nan")[1]:
            txt += f" bits:{v[1][::-1].hex()}"
        return f"NumberDecimal({txt})"
    if t == MAXKEY:
        return "MaxKey"
    if t == MINKEY:
        return "MinKey"
    return f"<type 0x{t:02x}>"
