/*
 * schema/src/schema_key.c - the key column value of an _id (DESIGN §3,
 * docs/type-mapping.md "The key column"): checks that the _id fits the
 * collection's key type, encodes it for COPY binary or as a text parameter,
 * and reads a key back to an _id.
 *
 * The single rule behind every key type: two _ids get the same key exactly
 * when MongoDB's _id index holds them as one _id. That index compares
 * values the way BSON sorts them: numbers by their mathematical value
 * across int32, int64, double and Decimal128 (NaN equal to NaN, -0 equal
 * to 0), strings and symbols by their bytes, embedded documents field by
 * field in order (name, then value), arrays element by element, binary
 * data by length, subtype and bytes, and every other type by its own
 * value. The canonical encoding writes one text per such class of values;
 * the other key types are the same rule restricted to the _ids they hold.
 */
#include "schema_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

/* 10^34 - 1: the largest canonical Decimal128 coefficient. */
#define DEC_MAX_COEFF ((u128)UINT64_C(0x1ed09bead87c0) << 64 | UINT64_C(0x378d8e63ffffffff))

/* The collection a key is encoded for (NULL names: unknown), for the misfit error's way out. */
typedef struct {
    const char *db;
    const char *coll;
} ns_t;

/* ------------------------------------------------------------------------
 * Describing an _id in messages
 * ------------------------------------------------------------------------ */

void
mg_schema_id_describe(const bson_iter_t *id, char *out, size_t outsz)
{
    mg_buf_t b;
    mg_error_t e;

    mg_buf_init(&b, 64 * 1024);
    if (mg_schema_value_render(id, MG_SCHEMA_FIDELITY_RELAXED, &b, NULL, &e) &&
        mg_buf_append(&b, "", 0, &e)) {
        /* cut between characters: the text goes to Postgres (reasons, mismatches), which
         * refuses a character cut in two */
        mg_utf8_copy(out, outsz, b.data, b.len);
    } else {
        snprintf(out, outsz, "(unprintable _id of BSON type 0x%02x)", (int)bson_iter_type(id));
    }
    mg_buf_cleanup(&b);
}

/*
 * way_out writes the --key-type item that gives ns the canonical key type:
 * the namespace as an fnmatch pattern matching only itself (\ before * ? [
 * and \), in single quotes for a POSIX shell unless it is plain.
 */
static void
way_out(const ns_t *ns, char *out, size_t outsz)
{
    char item[1024];
    size_t o = 0;
    bool plain = true;

    if (ns == NULL || ns->db == NULL || ns->coll == NULL) {
        snprintf(out, outsz, "DB.COLL=canonical");
        return;
    }
    for (int part = 0; part < 2; part++) {
        const char *s = part == 0 ? ns->db : ns->coll;

        for (; *s != '\0' && o + 8 < sizeof(item); s++) {
            if (strchr("*?[\\", *s) != NULL)
                item[o++] = '\\';
            if (*s == '\'') {
                memcpy(item + o, "'\\''", 4); /* close, escaped quote, reopen */
                o += 4;
                plain = false;
                continue;
            }
            if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                  (*s >= '0' && *s <= '9') || strchr("._-/:@%+,", *s) != NULL))
                plain = false;
            item[o++] = *s;
        }
        if (part == 0)
            item[o++] = '.';
    }
    item[o] = '\0';
    snprintf(out, outsz, plain ? "%s=canonical" : "'%s=canonical'", item);
}

/*
 * misfit fails with MG_ERROR_CODE_INVALID_ARGUMENT: the _id does not fit the
 * key type. The way out comes before the _id (shown to 96 bytes), so that a
 * caller's prefix cannot push it past the end of the message.
 */
static bool
misfit(const bson_iter_t *id, mg_schema_key_type_t type, const char *why, const ns_t *ns,
       mg_error_t *error)
{
    char shown[96], item[1100];

    mg_schema_id_describe(id, shown, sizeof(shown));
    if (type == MG_SCHEMA_KEY_CANONICAL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not encode _id %s: %s", shown, why);
    way_out(ns, item, sizeof(item));
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                        "_id does not fit key type %s (%s); every _id fits key type canonical: "
                        "choose it for this collection with migrate init --reset --yes "
                        "--key-type %s; the _id: %s",
                        mg_schema_key_type_name(type), why, item, shown);
}

static bool
is_oid_hex(const char *s, uint32_t len)
{
    if (len != 24)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ------------------------------------------------------------------------
 * Numbers: one class per mathematical value
 * ------------------------------------------------------------------------ */

typedef enum {
    NUM_INT,     /* an integer in int64's range: *i */
    NUM_DOUBLE,  /* not such an integer, but exactly a double (or +-Infinity): *d */
    NUM_DECIMAL, /* neither: sign, coefficient (no trailing zero) and exponent */
    NUM_NAN,     /* any NaN, double or decimal */
} num_class_t;

typedef struct {
    num_class_t kind;
    int64_t i;
    double d;
    bool neg;
    u128 coeff;
    int32_t exp;
} num_t;

/* double_class classifies a double. */
static void
double_class(double d, num_t *n)
{
    if (isnan(d)) {
        n->kind = NUM_NAN;
    } else if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == floor(d)) {
        n->kind = NUM_INT; /* -0.0 too: the integer 0 */
        n->i = (int64_t)d;
    } else {
        n->kind = NUM_DOUBLE;
        n->d = d;
    }
}

