"""tests/integration/randomized/gen.py - seeded generators of documents and operation sequences.

`scenario(seed, options)` returns a `Scenario`: a pure function of the seed
and the options, so a printed seed reproduces a run. A scenario is a flat
list of `Op`s, each tagged with the phase of the migration it runs in:

    pre     before `migrate init` (the initial data: one document per op,
            so the shrinker can drop documents one by one)
    gap     after init, before `migrate sync` starts (still in the copy)
    copy    right after `sync --follow` started (races the bulk copy)
    follow  after the copy finished (the change stream applies it)

Values come from the whole BSON type space (bsonx's exact model): every
type with its edge values, `_id`s of every type and shape, duplicate field
names, nesting up to MongoDB's 100 levels, large documents and documents
near 16 MB, strings jsonb cannot hold, wrapper-like documents. Operations:
inserts, updates with every update operator the server supports (`caps`),
replaces, deletes, findAndModify, upserts, bulk writes, transactions
(committed and aborted), collection creation after init, drops, renames,
dropDatabase.

Hole classes (`HOLES`) name generator features that provoke a known
data-loss hole of issue 14; `GenOptions(exclude={...})` leaves them out, so
a run can show the rest of the pipeline is clean while a hole is open.

Each scenario lives in its own database ("main") and optionally a second
one ("aux", only created after init: a new database in scope); the runner
maps these roles to real names.
"""

import json
import random
import struct

import bsonx as B

# issue 14's holes, as generator features that can be left out
HOLES = {
    "new-collection": "hole 0: collections (and databases) created after init",
    "id-order": "hole 1: _ids that jsonb takes as equal but MongoDB does not "
                "(embedded documents with the same fields in another order)",
    "dup-fields": "hole 2: documents with duplicate field names",
    "id-unfit": "hole 8: _ids the key column chosen at init cannot hold (a later _id of "
                "another type, NUL / invalid UTF-8 / hex-looking strings in text keys, "
                "keys over ~2.6 KB)",
    # found by this test (not in issue 14's list)
    "rename-onto-planned": "new: renameCollection with dropTarget onto a collection in the plan "
                           "(sync --follow --on-rename follow exits on a duplicate key in "
                           "_migrate.collections)",
    "sim-id-rewrite": "mongosim, not migrate: a replacement whose _id equals the stored one "
                      "by value but not by bytes (a number of another type inside an embedded "
                      "_id) is accepted and rewrites the _id; MongoDB refuses it (66 "
                      "ImmutableField), migrate then keeps the old row as well",
    "sim-txn-create": "mongosim, not migrate: a transaction whose writes create a collection "
                      "and then write the same document again crashes mongosim (SIGSEGV)",
    "sim-regex-reorder": "mongosim, not migrate: an update or replace re-encodes the stored "
                         "document and sorts the options of every regex, so an _id holding a "
                         "regex with unsorted options ({_id: {r: /x/ui}}) changes its bytes "
                         "(MongoDB copies the _id as stored); migrate keeps the old row too",
    "sim-nul-key": "mongosim, not migrate: the documentKey of change events cuts code, "
                   "code-with-scope and DBPointer strings of the _id at the first NUL "
                   "({_id: Code('a\\0b')} is reported as Code('a')), so deletes and "
                   "replaces reach no row on the target",
    "decimal-noncanonical": "new: a Decimal128 whose significand is above 10^34 - 1 (a "
                            "non-canonical zero) is written in relaxed fidelity as the 35-digit "
                            "significand, so the value becomes 1E+34; docs/type-mapping.md and "
                            "the Decimal128 specification read it as 0 (validate agrees with "
                            "the renderer, so it stays silent)",
}

# classes that are bugs of mongosim, not of migrate: left out unless asked for
SIM_HOLES = frozenset(h for h in HOLES if h.startswith("sim-"))


def expand_excludes(names):
    """expand_excludes turns names (hole classes, "sim" for SIM_HOLES, "none") into a set."""
    out = set()
    for n in names:
        n = n.strip()
        if n in ("", "none"):
            continue
        if n == "sim":
            out |= SIM_HOLES
        elif n in HOLES:
            out.add(n)
        else:
            raise ValueError(f"unknown hole class {n!r}; known: sim, none, {', '.join(HOLES)}")
    return out


# the share of scenarios that exercise each hole class (when not excluded)
HOLE_RATE = {"new-collection": 0.3, "id-order": 0.5, "dup-fields": 0.2, "id-unfit": 0.25,
             "rename-onto-planned": 0.5, "decimal-noncanonical": 0.3, "sim-id-rewrite": 1.0,
             "sim-txn-create": 1.0, "sim-regex-reorder": 1.0, "sim-nul-key": 1.0}

# update features the server may lack; probe.py finds which it has
OPTIONAL_CAPS = ("array_filters", "pipeline_update", "bit", "push_sort", "positional_all",
                 "positional")

PHASES = ("pre", "gap", "copy", "follow")
MAX_BSON = 16 * 1024 * 1024
MAX_DEPTH = 100  # MongoDB refuses documents nested deeper (top-level document = 1)


class GenOptions:
    """GenOptions: what the generators may produce.

    exclude  hole classes (keys of HOLES) to leave out
    caps     optional server features (OPTIONAL_CAPS) to use
    scale    1.0 = the bounded run's sizes; soak runs may raise it
    big      allow documents of 1-4 MB (rate per scenario)
    huge     allow documents near 16 MB (rate per scenario)
    """

    def __init__(self, exclude=(), caps=(), scale=1.0, big=0.03, huge=0.004):
        unknown = set(exclude) - set(HOLES)
        if unknown:
            raise ValueError(f"unknown hole class {sorted(unknown)}; known: {sorted(HOLES)}")
        self.exclude = frozenset(exclude)
        self.caps = frozenset(caps)
        self.scale = scale
        self.big = big
        self.huge = huge

    def allows(self, hole):
        return hole not in self.exclude

    def narrowed(self, rng):
        """narrowed keeps each allowed hole class with its HOLE_RATE: a scenario
        exercises a few of them, so one hole does not mask the others everywhere."""
        keep = {h for h in HOLES if h not in self.exclude and rng.random() < HOLE_RATE[h]}
        return GenOptions(exclude=set(HOLES) - keep, caps=self.caps, scale=self.scale,
                          big=self.big, huge=self.huge)

    def describe(self):
        return {"exclude": sorted(self.exclude), "caps": sorted(self.caps), "scale": self.scale,
                "big": self.big, "huge": self.huge}


# ---- operations ----

# value-carrying arguments of each op kind (bsonx values; everything else is JSON)
VALUE_ARGS = ("doc", "docs", "filter", "update", "replacement", "requests", "ops")