/* ctz128 counts the trailing zero bits of v (v != 0). */
static int
ctz128(u128 v)
{
    uint64_t lo = (uint64_t)v;

    return lo != 0 ? __builtin_ctzll(lo) : 64 + __builtin_ctzll((uint64_t)(v >> 64));
}

/* bitlen128 returns the number of significant bits of v. */
static int
bitlen128(u128 v)
{
    uint64_t hi = (uint64_t)(v >> 64);

    if (hi != 0)
        return 128 - __builtin_clzll(hi);
    return v == 0 ? 0 : 64 - __builtin_clzll((uint64_t)v);
}

/*
 * decimal_as_double sets *d and returns true when coeff * 10^exp (coeff
 * not divisible by 10, > 0) is exactly a double.
 */
static bool
decimal_as_double(u128 coeff, int32_t exp, double *d)
{
    int tz = ctz128(coeff);
    u128 m = coeff >> tz; /* odd */
    int32_t e2 = tz;

    if (exp >= 0) {
        /* m * 5^exp * 2^(tz + exp): the odd part must stay below 2^53 */
        if (exp > 22 || m >> 53 != 0)
            return false;
        for (int32_t k = 0; k < exp; k++) {
            m *= 5;
            if (m >> 53 != 0)
                return false;
        }
        e2 += exp;
    } else {
        /* m / (5^k 2^k): needs 5^k | m (5^49 > 10^34 > coeff) */
        int32_t k = -exp;

        if (k > 48)
            return false;
        for (int32_t j = 0; j < k; j++) {
            if (m % 5 != 0)
                return false;
            m /= 5;
        }
        e2 -= k;
    }
    if (m >> 53 != 0 || e2 < -1074 || bitlen128(m) + e2 > 1024)
        return false;
    *d = ldexp((double)(uint64_t)m, e2);
    return true;
}

/* decimal_class classifies a Decimal128 by value. */
static void
decimal_class(const bson_decimal128_t *dec, num_t *n)
{
    uint64_t hi = dec->high, lo = dec->low;
    bool neg = (hi >> 63) != 0;
    u128 coeff;
    int32_t exp;

    if (((hi >> 58) & 0x1f) == 0x1f) {
        n->kind = NUM_NAN;
        return;
    }
    if (((hi >> 58) & 0x1f) == 0x1e) {
        n->kind = NUM_DOUBLE;
        n->d = neg ? -INFINITY : INFINITY;
        return;
    }
    if (((hi >> 61) & 3) == 3) {
        coeff = 0; /* the implicit 100 prefix: above 10^34 - 1, so non-canonical: zero */
        exp = 0;
    } else {
        coeff = (u128)(hi & UINT64_C(0x1ffffffffffff)) << 64 | lo;
        exp = (int32_t)((hi >> 49) & 0x3fff) - 6176;
        if (coeff > DEC_MAX_COEFF)
            coeff = 0;
    }
    if (coeff == 0) {
        n->kind = NUM_INT; /* every zero, -0 included, is the integer 0 */
        n->i = 0;
        return;
    }
    while (coeff % 10 == 0) {
        coeff /= 10;
        exp++;
    }
    if (exp >= 0 && exp <= 18) {
        u128 limit = neg ? (u128)1 << 63 : ((u128)1 << 63) - 1;
        u128 p10 = 1;

        for (int32_t k = 0; k < exp; k++)
            p10 *= 10;
        if (coeff <= limit / p10) {
            u128 v = coeff * p10;

            n->kind = NUM_INT;
            n->i = neg ? (int64_t)(0 - (uint64_t)v) : (int64_t)(uint64_t)v;
            return;
        }
    }
    if (decimal_as_double(coeff, exp, &n->d)) {
        n->kind = NUM_DOUBLE;
        if (neg)
            n->d = -n->d;
        return;
    }
    n->kind = NUM_DECIMAL;
    n->neg = neg;
    n->coeff = coeff;
    n->exp = exp;
}

/* u128_format writes v in decimal into out (at least 40 bytes); returns the length. */
static size_t
u128_format(u128 v, char *out)
{
    char tmp[40];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* ------------------------------------------------------------------------
 * The canonical encoding
 * ------------------------------------------------------------------------ */

typedef struct {
    mg_buf_t *out;
    mg_error_t *error;
    const bson_iter_t *id; /* for messages */
} kenc_t;

static bool enc_value(kenc_t *k, const bson_iter_t *it, uint32_t depth);

static inline bool
kput(kenc_t *k, const void *s, size_t n)
{
    return mg_buf_append(k->out, s, n, k->error);
}

static inline bool
kput1(kenc_t *k, char c)
{
    return mg_buf_append(k->out, &c, 1, k->error);
}

/* kput_i64 appends tag, v in decimal and ';'. */
static bool
kput_i64(kenc_t *k, char tag, int64_t v)
{
    char buf[24];
    size_t n;

    buf[0] = tag;
    n = 1 + mg_schema__i64_format(v, buf + 1);
    buf[n++] = ';';
    return kput(k, buf, n);
}

/* kput_hex appends the lower-case hex of n bytes. */
static bool
kput_hex(kenc_t *k, const uint8_t *p, size_t n)
{
    char *dst;

    if (!mg_buf_reserve(k->out, 2 * n + 1, k->error))
        return false;
    dst = k->out->data + k->out->len;
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = mg_schema__hex[p[i] >> 4];
        dst[2 * i + 1] = mg_schema__hex[p[i] & 15];
    }
    k->out->len += 2 * n;
    return true;
}

/*
 * enc_string appends a string (or a key, pattern, namespace): "s<len>:" and
 * its bytes when they are UTF-8 without U+0000 (text can hold them), else
 * "S<len>:" and the hex of its bytes.
 */
static bool
enc_string(kenc_t *k, const char *s, size_t len)
{
    char head[32];
    bool plain = memchr(s, '\0', len) == NULL && mg_utf8_valid(s, len);
    size_t n;

    head[0] = plain ? 's' : 'S';
    n = 1 + mg_schema__u64_format(len, head + 1);
    head[n++] = ':';
    if (!kput(k, head, n))
        return false;
    return plain ? kput(k, s, len) : kput_hex(k, (const uint8_t *)s, len);
}

/* enc_number appends the class text of a number (docs/type-mapping.md). */
static bool
enc_number(kenc_t *k, const num_t *n)
{
    char buf[MG_SCHEMA_DOUBLE_MAX + 64];
    size_t len = 0;

    switch (n->kind) {
    case NUM_INT:
        return kput_i64(k, 'i', n->i);
    case NUM_NAN:
        return kput(k, "rNaN;", 5);
    case NUM_DOUBLE:
        if (isinf(n->d))
            return n->d > 0 ? kput(k, "rInfinity;", 10) : kput(k, "r-Infinity;", 11);
        buf[len++] = 'r';
        len += mg_schema__double_format(n->d, buf + len);
        buf[len++] = ';';
        return kput(k, buf, len);
    case NUM_DECIMAL:
        buf[len++] = 'x';
        if (n->neg)
            buf[len++] = '-';
        len += u128_format(n->coeff, buf + len);
        buf[len++] = 'E';
        len += mg_schema__i64_format(n->exp, buf + len);
        buf[len++] = ';';
        return kput(k, buf, len);
    }
    return false;
}