class Op:
    """Op is one operation of a scenario: kind, phase, target (db role, coll) and args.

    kinds and their args:
      insert        doc
      insert_many   docs, ordered
      update        filter, update (document of operators, or a pipeline array),
                    multi, upsert, array_filters (array value or None)
      replace       filter, replacement, upsert
      delete        filter, multi
      find_modify   filter, update or replacement or remove, upsert, new
      bulk          requests (list of (kind, args) of insert/update/replace/delete), ordered
      txn           ops (list of Op of insert/update/replace/delete), commit (bool)
      create        -
      drop          -
      rename        to (collection name), drop_target
      drop_database -
    """

    __slots__ = ("kind", "phase", "db", "coll", "args", "tags")

    def __init__(self, kind, phase, coll, db="main", tags=(), **args):
        self.kind = kind
        self.phase = phase
        self.db = db
        self.coll = coll
        self.args = args
        self.tags = frozenset(tags)  # hole classes this op exercises

    def ids(self):
        """ids are the _id values this op names (documents inserted, filters on _id)."""
        out = []

        def from_doc(d):
            if d is not None and d[0] == B.DOC:
                v = B.get(d, "_id")
                if v is not None:
                    out.append(v)

        def from_filter(f):
            if f is None:
                return
            v = B.get(f, "_id")
            if v is not None and v[0] == B.DOC and len(v[1]) == 1 and v[1][0][0] == b"$eq":
                v = v[1][0][1]
            if v is not None:
                out.append(v)

        a = self.args
        from_doc(a.get("doc"))
        for d in a.get("docs") or ():
            from_doc(d)
        from_doc(a.get("replacement"))
        from_filter(a.get("filter"))
        for kind, sub in a.get("requests") or ():
            from_doc(sub.get("doc"))
            from_doc(sub.get("replacement"))
            from_filter(sub.get("filter"))
        for sub in a.get("ops") or ():
            out.extend(sub.ids())
        return out

    def to_json(self):
        """to_json is a JSON-able dict; values are hex BSON of {"v": value}."""
        def enc(v):
            return B.encode(B.doc(("v", v))).hex()

        def conv(name, x):
            if name in ("doc", "filter", "update", "replacement", "array_filters"):
                return None if x is None else enc(x)
            if name == "docs":
                return [enc(d) for d in x]
            if name == "requests":
                return [[k, {n: conv(n, y) for n, y in sub.items()}] for k, sub in x]
            if name == "ops":
                return [o.to_json() for o in x]
            return x

        return {"kind": self.kind, "phase": self.phase, "db": self.db, "coll": self.coll,
                "tags": sorted(self.tags),
                "args": {n: conv(n, x) for n, x in self.args.items()}}

    @classmethod
    def from_json(cls, j):
        def dec(h):
            return None if h is None else B.get(B.decode(bytes.fromhex(h)), "v")

        def conv(name, x):
            if name in ("doc", "filter", "update", "replacement", "array_filters"):
                return dec(x)
            if name == "docs":
                return [dec(d) for d in x]
            if name == "requests":
                return [(k, {n: conv(n, y) for n, y in sub.items()}) for k, sub in x]
            if name == "ops":
                return [cls.from_json(o) for o in x]
            return x

        return cls(j["kind"], j["phase"], j["coll"], db=j["db"], tags=j.get("tags", ()),
                   **{n: conv(n, x) for n, x in j["args"].items()})

    def size(self):
        """size is a rough count of items, for the shrinker's order of attempts."""
        return 1 + len(self.args.get("docs") or ()) + len(self.args.get("requests") or ()) + \
            len(self.args.get("ops") or ())

    def __repr__(self):
        return f"Op({self.kind} {self.db}.{self.coll} @{self.phase})"


class Scenario:
    """Scenario: the seed, its options and its operations (in execution order)."""

    def __init__(self, seed, options, ops):
        self.seed = seed
        self.options = options
        self.ops = list(ops)

    def with_ops(self, ops):
        return Scenario(self.seed, self.options, ops)

    def tags(self):
        """tags are the hole classes the scenario exercises (as generated, and as found
        in its values: duplicate field names, non-canonical decimals)."""
        t = set()

        def visit(op):
            nonlocal t
            t |= op.tags
            for name in ("doc", "replacement", "update", "filter"):
                if op.args.get(name) is not None:
                    t |= value_tags(op.args[name])
            for d in op.args.get("docs") or ():
                t |= value_tags(d)
            for _, sub in op.args.get("requests") or ():
                for name in ("doc", "replacement", "update"):
                    if sub.get(name) is not None:
                        t |= value_tags(sub[name])
            for sub in op.args.get("ops") or ():
                visit(sub)

        for op in self.ops:
            visit(op)
        return t

    def to_json(self):
        return {"seed": self.seed, "options": self.options.describe(),
                "ops": [op.to_json() for op in self.ops]}

    @classmethod
    def from_json(cls, j):
        o = j.get("options", {})
        return cls(j["seed"], GenOptions(exclude=o.get("exclude", ()), caps=o.get("caps", ()),
                                         scale=o.get("scale", 1.0)),
                   [Op.from_json(x) for x in j["ops"]])

    def dumps(self):
        return json.dumps(self.to_json())


# ---- values ----

KEYS = ["a", "b", "c", "x", "y", "z", "n", "s", "k", "v", "_x", "name", "tags", "when", "A",
        "", "$k", "$ref", "$id", "$db", "a.b", "..", "caf\u00e9", "\u043a\u043b\u044e\u0447",
        "\u65e5\u672c", "\U0001f642", "quote\"d", "back\\slash", "tab\t", "nl\n", "sp ace",
        "0", "1", "-1", "true", "null", "$numberLong", "$oid", "$date", "$literal", "$regex",
        "$options", "$binary", "$type", "$code", "$scope", "$stringBase64", "$undefined",
        "$minKey", "$numberDouble", "$timestamp", "k" * 70, "\u00e9" * 40]
PLAIN_KEYS = ["a", "b", "c", "x", "y", "z", "n", "s", "k", "v", "w", "name", "day", "shop", "q"]

# every wrapper key set of docs/type-mapping.md: a user document with one of
# these key sets must come back as a document ($literal escape)
WRAPPER_SETS = [("$oid",), ("$symbol",), ("$numberInt",), ("$numberLong",), ("$numberDouble",),
                ("$numberDecimal",), ("$binary",), ("$code",), ("$code", "$scope"),
                ("$timestamp",), ("$regularExpression",), ("$dbPointer",), ("$date",),
                ("$minKey",), ("$maxKey",), ("$undefined",), ("$stringBase64",), ("$literal",)]

INVALID_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
                b"\x80", b"\xf8\x88\x80\x80\x80", b"\xc3"]