/* enc_container appends a document ("{" name value ... "}") or array ("[" value ... "]"). */
static bool
enc_container(kenc_t *k, bson_iter_t *child, bool is_array, uint32_t depth)
{
    if (depth >= MG_SCHEMA_MAX_DEPTH)
        return mg_error_set(k->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "could not encode _id: nested deeper than %d", MG_SCHEMA_MAX_DEPTH);
    if (!kput1(k, is_array ? '[' : '{'))
        return false;
    while (bson_iter_next(child)) {
        if (!is_array && !enc_string(k, bson_iter_key(child), bson_iter_key_len(child)))
            return false;
        if (!enc_value(k, child, depth + 1))
            return false;
    }
    if (child->err_off != 0)
        return mg_error_set(k->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not encode _id: corrupt BSON");
    return kput1(k, is_array ? ']' : '}');
}

/* enc_value appends the canonical text of one value. */
static bool
enc_value(kenc_t *k, const bson_iter_t *it, uint32_t depth)
{
    bson_iter_t child;
    uint32_t len;
    num_t n;

    switch (bson_iter_type(it)) {
    case BSON_TYPE_OID: {
        char hex[25];

        bson_oid_to_string(bson_iter_oid(it), hex);
        return kput(k, hex, 24);
    }
    case BSON_TYPE_UTF8: {
        const char *s = bson_iter_utf8(it, &len);

        return enc_string(k, s, len);
    }
    case BSON_TYPE_SYMBOL: { /* a symbol is the string with the same bytes */
        const char *s = bson_iter_symbol(it, &len);

        return enc_string(k, s, len);
    }
    case BSON_TYPE_INT32:
        return kput_i64(k, 'i', bson_iter_int32(it));
    case BSON_TYPE_INT64:
        return kput_i64(k, 'i', bson_iter_int64(it));
    case BSON_TYPE_DOUBLE:
        double_class(bson_iter_double(it), &n);
        return enc_number(k, &n);
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t dec;

        bson_iter_decimal128(it, &dec);
        decimal_class(&dec, &n);
        return enc_number(k, &n);
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bool is_array = bson_iter_type(it) == BSON_TYPE_ARRAY;

        if (is_array && depth == 0)
            return misfit(k->id, MG_SCHEMA_KEY_CANONICAL,
                          "an array cannot be an _id (MongoDB refuses it)", NULL, k->error);
        if (!bson_iter_recurse(it, &child))
            return mg_error_set(k->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                "could not encode _id: corrupt embedded document");
        return enc_container(k, &child, is_array, depth);
    }
    case BSON_TYPE_BINARY: {
        bson_subtype_t subtype;
        const uint8_t *data;
        uint8_t st;

        bson_iter_binary(it, &subtype, &len, &data);
        st = (uint8_t)subtype;
        return kput1(k, 'B') && kput_hex(k, &st, 1) && kput_hex(k, data, len) && kput1(k, ';');
    }
    case BSON_TYPE_UNDEFINED:
        return kput1(k, 'u');
    case BSON_TYPE_NULL:
        return kput1(k, 'n');
    case BSON_TYPE_MINKEY:
        return kput1(k, '<');
    case BSON_TYPE_MAXKEY:
        return kput1(k, '>');
    case BSON_TYPE_BOOL:
        return kput1(k, bson_iter_bool(it) ? 'T' : 'F');
    case BSON_TYPE_DATE_TIME:
        return kput_i64(k, 'D', bson_iter_date_time(it));
    case BSON_TYPE_TIMESTAMP: {
        uint32_t t, i;
        char buf[32];

        bson_iter_timestamp(it, &t, &i);
        return kput(k, buf, (size_t)snprintf(buf, sizeof(buf), "t%u,%u;", t, i));
    }
    case BSON_TYPE_REGEX: {
        const char *options;
        const char *pattern = bson_iter_regex(it, &options);

        return kput1(k, 'R') && enc_string(k, pattern, strlen(pattern)) &&
               enc_string(k, options, strlen(options));
    }
    case BSON_TYPE_DBPOINTER: {
        const char *ns;
        const bson_oid_t *oid;
        char hex[25];

        bson_iter_dbpointer(it, &len, &ns, &oid);
        bson_oid_to_string(oid, hex);
        return kput1(k, 'P') && enc_string(k, ns, len) && kput(k, hex, 24);
    }
    case BSON_TYPE_CODE: {
        const char *code = bson_iter_code(it, &len);

        return kput1(k, 'J') && enc_string(k, code, len);
    }
    case BSON_TYPE_CODEWSCOPE: {
        uint32_t scope_len;
        const uint8_t *scope;
        const char *code = bson_iter_codewscope(it, &len, &scope_len, &scope);

        if (!bson_iter_init_from_data(&child, scope, scope_len))
            return mg_error_set(k->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                "could not encode _id: corrupt code-with-scope scope");
        return kput1(k, 'K') && enc_string(k, code, len) && enc_container(k, &child, false, depth);
    }
    case BSON_TYPE_EOD:
    default:
        return mg_error_set(k->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not encode _id: unknown BSON type 0x%02x",
                            (int)bson_iter_type(it));
    }
}

/*
 * encode_canonical appends the canonical key of id, or "#" + the hex SHA-256
 * of it when it is longer than MG_SCHEMA_KEY_MAX_BYTES.
 */