UNICODE_BITS = ["\u00e9", "\u2603", "\U0001f600", "\u0301", "\u200d", "\u2028", "\ufeff",
                "\uffff", "\U0010ffff", "\u05d0", "\\u0000", "\\", "\"", "\u0007", "\x1f",
                "\x7f", "NaN", "-0.0", "Infinity", "1e400", "{\"$oid\":\"x\"}", "'", "\r\n"]

SPECIAL_DOUBLE_BITS = [
    0x7FF8000000000000,  # NaN
    0xFFF8000000000000,  # -NaN
    0x7FF0000000000001,  # signalling NaN
    0x7FF800000000BEEF,  # NaN with a payload
    0x7FF0000000000000,  # +Infinity
    0xFFF0000000000000,  # -Infinity
    0x8000000000000000,  # -0.0
    0x0000000000000000,  # 0.0
    0x0000000000000001,  # smallest subnormal
    0x000FFFFFFFFFFFFF,  # largest subnormal
    0x0010000000000000,  # DBL_MIN
    0x7FEFFFFFFFFFFFFF,  # DBL_MAX
    0x4340000000000000,  # 2^53
    0x4340000000000001,  # 2^53 + 2
    0x3FB999999999999A,  # 0.1
    0x3FF0000000000000,  # 1.0
    0xBFF0000000000000,  # -1.0
    0x44B52D02C7E14AF6,  # 1e23
    0x3CB0000000000000,  # 2^-52
]
SPECIAL_DOUBLES = [1.5, 0.30000000000000004, 1e21, 1e-7, 123456789.125, 2.0 ** 63, -2.0 ** 63,
                   2.0 ** 31, 4503599627370496.5, 1e300, 1e-300, 3.14]

INT32_EDGES = [0, 1, -1, 2 ** 31 - 1, -2 ** 31, 42, 255, 65536]
INT64_EDGES = [0, 1, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 31, -2 ** 31 - 1, 2 ** 53 + 1, 2 ** 32,
               42, 9007199254740993]
DECIMAL_TEXTS = ["0", "-0", "1", "1.0", "1.10", "0.1", "-1.5E+3", "1E-6176", "1E+6111",
                 "9.999999999999999999999999999999999E+6144", "1234567890123456789012345678901234",
                 "0E+3", "0E-6176", "-0E+6111", "Infinity", "-Infinity", "NaN", "1E+3", "1000",
                 "0.000001", "1E-7", "123.456", "-9.99E-100"]
DATE_EDGES = [0, -1, 1, 253402300799999, 253402300800000, -62135596800000, -62135596800001,
              2 ** 63 - 1, -2 ** 63, 1700000000000, 86400000, -86400000 * 366 * 100]
BINARY_SUBTYPES = [0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 0x80, 0x81, 0xFF]


class ValueGen:
    """ValueGen draws BSON values (bsonx tuples) from a random.Random."""

    def __init__(self, rng, options):
        self.r = rng
        self.o = options

    # -- scalars --

    def double(self):
        r = self.r
        p = r.random()
        if p < 0.3:
            return B.dbl_bits(r.choice(SPECIAL_DOUBLE_BITS))
        if p < 0.5:
            return B.dbl(r.choice(SPECIAL_DOUBLES) * r.choice((1, -1)))
        if p < 0.7:
            return B.dbl(float(r.randint(-1000, 1000)))  # integral doubles: 1.0 vs 1
        if p < 0.85:
            return B.dbl(round(r.uniform(-1e6, 1e6), r.randint(0, 4)))
        while True:  # any finite bit pattern
            bits = r.getrandbits(64)
            if (bits >> 52) & 0x7FF != 0x7FF:
                return B.dbl_bits(bits)

    def int32(self):
        r = self.r
        return B.i32(r.choice(INT32_EDGES) if r.random() < 0.4 else r.randint(-1000, 1000))

    def int64(self):
        r = self.r
        if r.random() < 0.5:
            return B.i64(r.choice(INT64_EDGES))
        return B.i64(r.randint(-2 ** 63, 2 ** 63 - 1) if r.random() < 0.5
                     else r.randint(-1000, 1000))

    def decimal(self):
        r = self.r
        p = r.random()
        if p < 0.45:
            return B.decimal_parse(r.choice(DECIMAL_TEXTS))
        if p < 0.55:  # NaN and sNaN with sign and payload, non-canonical significands
            specials = [B.decimal_special("nan", 1), B.decimal_special("snan", 0, 12),
                        B.decimal_special("nan", 0, 7), B.decimal_special("inf", 1)]
            if self.o.allows("decimal-noncanonical"):
                specials += [B.decimal_from_parts(0, 10 ** 34, 0),
                             B.decimal_from_parts(1, (1 << 113) - 1, -20)]
            return r.choice(specials)
        coef = r.choice([r.randint(0, 10 ** r.randint(1, 34) - 1), r.randint(0, 1000)])
        exp = r.choice([r.randint(-30, 30), r.randint(-6176, 6111)])
        return B.decimal_from_parts(r.randint(0, 1), coef, exp)

    def string_bytes(self, maxlen=40, allow_bad=True):
        r = self.r
        p = r.random()
        if p < 0.35:
            n = r.randint(0, maxlen)
            return "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789 -_")
                           for _ in range(n)).encode()
        if p < 0.6:
            return "".join(r.choice(UNICODE_BITS + ["a", "b", " "])
                           for _ in range(r.randint(1, 8))).encode("utf-8")
        if p < 0.7:
            return r.choice([b"", b"0", b"a" * 24, b"5f0c1d2e3a4b5c6d7e8f9a0b", b"null",
                             b"2024-01-01T00:00:00.000Z", "\u00e9t\u00e9".encode(), b" "])
        if p < 0.8 or not allow_bad:  # NUL inside (jsonb rejects \u0000)
            return r.choice([b"\x00", b"a\x00b", b"\x00\x00", b"end\x00"])
        if p < 0.9:  # not UTF-8 (jsonb rejects it)
            return b"x" + r.choice(INVALID_UTF8) + b"y"
        return ("long-" + "\u00e9z" * r.randint(1000, 1100)).encode()  # ~3 KB

    def string(self):
        return (B.STRING, self.string_bytes())

    def binary(self, big=False):
        r = self.r
        sub = r.choice(BINARY_SUBTYPES)
        n = 16 if sub in (3, 4, 5) and r.random() < 0.8 else r.randint(0, 40)
        if big:
            n = r.randint(200_000, 1_000_000)
        data = r.randbytes(n) if hasattr(r, "randbytes") else bytes(r.getrandbits(8)
                                                                   for _ in range(n))
        if sub == 2:  # old binary: an int32 length of the data inside
            data = struct.pack("<i", len(data)) + data
        return (B.BINARY, sub, data)

    def oid(self):
        r = self.r
        return (B.OID, struct.pack(">I", r.randint(0, 2 ** 32 - 1)) + bytes(
            r.getrandbits(8) for _ in range(8)))

    def date(self):
        r = self.r
        return (B.DATE, r.choice(DATE_EDGES) if r.random() < 0.5
                else r.randint(-2 ** 45, 2 ** 45))

    def regex(self):
        r = self.r
        pattern = r.choice([b"^a.*b$", b"", b"\\d+", b"/", "caf\u00e9".encode(), b"a|b",
                            b"[\"']", b"x" * r.randint(1, 20), b"(?i)z"])
        flags = r.sample("imxslu", r.randint(0, 4))
        if r.random() < 0.7:
            flags.sort()  # the BSON spec wants them sorted; stored as given either way
        return (B.REGEX, pattern, "".join(flags).encode())

    def timestamp(self):
        r = self.r
        return (B.TIMESTAMP, *r.choice([(0, 0), (2 ** 32 - 1, 2 ** 32 - 1), (1, 0),
                                        (r.randint(0, 2 ** 32 - 1), r.randint(0, 2 ** 32 - 1))]))

    def scalar(self):
        r = self.r
        kind = r.randrange(19)
        return [self.double, self.string, self.int32, self.int64, self.decimal,
                lambda: (B.BOOL, r.random() < 0.5), lambda: B.NULL_V, self.oid, self.date,
                self.binary, self.regex, self.timestamp, lambda: B.MINKEY_V, lambda: B.MAXKEY_V,
                lambda: B.UNDEFINED_V, lambda: (B.CODE, self.string_bytes(20)),
                lambda: (B.SYMBOL, self.string_bytes(20)),
                lambda: (B.DBPOINTER, self.string_bytes(20), self.oid()[1]),
                lambda: (B.CODEWSCOPE, self.string_bytes(20), self.document(2, 3))][kind]()

    # -- containers --

    def key(self):
        r = self.r
        if r.random() < 0.7:
            k = r.choice(PLAIN_KEYS)
        else:
            k = r.choice(KEYS)
        return B.key(k)

    def document(self, depth, width=5, dups=None):
        """document is a random document; dups allows duplicate field names."""
        r = self.r
        dups = self.o.allows("dup-fields") if dups is None else dups
        items = []
        seen = set()
        for _ in range(r.randint(0, width)):
            k = self.key()
            if k in seen and not dups:
                continue
            seen.add(k)
            items.append((k, self.value(depth - 1)))
        if dups and items and r.random() < 0.08:  # a duplicate field name
            k, _ = r.choice(items)
            items.insert(r.randint(0, len(items)), (k, self.value(depth - 1)))
        return (B.DOC, tuple(items))

    def array(self, depth, width=5):
        r = self.r
        items = tuple((str(i).encode(), self.value(depth - 1)) for i in range(r.randint(0, width)))
        if items and r.random() < 0.03:  # degenerate keys: BSON lets them be anything
            items = tuple((k + b"x", v) for k, v in items)
        return (B.ARRAY, items)

    def wrapper_like(self, depth):
        """wrapper_like is a user document whose key set is a type-mapping wrapper's."""
        r = self.r
        keys = r.choice(WRAPPER_SETS)
        return (B.DOC, tuple((k.encode(), r.choice([self.scalar(), self.value(depth - 1),
                                                     (B.STRING, b"x"), B.i32(1)]))
                             for k in keys))

    def value(self, depth=3):
        r = self.r
        if depth <= 0:
            return self.scalar()
        p = r.random()
        if p < 0.12:
            return self.document(depth)
        if p < 0.2:
            return self.array(depth)
        if p < 0.23:
            return self.wrapper_like(depth)
        return self.scalar()

    def deep(self, levels):
        """deep is a value nested `levels` deep (documents and arrays alternating at random)."""
        v = self.scalar()
        for i in range(levels):
            if self.r.random() < 0.5:
                v = (B.DOC, ((self.key() if i % 3 else b"d", v),))
            else:
                v = (B.ARRAY, ((b"0", v),))
        return v