static bool
encode_canonical(const bson_iter_t *id, mg_buf_t *out, mg_error_t *error)
{
    kenc_t k = {out, error, id};
    size_t start = out->len;

    /* the common case, an ObjectId: 24 hex digits, nothing else to check */
    if (bson_iter_type(id) == BSON_TYPE_OID) {
        char hex[25];

        bson_oid_to_string(bson_iter_oid(id), hex);
        return mg_buf_append(out, hex, 24, error);
    }
    if (!enc_value(&k, id, 0)) {
        out->len = start;
        return false;
    }
    if (out->len - start > MG_SCHEMA_KEY_MAX_BYTES) {
        uint8_t digest[32];

        mg_schema__sha256(out->data + start, out->len - start, digest);
        out->len = start;
        return kput1(&k, '#') && kput_hex(&k, digest, 32);
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Encoding for each key type
 * ------------------------------------------------------------------------ */

/* encode_text appends an ObjectId's hex or a string (text_objectid, text_string). */
static bool
encode_text(const bson_iter_t *id, mg_schema_key_type_t type, const ns_t *ns, mg_buf_t *out,
            mg_error_t *error)
{
    bson_type_t t = bson_iter_type(id);
    const char *s;
    uint32_t len;

    if (t == BSON_TYPE_OID && type == MG_SCHEMA_KEY_TEXT_OID) {
        char hex[25];

        bson_oid_to_string(bson_iter_oid(id), hex);
        return mg_buf_append(out, hex, 24, error);
    }
    if (t == BSON_TYPE_UTF8)
        s = bson_iter_utf8(id, &len);
    else if (t == BSON_TYPE_SYMBOL) /* equal to the string with its bytes */
        s = bson_iter_symbol(id, &len);
    else
        return misfit(id, type,
                      type == MG_SCHEMA_KEY_TEXT_OID ? "only ObjectIds and strings fit"
                                                     : "only strings fit",
                      ns, error);
    if (type == MG_SCHEMA_KEY_TEXT_OID && is_oid_hex(s, len))
        return misfit(id, type, "a string that reads as ObjectId hex would collide", ns, error);
    if (memchr(s, '\0', len) != NULL || !mg_utf8_valid(s, len))
        return misfit(id, type, "text cannot hold NUL or invalid UTF-8", ns, error);
    if (len > MG_SCHEMA_KEY_MAX_BYTES)
        return misfit(id, type, "longer than the 2600 bytes a btree key can hold", ns, error);
    return mg_buf_append(out, s, len, error);
}

/* encode_bigint appends a number whose value is an int64 (bigint). */
static bool
encode_bigint(const bson_iter_t *id, bool binary, const ns_t *ns, mg_buf_t *out, mg_error_t *error)
{
    num_t n = {.kind = NUM_DECIMAL};
    uint8_t be[8];
    uint64_t u;

    switch (bson_iter_type(id)) {
    case BSON_TYPE_INT32:
        n.kind = NUM_INT;
        n.i = bson_iter_int32(id);
        break;
    case BSON_TYPE_INT64:
        n.kind = NUM_INT;
        n.i = bson_iter_int64(id);
        break;
    case BSON_TYPE_DOUBLE:
        double_class(bson_iter_double(id), &n);
        break;
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t dec;

        bson_iter_decimal128(id, &dec);
        decimal_class(&dec, &n);
        break;
    }
    default:
        return misfit(id, MG_SCHEMA_KEY_BIGINT, "only numbers with an integer value fit", ns,
                      error);
    }
    if (n.kind != NUM_INT)
        return misfit(id, MG_SCHEMA_KEY_BIGINT, "only numbers with an integer value fit", ns,
                      error);
    if (!binary)
        return mg_buf_printf(out, error, "%lld", (long long)n.i);
    u = (uint64_t)n.i;
    for (int i = 7; i >= 0; i--) {
        be[i] = (uint8_t)(u & 0xff);
        u >>= 8;
    }
    return mg_buf_append(out, be, 8, error);
}

bool
mg_schema_key_encode(const bson_iter_t *id, mg_schema_key_type_t type,
                     mg_schema_fidelity_t fidelity, bool binary, mg_buf_t *out, mg_error_t *error)
{
    return mg_schema_key_encode_for(NULL, NULL, id, type, fidelity, binary, out, error);
}

bool
mg_schema_key_encode_for(const char *db, const char *coll, const bson_iter_t *id,
                         mg_schema_key_type_t type, mg_schema_fidelity_t fidelity, bool binary,
                         mg_buf_t *out, mg_error_t *error)
{
    size_t start = out->len;
    ns_t ns = {db, coll};

    switch (type) {
    case MG_SCHEMA_KEY_TEXT_OID:
    case MG_SCHEMA_KEY_TEXT_STRING:
        return encode_text(id, type, &ns, out, error);
    case MG_SCHEMA_KEY_BIGINT:
        return encode_bigint(id, binary, &ns, out, error);
    case MG_SCHEMA_KEY_CANONICAL:
        return encode_canonical(id, out, error);
    case MG_SCHEMA_KEY_JSONB:
        if (binary && !mg_buf_append(out, "\x01", 1, error))
            return false;
        if (!mg_schema_value_render(id, fidelity, out, NULL, error)) {
            out->len = start;
            return false;
        }
        if (out->len - start > MG_SCHEMA_KEY_MAX_BYTES) {
            out->len = start;
            return misfit(id, type, "longer than the 2600 bytes a btree key can hold", &ns, error);
        }
        return true;
    }
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                        "unknown key type %d", (int)type);
}

/* ------------------------------------------------------------------------
 * Reading a key back to an _id
 * ------------------------------------------------------------------------ */

typedef struct {
    const char *p;
    const char *end;
    const char *start;
    mg_error_t *error;
} kdec_t;

static bool dec_value(kdec_t *d, bson_t *dst, const char *key, size_t klen, uint32_t depth);

static bool
dbad(kdec_t *d, const char *what)
{
    return mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                        "could not read key: %s at byte %zu", what, (size_t)(d->p - d->start));
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* dec_u64 reads decimal digits (at least one, no sign) up to max. */
static bool
dec_u64(kdec_t *d, uint64_t max, uint64_t *v)
{
    uint64_t acc = 0;
    const char *begin = d->p;

    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') {
        unsigned dig = (unsigned)(*d->p - '0');

        if (acc > (max - dig) / 10)
            return dbad(d, "number out of range");
        acc = acc * 10 + dig;
        d->p++;
    }
    if (d->p == begin)
        return dbad(d, "digits expected");
    *v = acc;
    return true;
}

/* dec_i64 reads an optionally negative decimal integer. */
static bool
dec_i64(kdec_t *d, int64_t *v)
{
    bool neg = d->p < d->end && *d->p == '-';
    uint64_t u = 0;

    if (neg)
        d->p++;
    if (!dec_u64(d, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &u))
        return false;
    *v = neg ? (int64_t)(0 - u) : (int64_t)u;
    return true;
}

static bool
expect(kdec_t *d, char c)
{
    if (d->p >= d->end || *d->p != c) {
        char what[32];

        snprintf(what, sizeof(what), "'%c' expected", c);
        return dbad(d, what);
    }
    d->p++;
    return true;
}

/* dec_hex reads exactly n bytes as 2n lower-case hex digits into out. */
static bool
dec_hex(kdec_t *d, uint8_t *out, size_t n)
{
    if ((size_t)(d->end - d->p) < 2 * n)
        return dbad(d, "hex digits expected");
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(d->p[2 * i]), lo = hexval(d->p[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return dbad(d, "hex digits expected");
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    d->p += 2 * n;
    return true;
}

/*
 * dec_string reads "s<len>:<bytes>" or "S<len>:<hex>" into a new buffer
 * (*s, caller frees; NUL-terminated) of *len bytes.
 */
static bool
dec_string(kdec_t *d, char **s, size_t *len)
{
    char tag;
    uint64_t n;
    char *buf;

    if (d->p >= d->end || (*d->p != 's' && *d->p != 'S'))
        return dbad(d, "string expected");
    tag = *d->p++;
    if (!dec_u64(d, INT32_MAX - 64, &n) || !expect(d, ':'))
        return false;
    if ((uint64_t)(d->end - d->p) < (tag == 's' ? n : 2 * n))
        return dbad(d, "string shorter than its length");
    buf = malloc(n + 1);
    if (buf == NULL)
        return mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    if (tag == 's') {
        memcpy(buf, d->p, n);
        d->p += n;
    } else if (!dec_hex(d, (uint8_t *)buf, n)) {
        free(buf);
        return false;
    }
    buf[n] = '\0';
    *s = buf;
    *len = n;
    return true;
}

/* dec_oid reads 24 lower-case hex digits. */
static bool
dec_oid(kdec_t *d, bson_oid_t *oid)
{
    return dec_hex(d, oid->bytes, 12);
}

/* append_string_like appends a string-shaped element ([int32 len+1][bytes][NUL] + extra). */
static bool
append_string_like(kdec_t *d, bson_t *dst, bson_type_t type, const char *key, size_t klen,
                   const char *s, size_t len, const uint8_t *extra, size_t extra_len)
{
    uint8_t *payload = malloc(4 + len + 1 + extra_len);
    uint32_t le = BSON_UINT32_TO_LE((uint32_t)(len + 1));
    bool ok;

    if (payload == NULL)
        return mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    memcpy(payload, &le, 4);
    memcpy(payload + 4, s, len);
    payload[4 + len] = 0;
    if (extra_len > 0)
        memcpy(payload + 5 + len, extra, extra_len);
    ok = mg_schema__append_raw(dst, type, key, klen, payload, 4 + len + 1 + extra_len) ||
         mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                      "could not read key: _id too large");
    free(payload);
    return ok;
}

/* dec_container reads a document or array body up to its closing bracket. */
static bool
dec_container(kdec_t *d, bson_t *sub, bool is_array, uint32_t depth)
{
    char close = is_array ? ']' : '}';
    uint32_t index = 0;

    if (depth >= MG_SCHEMA_MAX_DEPTH)
        return dbad(d, "nested too deeply");
    while (d->p < d->end && *d->p != close) {
        bool ok;

        if (is_array) {
            char idx[16];
            const char *k;
            size_t kl = bson_uint32_to_string(index++, &k, idx, sizeof(idx));

            ok = dec_value(d, sub, k, kl, depth + 1);
        } else {
            char *name;
            size_t nl;

            if (!dec_string(d, &name, &nl))
                return false;
            if (memchr(name, '\0', nl) != NULL) {
                free(name);
                return dbad(d, "a field name holds U+0000");
            }
            ok = dec_value(d, sub, name, nl, depth + 1);
            free(name);
        }
        if (!ok)
            return false;
    }
    return expect(d, close);
}

/* dec_number reads the text of an r (double) or x (decimal) class up to ';'. */
static bool
dec_number(kdec_t *d, char tag, bson_t *dst, const char *key, size_t klen)
{
    const char *semi = memchr(d->p, ';', (size_t)(d->end - d->p));
    char text[MG_SCHEMA_DOUBLE_MAX + 64];
    size_t n;
    bool ok;

    if (semi == NULL || (n = (size_t)(semi - d->p)) == 0 || n >= sizeof(text))
        return dbad(d, "number expected");
    memcpy(text, d->p, n);
    text[n] = '\0';
    if (tag == 'r') {
        double v;
        char *end;

        if (strcmp(text, "NaN") == 0)
            v = NAN;
        else if (strcmp(text, "Infinity") == 0)
            v = INFINITY;
        else if (strcmp(text, "-Infinity") == 0)
            v = -INFINITY;
        else if (strspn(text, "-0123456789.") != n || (v = strtod(text, &end), *end != '\0') ||
                 !isfinite(v))
            return dbad(d, "double expected");
        ok = bson_append_double(dst, key, (int)klen, v);
    } else {
        bson_decimal128_t dec;

        if (strspn(text, "-0123456789E") != n || !bson_decimal128_from_string(text, &dec))
            return dbad(d, "decimal expected");
        ok = bson_append_decimal128(dst, key, (int)klen, &dec);
    }
    d->p = semi + 1;
    return ok || mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                              "could not read key: _id too large");
}