# ---- _ids ----

ID_PROFILES = ("oid", "int", "string", "mixed", "compound", "empty")


class IdGen:
    """IdGen draws _ids for one collection according to its profile.

    Profiles: oid (ObjectIds, a few non-hex strings before init), int
    (int32/int64), string, mixed (every type an _id can have), compound
    (embedded documents), empty (no documents at init, so a jsonb key)."""

    def __init__(self, vg, profile, options):
        self.vg = vg
        self.r = vg.r
        self.profile = profile
        self.o = options
        self.used = []

    def _sorted_doc(self, d):
        """_sorted_doc orders a document's keys (recursively): two such _ids are never
        permutations of each other (used when hole 1 is excluded)."""
        if d[0] != B.DOC:
            return d
        return (B.DOC, tuple(sorted(((k, self._sorted_doc(v)) for k, v in d[1]),
                                    key=lambda kv: kv[0])))

    def compound(self):
        r = self.r
        keys = r.sample(PLAIN_KEYS, r.randint(1, 3))
        items = []
        for k in keys:
            p = r.random()
            if p < 0.5:
                v = B.i32(r.randint(0, 5))
            elif p < 0.6:
                v = r.choice([B.i64(r.randint(0, 5)), B.dbl(float(r.randint(0, 5))),
                              B.decimal_parse(str(r.randint(0, 5)))])
            elif p < 0.8:
                v = (B.STRING, r.choice([b"a", b"b", b"x\x00", "\u00e9".encode()]))
            else:
                v = self.vg.value(2)
            items.append((k.encode(), v))
        if self.o.allows("dup-fields") and r.random() < 0.05:
            items.append((items[0][0], B.i32(r.randint(0, 5))))
        d = (B.DOC, tuple(items))
        if not self.o.allows("id-order"):
            d = self._sorted_doc(d)
        return d

    def _binary_id(self):
        r = self.r
        sub = r.choice(BINARY_SUBTYPES) if r.random() < .5 else 4
        data = bytes(r.getrandbits(8) for _ in range(16))
        if sub == 2:  # old binary: an int32 length of the data inside
            data = struct.pack("<i", len(data)) + data
        return (B.BINARY, sub, data)

    def _one_of_any_type(self):
        r = self.r
        vg = self.vg
        p = r.randrange(16)
        return [vg.oid, vg.int32, vg.int64, vg.double, vg.decimal,
                lambda: (B.STRING, vg.string_bytes(30, allow_bad=True)),
                self.compound, lambda: self._binary_id(),
                lambda: r.choice([B.MINKEY_V, B.MAXKEY_V, B.NULL_V, (B.BOOL, r.random() < .5)]),
                vg.date, vg.timestamp, lambda: (B.CODE, vg.string_bytes(10)),
                lambda: (B.SYMBOL, vg.string_bytes(10)),
                lambda: (B.DBPOINTER, b"db.c", vg.oid()[1]),
                lambda: (B.CODEWSCOPE, b"f()", vg.document(1, 2, dups=False)),
                lambda: B.dbl_bits(r.choice(SPECIAL_DOUBLE_BITS))][p]()

    def fresh(self, after_init, twins=True):
        """fresh is a new _id of the profile; returns (value, tags). twins: it may be a
        numerically equal twin of an _id used before (another type, same value)."""
        r = self.r
        tags = set()
        pr = self.profile
        unfit = after_init and self.o.allows("id-unfit") and pr in ("oid", "int", "string")
        if unfit and r.random() < 0.08:  # a later _id of another kind than the key column's
            tags.add("id-unfit")
            pr = r.choice([x for x in ("oid", "int", "string", "compound") if x != pr])
        if self.used and self.o.allows("id-order") and r.random() < 0.25:
            perm = self._permuted(r.choice(self.used))
            if perm is not None:
                self.used.append(perm)
                return perm, {"id-order"}
        if twins and self.used and r.random() < 0.08:  # numerically equal: MongoDB's duplicate
            twin = self._numeric_twin(r.choice(self.used))
            # (once the original is deleted the twin goes in: a double in a bigint key)
            if twin is not None and (twin[0] in (B.INT32, B.INT64) or pr not in ("int",)
                                     or self.o.allows("id-unfit")):
                return twin, tags
        if pr == "oid":
            if not after_init and self.used and r.random() < 0.1:  # the first is an ObjectId
                v = (B.STRING, ("id-" + str(r.randint(0, 10 ** 6))).encode())
            elif unfit and r.random() < 0.1:
                tags.add("id-unfit")
                v = (B.STRING, self.vg.oid()[1].hex().encode())  # reads as ObjectId hex
            else:
                v = self.vg.oid()
        elif pr == "int":
            v = self.vg.int32() if r.random() < 0.6 else self.vg.int64()
        elif pr == "string":
            v = (B.STRING, self.vg.string_bytes(30, allow_bad=False).replace(b"\x00", b"0"))
            if len(v[1]) > 2000:
                v = (B.STRING, v[1][:100])
            if unfit and r.random() < 0.15:
                tags.add("id-unfit")
                v = (B.STRING, r.choice([b"a\x00b", b"x\xffy", b"k" * 2700]))
        elif pr == "compound":
            v = self.compound()
        else:  # mixed and empty: anything an _id may be
            v = self._one_of_any_type()
            if not self.used and not after_init and not self.o.allows("id-unfit"):
                # the first _id decides: not ObjectId / string / integer, so init picks a
                # jsonb key (docs/init.md) and every later _id fits
                while v[0] in (B.OID, B.STRING, B.INT32, B.INT64):
                    v = self._one_of_any_type()
            if v[0] == B.DOC and not self.o.allows("id-order"):
                v = self._sorted_doc(v)
        if len(B.encode(B.doc(("_id", v)))) > 2000:  # over what a btree key holds
            if self.o.allows("id-unfit"):
                tags.add("id-unfit")
            else:
                v = {"oid": self.vg.oid(), "int": B.i32(r.randint(-10 ** 6, 10 ** 6)),
                     "string": (B.STRING, b"short-" + str(r.random()).encode())}.get(
                         pr, B.doc(("k", B.i32(r.randint(0, 10 ** 6)))))
        if v[0] == B.DOC and len({k for k, _ in v[1]}) != len(v[1]):
            tags.add("dup-fields")
        for hole, fix in (("sim-regex-reorder", sorted_regex_options),
                          ("sim-nul-key", without_nul_in_code)):
            fixed = fix(v)
            if fixed != v:
                if self.o.allows(hole):
                    tags.add(hole)
                else:
                    v = fixed
        self.used.append(v)
        return v, tags

    def _permuted(self, v):
        if v[0] != B.DOC or len({k for k, _ in v[1]}) < 2:
            return None
        items = list(v[1])
        for _ in range(5):
            self.r.shuffle(items)
            if tuple(items) != v[1]:
                return (B.DOC, tuple(items))
        return None

    def _numeric_twin(self, v):
        r = self.r
        if v[0] in (B.INT32, B.INT64):
            n = v[1]
            return r.choice([B.i64(n), B.i32(n) if -2 ** 31 <= n < 2 ** 31 else B.i64(n),
                             B.dbl(float(n)) if abs(n) < 2 ** 53 else B.i64(n),
                             B.decimal_parse(str(n))])
        if v[0] == B.DOC:
            items = list(v[1])
            for i, (k, x) in enumerate(items):
                if x[0] == B.INT32:
                    items[i] = (k, r.choice([B.i64(x[1]), B.dbl(float(x[1])),
                                             B.decimal_parse(str(x[1]))]))
                    return (B.DOC, tuple(items))
        return None

    def may_omit_id(self):
        """may_omit_id: a document without _id (the server adds an ObjectId) fits the key."""
        return self.profile not in ("int", "string") or self.o.allows("id-unfit")

    def existing(self):
        return self.r.choice(self.used) if self.used else None


# ---- scenarios ----

class _State:
    """_State: what the generator believes exists (for aiming operations, not a model)."""

    def __init__(self):
        self.colls = {}  # (db, name) -> IdGen
        self.counter = 0

    def new_name(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"


class ScenarioGen:
    """ScenarioGen builds one scenario; see scenario()."""

    def __init__(self, seed, options):
        self.seed = seed
        self.options = options
        self.r = random.Random(seed)
        self.o = options.narrowed(self.r)
        self.vg = ValueGen(self.r, self.o)
        self.st = _State()
        self.ops = []
        self.big_left = 1 if self.r.random() < options.big else 0
        self.huge_left = 1 if self.r.random() < options.huge else 0

    # -- documents --

    def skeleton(self, _id, idtags):
        """skeleton is a document with the fields updates aim at, plus random ones."""
        r = self.r
        vg = self.vg
        tags = set(idtags)
        items = [(b"_id", _id)] if _id is not None else []
        if r.random() < 0.8:
            items.append((b"n", r.choice([vg.int32(), B.dbl(float(r.randint(0, 9))),
                                          B.i64(r.randint(0, 9))])))
        if r.random() < 0.6:
            items.append((b"s", (B.STRING, vg.string_bytes(12))))
        if r.random() < 0.6:
            items.append((b"arr", (B.ARRAY, tuple((str(i).encode(), x) for i, x in enumerate(
                [r.choice([B.i32(r.randint(0, 5)), (B.STRING, b"t" + str(r.randint(0, 3)).encode()),
                           vg.scalar()]) for _ in range(r.randint(0, 5))])))))
        if r.random() < 0.5:
            items.append((b"sub", B.doc(("x", vg.int32()), ("y", vg.value(2)))))
        for _ in range(r.randint(0, int(5 * self.o.scale) + 1)):
            k = vg.key()
            if k == b"_id" or any(k == kk for kk, _ in items):
                continue
            items.append((k, vg.value(3)))
        p = r.random()
        if p < 0.02:  # deep nesting, up to MongoDB's limit of 100 levels
            items.append((b"deep", vg.deep(r.randint(80, MAX_DEPTH - 1))))  # depth <= 100
        elif p < 0.04:
            items.append((b"wrapped", vg.wrapper_like(3)))
        if self.o.allows("dup-fields") and r.random() < 0.1:  # duplicate field names
            k, v = r.choice(items[1:] or [(b"dup", B.i32(1))])
            items.insert(r.randint(min(1, len(items)), len(items)), (k, vg.value(2)))
        if self.big_left and r.random() < 0.2:
            self.big_left -= 1
            items.append((b"big", vg.binary(big=True) if r.random() < 0.5 else (
                B.STRING, b"B" * r.randint(1_000_000, 4_000_000))))
        if self.huge_left and r.random() < 0.3:
            self.huge_left -= 1
            d = (B.DOC, tuple(items))
            room = MAX_BSON - len(B.encode(d)) - 64
            items.append((b"huge", (B.STRING, b"H" * (room - r.randint(0, 2000)))))
        d = (B.DOC, tuple(items))
        if _has_dup_fields(d):
            tags.add("dup-fields")
        return d, tags

    # -- operations --

    def add(self, kind, phase, db, coll, tags=(), **args):
        op = Op(kind, phase, coll, db=db, tags=tags, **args)
        self.ops.append(op)
        return op

    def pick_coll(self, db="main"):
        names = [c for (d, c) in self.st.colls if d == db]
        return self.r.choice(names) if names else None

    def id_filter(self, _id):
        return B.doc(("_id", B.doc(("$eq", _id))))

    def target_id(self, ig, after, replacing=False):
        """target_id is an _id aimed at: mostly an existing one, sometimes new. replacing:
        the _id also goes into a replacement (see HOLES["sim-id-rewrite"])."""
        if ig.used and self.r.random() < 0.85:
            return ig.existing(), set()
        _id, tags = ig.fresh(after, twins=not replacing or self.o.allows("sim-id-rewrite"))
        return _id, tags | ({"sim-id-rewrite"} if replacing and _id not in ig.used else set())

    def field_filter(self):
        r = self.r
        return r.choice([
            B.doc(("n", B.doc(("$gte", B.i32(r.randint(0, 9)))))),
            B.doc(("arr", (B.STRING, b"t1"))),
            B.doc(("s", B.doc(("$exists", (B.BOOL, True))))),
            B.doc(("sub.x", self.vg.int32())),
            B.doc(),
            B.doc(("n", B.doc(("$type", (B.STRING, b"number"))))),
        ])

    def path(self):
        r = self.r
        return r.choice(["n", "s", "arr", "sub", "sub.x", "sub.y", "sub.z.w", "tags", "new",
                         "arr.0", "arr.3", "a", "b", "c", "x", "k", "deep2.a.b.c",
                         "caf\u00e9", "q"])

    def update_doc(self, upsert):
        """update_doc is an update of 1-3 operators on distinct, non-conflicting paths."""
        r = self.r
        vg = self.vg
        used = []

        def free(p):
            return all(not (p == u or p.startswith(u + ".") or u.startswith(p + "."))
                       for u in used)

        def take(prefer=None):
            for _ in range(6):
                p = prefer or self.path()
                prefer = None
                if free(p):
                    used.append(p)
                    return p
            return None

        ops = {}
        names = ["$set", "$unset", "$inc", "$mul", "$min", "$max", "$rename", "$push",
                 "$addToSet", "$pull", "$pullAll", "$pop", "$currentDate"]
        if "bit" in self.o.caps:
            names.append("$bit")
        if upsert:
            names.append("$setOnInsert")
        for op in r.sample(names, r.randint(1, 3)):
            args = []
            for _ in range(r.randint(1, 2)):
                if op in ("$push", "$addToSet", "$pull", "$pullAll", "$pop"):
                    p = take(r.choice(["arr", "tags", "arr", "new", "sub.y"]))
                elif op in ("$inc", "$mul", "$bit"):
                    p = take(r.choice(["n", "n", "sub.x", "cnt", "s"]))
                else:
                    p = take()
                if p is None:
                    continue
                if op in ("$set", "$setOnInsert"):
                    v = vg.value(3) if r.random() < 0.7 else self.skeleton(None, ())[0]
                elif op == "$unset":
                    v = (B.STRING, b"")
                elif op in ("$inc", "$mul"):
                    v = r.choice([vg.int32(), vg.int64(), B.dbl(r.choice([1.5, -2.0, 0.1, 1e308])),
                                  B.decimal_parse(r.choice(["1.1", "-3", "0.0001"]))])
                elif op == "$bit":
                    v = B.doc((r.choice(["and", "or", "xor"]), r.choice([vg.int32(), vg.int64()])))
                elif op in ("$min", "$max"):
                    v = r.choice([vg.int32(), vg.double(), vg.decimal(), vg.date(), vg.string(),
                                  B.NULL_V, B.MINKEY_V, B.MAXKEY_V])
                elif op == "$rename":
                    to = take(r.choice(["renamed", "sub.moved", "k2", "x"]))
                    if to is None:
                        continue
                    v = (B.STRING, to.encode())
                elif op in ("$push", "$addToSet"):
                    v = self.push_arg(op)
                elif op == "$pull":
                    v = r.choice([vg.int32(), (B.STRING, b"t1"),
                                  B.doc(("$gte", B.i32(r.randint(0, 5)))),
                                  B.doc(("$in", B.arr(B.i32(1), (B.STRING, b"t2"))))])
                elif op == "$pullAll":
                    v = B.arr(*[r.choice([B.i32(r.randint(0, 5)), (B.STRING, b"t0")])
                                for _ in range(r.randint(0, 3))])
                elif op == "$pop":
                    v = B.i32(r.choice([1, -1]))
                else:  # $currentDate
                    v = r.choice([(B.BOOL, True), B.doc(("$type", (B.STRING, b"date"))),
                                  B.doc(("$type", (B.STRING, b"timestamp")))])
                args.append((p.encode(), v))
            if args:
                ops[op.encode()] = args
        if not ops:
            ops[b"$set"] = [(b"touched", B.i32(1))]
        return (B.DOC, tuple((k, (B.DOC, tuple(v))) for k, v in ops.items()))

    def push_arg(self, op):
        r = self.r
        vg = self.vg
        if r.random() < 0.5:
            return vg.value(2)
        mods = [("$each", B.arr(*[vg.value(1) for _ in range(r.randint(0, 4))]))]
        if op == "$push":
            if r.random() < 0.4:
                mods.append(("$position", B.i32(r.randint(-3, 3))))
            if r.random() < 0.4:
                mods.append(("$slice", B.i32(r.randint(-4, 4))))
            if "push_sort" in self.o.caps and r.random() < 0.3:
                mods.append(("$sort", B.i32(r.choice([1, -1]))))
        return B.doc(*mods)

    def pipeline_update(self):
        r = self.r
        return B.arr(r.choice([
            B.doc(("$set", B.doc(("p", self.vg.value(1)), ("n2", B.doc(("$add", B.arr(
                (B.STRING, b"$n"), B.i32(1)))))))),
            B.doc(("$unset", B.arr((B.STRING, b"s")))),
            B.doc(("$replaceWith", B.doc(("_id", (B.STRING, b"$_id")), ("r", B.i32(1))))),
        ]))

    def write_op(self, phase, db, coll, in_txn=False):
        """write_op is one CRUD operation on db.coll (an Op, not yet added)."""
        r = self.r
        ig = self.st.colls[(db, coll)]
        after = phase != "pre"
        kind = r.choices(["insert", "insert_many", "update", "replace", "delete", "find_modify",
                          "upsert", "bulk"],
                         weights=[22, 5, 26, 9, 7, 5, 7, 0 if in_txn else 4])[0]
        tags = set()
        if kind in ("insert", "insert_many"):
            docs = []
            for _ in range(1 if kind == "insert" else r.randint(2, 4)):
                _id, t = ig.fresh(after)
                omit = r.random() < 0.03 and ig.may_omit_id()
                d, t2 = self.skeleton(None if omit else _id, t)
                docs.append(d)
                tags |= t2
            if kind == "insert":
                return Op("insert", phase, coll, db=db, tags=tags, doc=docs[0])
            return Op("insert_many", phase, coll, db=db, tags=tags, docs=docs,
                      ordered=r.random() < 0.5)
        if kind in ("update", "upsert"):
            multi = kind == "update" and r.random() < 0.2
            upsert = kind == "upsert"
            if multi:
                f = self.field_filter()
            else:
                _id, t = self.target_id(ig, after)
                tags |= t
                f = self.id_filter(_id) if r.random() < 0.9 else B.doc(("_id", _id)) \
                    if _id[0] not in (B.DOC, B.REGEX) else self.id_filter(_id)
            if "pipeline_update" in self.o.caps and r.random() < 0.08:
                upd = self.pipeline_update()
            else:
                upd = self.update_doc(upsert)
            af = None
            if "array_filters" in self.o.caps and r.random() < 0.08:
                upd = B.doc(("$set", B.doc(("arr.$[e]", self.vg.value(1)))))
                af = B.arr(B.doc(("e", B.doc(("$gte", B.i32(r.randint(0, 3)))))))
            elif "positional_all" in self.o.caps and r.random() < 0.05:
                upd = B.doc(("$inc", B.doc(("arr.$[]", B.i32(1)))))
            return Op("update", phase, coll, db=db, tags=tags, filter=f, update=upd, multi=multi,
                      upsert=upsert, array_filters=af)
        if kind == "replace":
            _id, t = self.target_id(ig, after, replacing=True)
            upsert = r.random() < 0.3
            # an upsert whose replacement has no _id inserts an ObjectId _id on mongosim
            # (MongoDB takes the query's): only where any _id fits the key
            keep_id = r.random() < 0.6 or (upsert and not ig.may_omit_id())
            d, t2 = self.skeleton(_id if keep_id else None, t)
            d = (B.DOC, tuple((k, v) for k, v in d[1] if not k.startswith(b"$")))
            return Op("replace", phase, coll, db=db, tags=t2, filter=self.id_filter(_id),
                      replacement=d, upsert=upsert)
        if kind == "delete":
            multi = r.random() < 0.15
            if multi:
                return Op("delete", phase, coll, db=db, filter=self.field_filter(), multi=True)
            _id, t = self.target_id(ig, after)
            return Op("delete", phase, coll, db=db, tags=t, filter=self.id_filter(_id),
                      multi=False)
        if kind == "find_modify":
            _id, t = self.target_id(ig, after, replacing=True)
            p = r.random()
            args = {"filter": self.id_filter(_id), "upsert": False, "new": r.random() < 0.5}
            if p < 0.3:
                args["remove"] = True
            elif p < 0.5:
                d, t = self.skeleton(_id, t)
                args["replacement"] = (B.DOC, tuple((k, v) for k, v in d[1]
                                                    if not k.startswith(b"$")))
                args["upsert"] = r.random() < 0.3
            else:
                args["update"] = self.update_doc(False)
            return Op("find_modify", phase, coll, db=db, tags=t, **args)
        # bulk
        reqs = []
        for _ in range(r.randint(2, 5)):
            sub = self.write_op(phase, db, coll, in_txn=True)
            if sub.kind in ("insert", "update", "replace", "delete"):
                reqs.append((sub.kind, dict(sub.args)))
                tags |= sub.tags
        return Op("bulk", phase, coll, db=db, tags=tags, requests=reqs, ordered=r.random() < 0.5)

    def catalog_op(self, phase):
        """catalog_op creates, drops or renames a collection, or drops the database."""
        r = self.r
        st = self.st
        new_ok = phase != "pre" and self.o.allows("new-collection")
        p = r.random()
        if p < 0.45 and (new_ok or phase == "pre"):  # a collection that did not exist at init
            db = "aux" if phase != "pre" and r.random() < 0.25 else "main"
            name = st.new_name("n" if phase != "pre" else "c")
            st.colls[(db, name)] = IdGen(self.vg, r.choice(ID_PROFILES), self.o)
            tags = {"new-collection"} if phase != "pre" else set()
            if r.random() < 0.5:
                self.add("create", phase, db, name, tags=tags)
            for _ in range(r.randint(1 if phase != "pre" else 0, 4)):
                op = self.write_op(phase, db, name)
                op.tags = op.tags | tags
                self.ops.append(op)
            return
        coll = self.pick_coll()
        if coll is None:
            return
        if p < 0.7:
            self.add("drop", phase, "main", coll)
            ig = st.colls.pop(("main", coll))
            if r.random() < 0.5:  # recreated under the same name (a planned name)
                st.colls[("main", coll)] = ig
                for _ in range(r.randint(1, 3)):
                    self.ops.append(self.write_op(phase, "main", coll))
            return
        if p < 0.95:
            others = [c for (d, c) in st.colls if d == "main" and c != coll]
            if others and r.random() < 0.4 and self.o.allows("rename-onto-planned"):
                to, drop_target = r.choice(others), True
            elif new_ok:
                to, drop_target = st.new_name("r"), r.random() < 0.5
            else:
                return
            tags = {"rename-onto-planned"} if to in others else {"new-collection"}
            self.add("rename", phase, "main", coll, tags=tags, to=to, drop_target=drop_target)
            st.colls[("main", to)] = st.colls.pop(("main", coll))
            return
        if phase != "pre":
            self.add("drop_database", phase, "main", None)
            for k in [k for k in st.colls if k[0] == "main"]:
                ig = st.colls.pop(k)
                if r.random() < 0.5:  # written again: the same names come back
                    st.colls[k] = ig
                    self.ops.append(self.write_op(phase, "main", k[1]))

    def existing_colls(self):
        """existing_colls: the collections surely created by the ops so far (outside
        transactions)."""
        have = set()
        for op in self.ops:
            k = (op.db, op.coll)
            if op.kind in ("create", "insert", "insert_many", "bulk") or op.args.get("upsert"):
                have.add(k)
            elif op.kind == "drop":
                have.discard(k)
            elif op.kind == "rename":
                if k in have:
                    have.discard(k)
                    have.add((op.db, op.args["to"]))
            elif op.kind == "drop_database":
                have = {x for x in have if x[0] != op.db}
        return have

    def txn_op(self, phase):
        r = self.r
        names = [c for (d, c) in self.st.colls if d == "main"]
        have = self.existing_colls()
        if not self.o.allows("sim-txn-create"):
            names = [c for c in names if ("main", c) in have]
        if not names:
            return
        subs = [self.write_op(phase, "main", r.choice(names), in_txn=True)
                for _ in range(r.randint(1, 4))]
        tags = {"sim-txn-create"} if any(("main", s.coll) not in have for s in subs) else set()
        for s in subs:
            tags |= s.tags
        self.add("txn", phase, "main", None, tags=tags, ops=subs, commit=r.random() < 0.8)

    def build(self):
        r = self.r
        o = self.o
        for i in range(r.choice([1, 1, 2, 2, 3])):
            name = f"c{i}"
            prof = r.choice(ID_PROFILES)
            ig = IdGen(self.vg, prof, o)
            self.st.colls[("main", name)] = ig
            if prof == "empty":
                self.add("create", "pre", "main", name)
                continue
            n = r.choice([0, 1, 2, 3, 5, 8, 12, 20]) if r.random() < 0.9 else r.randint(30, 80)
            if n == 0:
                self.add("create", "pre", "main", name)
            for _ in range(int(n * o.scale + 0.5)):
                _id, tags = ig.fresh(False)
                d, tags = self.skeleton(_id, tags)
                self.add("insert", "pre", "main", name, tags=tags, doc=d)
        nops = r.randint(4, max(5, int(30 * o.scale)))
        order = {ph: i for i, ph in enumerate(PHASES)}
        # phases in program order: the generator's beliefs follow the sequence
        phases = sorted(r.choices(["gap", "copy", "follow"], weights=[1, 3, 6], k=nops),
                        key=order.get)
        for phase in phases:
            p = r.random()
            if p < 0.06:
                self.catalog_op(phase)
            elif p < 0.13:
                self.txn_op(phase)
            else:
                db_coll = r.choice(list(self.st.colls)) if self.st.colls else None
                if db_coll is None:
                    self.catalog_op(phase)
                    continue
                self.ops.append(self.write_op(phase, *db_coll))
        if not o.allows("new-collection"):
            self.ops = drop_new_collection_ops(self.ops)
        return Scenario(self.seed, self.options, self.ops)


def sorted_regex_options(v):
    """sorted_regex_options is v with the options of every regular expression sorted."""
    t = v[0]
    if t == B.REGEX:
        return (B.REGEX, v[1], bytes(sorted(v[2])))
    if t in (B.DOC, B.ARRAY):
        return (t, tuple((k, sorted_regex_options(x)) for k, x in v[1]))
    if t == B.CODEWSCOPE:
        return (t, v[1], sorted_regex_options(v[2]))
    return v


def without_nul_in_code(v):
    """without_nul_in_code is v with NUL bytes replaced in code, code-with-scope and
    DBPointer strings."""
    t = v[0]
    if t == B.CODE:
        return (t, v[1].replace(b"\x00", b"0"))
    if t == B.DBPOINTER:
        return (t, v[1].replace(b"\x00", b"0"), v[2])
    if t == B.CODEWSCOPE:
        return (t, v[1].replace(b"\x00", b"0"), without_nul_in_code(v[2]))
    if t in (B.DOC, B.ARRAY):
        return (t, tuple((k, without_nul_in_code(x)) for k, x in v[1]))
    return v


def value_tags(v):
    """value_tags are the hole classes a value exercises by itself."""
    out = set()
    stack = [v]
    while stack:
        x = stack.pop()
        t = x[0]
        if t in (B.DOC, B.ARRAY):
            if t == B.DOC and len({k for k, _ in x[1]}) != len(x[1]):
                out.add("dup-fields")
            stack.extend(y for _, y in x[1])
        elif t == B.CODEWSCOPE:
            stack.append(x[2])
        elif t == B.DECIMAL:
            sign, kind, coef, exp = B.decimal_parts(x[1])
            if kind == "finite" and coef > 9999999999999999999999999999999999:
                out.add("decimal-noncanonical")
    return out


def _has_dup_fields(v):
    if v[0] == B.DOC:
        keys = [k for k, _ in v[1]]
        if len(keys) != len(set(keys)):
            return True
    if v[0] in (B.DOC, B.ARRAY):
        return any(_has_dup_fields(x) for _, x in v[1])
    if v[0] == B.CODEWSCOPE:
        return _has_dup_fields(v[2])
    return False


def drop_new_collection_ops(ops):
    """drop_new_collection_ops removes writes that would create a collection after init.

    The generator aims at collections it believes exist; a drop followed by a
    write to that name recreates a planned name (fine), but a write into a
    name that never existed before init would be a new collection."""
    planned = {(op.db, op.coll) for op in ops if op.phase == "pre" and op.coll}
    kept = []
    for op in ops:
        if op.phase == "pre" or op.kind == "drop_database":
            kept.append(op)
            continue
        if op.kind == "txn":
            subs = [s for s in op.args["ops"] if (s.db, s.coll) in planned]
            if subs:
                kept.append(Op("txn", op.phase, op.coll, db=op.db, tags=op.tags, ops=subs,
                               commit=op.args["commit"]))
            continue
        if (op.db, op.coll) in planned and (op.kind != "rename" or
                                             (op.db, op.args["to"]) in planned):
            kept.append(op)
    return kept


def scenario(seed, options=None):
    """scenario returns the Scenario of seed under options (GenOptions())."""
    return ScenarioGen(seed, options or GenOptions()).build()