/* dec_scalar reads the types that are one tag and a fixed payload. */
static bool
dec_scalar(kdec_t *d, char tag, bson_t *dst, const char *key, size_t klen, bool *ok)
{
    int k = (int)klen;
    int64_t v;

    switch (tag) {
    case 'i':
        if (!dec_i64(d, &v) || !expect(d, ';'))
            return false;
        *ok = v >= INT32_MIN && v <= INT32_MAX ? bson_append_int32(dst, key, k, (int32_t)v)
                                               : bson_append_int64(dst, key, k, v);
        return true;
    case 'D':
        if (!dec_i64(d, &v) || !expect(d, ';'))
            return false;
        *ok = bson_append_date_time(dst, key, k, v);
        return true;
    case 't': {
        uint64_t t, i;

        if (!dec_u64(d, UINT32_MAX, &t) || !expect(d, ',') || !dec_u64(d, UINT32_MAX, &i) ||
            !expect(d, ';'))
            return false;
        *ok = bson_append_timestamp(dst, key, k, (uint32_t)t, (uint32_t)i);
        return true;
    }
    case 'u':
        *ok = bson_append_undefined(dst, key, k);
        return true;
    case 'n':
        *ok = bson_append_null(dst, key, k);
        return true;
    case '<':
        *ok = bson_append_minkey(dst, key, k);
        return true;
    case '>':
        *ok = bson_append_maxkey(dst, key, k);
        return true;
    case 'T':
    case 'F':
        *ok = bson_append_bool(dst, key, k, tag == 'T');
        return true;
    default:
        d->p--;
        return dbad(d, "unknown tag");
    }
}

/* dec_binary reads "B<subtype hex><data hex>;". */
static bool
dec_binary(kdec_t *d, bson_t *dst, const char *key, size_t klen)
{
    const char *semi = memchr(d->p, ';', (size_t)(d->end - d->p));
    uint8_t subtype = 0, *data;
    size_t n;
    bool ok;

    if (semi == NULL || (semi - d->p) % 2 != 0 || semi - d->p < 2)
        return dbad(d, "binary expected");
    if (!dec_hex(d, &subtype, 1))
        return false;
    n = (size_t)(semi - d->p) / 2;
    data = malloc(n + 1);
    if (data == NULL)
        return mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    if (!dec_hex(d, data, n)) {
        free(data);
        return false;
    }
    d->p++; /* ';' */
    ok = bson_append_binary(dst, key, (int)klen, (bson_subtype_t)subtype, data, (uint32_t)n);
    free(data);
    return ok || mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                              "could not read key: _id too large");
}

/* dec_stringish reads the types built from strings: string, regex, DBPointer, code. */
static bool
dec_stringish(kdec_t *d, char tag, bson_t *dst, const char *key, size_t klen, uint32_t depth)
{
    char *a = NULL, *b = NULL;
    size_t al, bl;
    bool ok = false;

    if (tag == 's' || tag == 'S') {
        d->p--;
        if (!dec_string(d, &a, &al))
            return false;
        ok = bson_append_utf8(dst, key, (int)klen, a, (int)al) ||
             mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                          "could not read key: _id too large");
    } else if (tag == 'R') {
        if (dec_string(d, &a, &al) && dec_string(d, &b, &bl)) {
            if (memchr(a, '\0', al) != NULL || memchr(b, '\0', bl) != NULL) {
                ok = dbad(d, "a regular expression holds U+0000");
            } else {
                /* pattern and options as cstrings, options not re-sorted */
                size_t plen = al + 1 + bl + 1;
                uint8_t *payload = malloc(plen);

                if (payload == NULL) {
                    ok = mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                      "out of memory");
                } else {
                    memcpy(payload, a, al + 1);
                    memcpy(payload + al + 1, b, bl + 1);
                    ok = mg_schema__append_raw(dst, BSON_TYPE_REGEX, key, klen, payload, plen) ||
                         mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                      "could not read key: _id too large");
                    free(payload);
                }
            }
        }
    } else if (tag == 'P') {
        bson_oid_t oid;

        if (dec_string(d, &a, &al) && dec_oid(d, &oid))
            ok = append_string_like(d, dst, BSON_TYPE_DBPOINTER, key, klen, a, al, oid.bytes, 12);
    } else if (tag == 'J') {
        if (dec_string(d, &a, &al))
            ok = append_string_like(d, dst, BSON_TYPE_CODE, key, klen, a, al, NULL, 0);
    } else { /* 'K': code with scope */
        bson_t scope = BSON_INITIALIZER;

        if (dec_string(d, &a, &al) && expect(d, '{') &&
            dec_container(d, &scope, false, depth + 1)) {
            /* code_w_s: int32 total, the code string, the scope document */
            size_t total = 4 + 4 + al + 1 + scope.len;
            uint8_t *payload = malloc(total);

            if (payload == NULL || total > INT32_MAX) {
                ok = mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                  "could not read key: _id too large");
            } else {
                uint32_t le_total = BSON_UINT32_TO_LE((uint32_t)total);
                uint32_t le_len = BSON_UINT32_TO_LE((uint32_t)(al + 1));

                memcpy(payload, &le_total, 4);
                memcpy(payload + 4, &le_len, 4);
                memcpy(payload + 8, a, al + 1);
                memcpy(payload + 9 + al, bson_get_data(&scope), scope.len);
                ok = mg_schema__append_raw(dst, BSON_TYPE_CODEWSCOPE, key, klen, payload, total) ||
                     mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                  "could not read key: _id too large");
            }
            free(payload);
        }
        bson_destroy(&scope);
    }
    free(a);
    free(b);
    return ok;
}

/* dec_value reads one value and appends it to dst under key. */
static bool
dec_value(kdec_t *d, bson_t *dst, const char *key, size_t klen, uint32_t depth)
{
    char tag;
    bool ok = false;

    if (d->p >= d->end)
        return dbad(d, "value expected");
    if (hexval(*d->p) >= 0) {
        bson_oid_t oid;

        return dec_oid(d, &oid) &&
               (bson_append_oid(dst, key, (int)klen, &oid) ||
                mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                             "could not read key: _id too large"));
    }
    tag = *d->p++;
    switch (tag) {
    case 's':
    case 'S':
    case 'R':
    case 'P':
    case 'J':
    case 'K':
        return dec_stringish(d, tag, dst, key, klen, depth);
    case 'r':
    case 'x':
        return dec_number(d, tag, dst, key, klen);
    case 'B':
        return dec_binary(d, dst, key, klen);
    case '{':
    case '[': {
        bson_t sub;
        bool is_array = tag == '[';

        if (is_array ? !bson_append_array_begin(dst, key, (int)klen, &sub)
                     : !bson_append_document_begin(dst, key, (int)klen, &sub))
            return mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "could not read key: _id too large");
        ok = dec_container(d, &sub, is_array, depth);
        if (is_array)
            bson_append_array_end(dst, &sub);
        else
            bson_append_document_end(dst, &sub);
        return ok;
    }
    default:
        if (!dec_scalar(d, tag, dst, key, klen, &ok))
            return false;
        return ok || mg_error_set(d->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                  "could not read key: _id too large");
    }
}

bool
mg_schema_key_is_digest(mg_schema_key_type_t type, const char *text, size_t len)
{
    return type == MG_SCHEMA_KEY_CANONICAL && len > 0 && text[0] == '#';
}

bool
mg_schema_key_any_digest(mg_schema_key_type_t type, const char *const *texts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (mg_schema_key_is_digest(type, texts[i], strlen(texts[i])))
            return true;
    return false;
}

/* append_canonical reads a whole canonical key into tmp under key. */
static bool
append_canonical(const char *text, size_t len, bson_t *tmp, const char *key, size_t klen,
                 mg_error_t *error)
{
    kdec_t d = {text, text + len, text, error};

    if (mg_schema_key_is_digest(MG_SCHEMA_KEY_CANONICAL, text, len))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_NOT_FOUND,
                            "could not read key \"%.*s\": a key longer than %d bytes is stored "
                            "as its SHA-256 digest, which does not give the _id back",
                            (int)(len < 80 ? len : 80), text, MG_SCHEMA_KEY_MAX_BYTES);
    if (len > 0 && text[0] == '[')
        return dbad(&d, "an array cannot be an _id");
    if (!dec_value(&d, tmp, key, klen, 0))
        return false;
    if (d.p != d.end)
        return dbad(&d, "trailing bytes");
    return true;
}

bool
mg_schema_key_append_id(mg_schema_key_type_t type, const char *text, size_t len, bson_t *dst,
                        const char *key, int key_len, mg_error_t *error)
{
    bson_t tmp = BSON_INITIALIZER;
    size_t klen = key_len < 0 ? strlen(key) : (size_t)key_len;
    bool ok;

    switch (type) {
    case MG_SCHEMA_KEY_TEXT_OID:
    case MG_SCHEMA_KEY_TEXT_STRING:
        if (memchr(text, '\0', len) != NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                "could not read key: text holds U+0000");
        if (type == MG_SCHEMA_KEY_TEXT_OID && is_oid_hex(text, (uint32_t)len)) {
            bson_oid_t oid;

            bson_oid_init_from_string(&oid, text);
            ok = bson_append_oid(&tmp, key, (int)klen, &oid);
        } else {
            ok = bson_append_utf8(&tmp, key, (int)klen, text, (int)len);
        }
        if (!ok)
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                         "could not read key: _id too large");
        break;
    case MG_SCHEMA_KEY_BIGINT: {
        kdec_t d = {text, text + len, text, error};
        int64_t v;

        ok = dec_i64(&d, &v) && (d.p == d.end || dbad(&d, "trailing bytes"));
        if (ok && !bson_append_int64(&tmp, key, (int)klen, v))
            ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                              "could not read key: _id too large");
        break;
    }
    case MG_SCHEMA_KEY_JSONB:
        ok = mg_schema_json_append_value(&tmp, key, (int)klen, text, len, error);
        break;
    case MG_SCHEMA_KEY_CANONICAL:
        ok = append_canonical(text, len, &tmp, key, klen, error);
        break;
    default:
        ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                          "unknown key type %d", (int)type);
    }
    if (ok && !bson_concat(dst, &tmp))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                          "could not read key: document too large");
    bson_destroy(&tmp);
    return ok;
}
