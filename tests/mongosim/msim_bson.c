/*
 * tests/mongosim/msim_bson.c - documents, MongoDB's cross-type value order,
 * type aliases, error codes and small BSON helpers.
 */
#include "msim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    int32_t code;
    const char *name;
} code_names[] = {
    {1, "InternalError"},
    {2, "BadValue"},
    {4, "NoSuchKey"},
    {9, "FailedToParse"},
    {11, "UserNotFound"},
    {13, "Unauthorized"},
    {14, "TypeMismatch"},
    {18, "AuthenticationFailed"},
    {20, "IllegalOperation"},
    {22, "InvalidBSON"},
    {26, "NamespaceNotFound"},
    {27, "IndexNotFound"},
    {40, "ConflictingUpdateOperators"},
    {43, "CursorNotFound"},
    {47, "NoMatchingDocument"},
    {48, "NamespaceExists"},
    {50, "MaxTimeMSExpired"},
    {59, "CommandNotFound"},
    {66, "ImmutableField"},
    {72, "InvalidOptions"},
    {73, "InvalidNamespace"},
    {85, "IndexOptionsConflict"},
    {91, "ShutdownInProgress"},
    {96, "OperationFailed"},
    {112, "WriteConflict"},
    {115, "CommandNotSupported"},
    {117, "ConflictingOperationInProgress"},
    {225, "TransactionTooOld"},
    {292, "CursorInUse"},
    {17124, "Location17124"},
    {17276, "Location17276"},
    {40414, "Location40414"},
    {40571, "Location40571"},
    {51024, "Location51024"},
    {251, "NoSuchTransaction"},
    {256, "TransactionCommitted"},
    {260, "InvalidResumeToken"},
    {263, "OperationNotSupportedInTransaction"},
    {280, "ChangeStreamFatalError"},
    {286, "ChangeStreamHistoryLost"},
    {334, "MechanismUnavailable"},
    {371, "UserWritesBlocked"},
    {10334, "BSONObjectTooLarge"},
    {11000, "DuplicateKey"},
    {11600, "InterruptedAtShutdown"},
    {40324, "Location40324"},
};

const char *
msim_code_name(int32_t code)
{
    for (size_t i = 0; i < sizeof code_names / sizeof code_names[0]; i++)
        if (code_names[i].code == code)
            return code_names[i].name;
    return "UnknownError";
}

bool
msim_fail(mg_error_t *error, int32_t code, const char *fmt, ...)
{
    va_list ap;
    if (error == NULL)
        return false;
    error->domain = MG_ERROR_DOMAIN_MONGO;
    error->code = code;
    error->sqlstate[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(error->message, sizeof error->message, fmt, ap);
    va_end(ap);
    msim_utf8_sanitize(error->message);
    return false;
}

void *
msim_zalloc(size_t size)
{
    size_t rounded = (size + 127) & ~(size_t)127;
    void *p = aligned_alloc(128, rounded ? rounded : 128);
    if (p == NULL)
        abort();
    memset(p, 0, rounded ? rounded : 128);
    return p;
}

void
msim_utf8_sanitize(char *s)
{
    /* messages quote client input: keep them valid UTF-8 for the reply */
    size_t len = strlen(s);
    if (bson_utf8_validate(s, len, false))
        return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            s[i] = '?';
}

/* ------------------------------------------------------------------------ */

msim_doc_t *
msim_doc_new(const uint8_t *data, uint32_t len)
{
    msim_doc_t *d = malloc(sizeof *d + len);
    if (d == NULL)
        return NULL;
    atomic_init(&d->refs, 1);
    d->len = len;
    memcpy(d->data, data, len);
    return d;
}

msim_doc_t *
msim_doc_from_bson(const bson_t *b)
{
    return msim_doc_new(bson_get_data(b), b->len);
}

msim_doc_t *
msim_doc_ref(msim_doc_t *doc)
{
    if (doc != NULL)
        atomic_fetch_add_explicit(&doc->refs, 1, memory_order_relaxed);
    return doc;
}

void
msim_doc_unref(msim_doc_t *doc)
{
    if (doc != NULL && atomic_fetch_sub_explicit(&doc->refs, 1, memory_order_acq_rel) == 1)
        free(doc);
}

bool
msim_doc_id(const msim_doc_t *doc, bson_iter_t *iter)
{
    if (!bson_iter_init_from_data(iter, doc->data, doc->len))
        return false;
    /* _id is stored first; fall back to a search. */
    if (bson_iter_next(iter) && strcmp(bson_iter_key(iter), "_id") == 0)
        return true;
    return bson_iter_init_from_data(iter, doc->data, doc->len) && bson_iter_find(iter, "_id");
}

/* ------------------------------------------------------------------------
 * Order
 * ------------------------------------------------------------------------ */

int
msim_type_rank(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_MINKEY:
        return -1;
    case BSON_TYPE_UNDEFINED:
        return 0;
    case BSON_TYPE_NULL:
    case BSON_TYPE_EOD:
        return 5;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return 10;
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL:
        return 15;
    case BSON_TYPE_DOCUMENT:
        return 20;
    case BSON_TYPE_ARRAY:
        return 25;
    case BSON_TYPE_BINARY:
        return 30;
    case BSON_TYPE_OID:
        return 35;
    case BSON_TYPE_BOOL:
        return 40;
    case BSON_TYPE_DATE_TIME:
        return 45;
    case BSON_TYPE_TIMESTAMP:
        return 47;
    case BSON_TYPE_REGEX:
        return 50;
    case BSON_TYPE_DBPOINTER:
        return 55;
    case BSON_TYPE_CODE:
        return 60;
    case BSON_TYPE_CODEWSCOPE:
        return 65;
    case BSON_TYPE_MAXKEY:
        return 127;
    default:
        return 126;
    }
}

bool
msim_is_number(bson_type_t t)
{
    return t == BSON_TYPE_DOUBLE || t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 ||
           t == BSON_TYPE_DECIMAL128;
}

static long double
dec_to_ld(const bson_iter_t *it)
{
    bson_decimal128_t d;
    char s[BSON_DECIMAL128_STRING];
    bson_iter_decimal128(it, &d);
    bson_decimal128_to_string(&d, s);
    if (strcmp(s, "NaN") == 0)
        return NAN;
    if (strcmp(s, "Infinity") == 0)
        return INFINITY;
    if (strcmp(s, "-Infinity") == 0)
        return -INFINITY;
    return strtold(s, NULL);
}

static long double
num_ld(const bson_iter_t *it)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOUBLE:
        return bson_iter_double(it);
    case BSON_TYPE_INT32:
        return bson_iter_int32(it);
    case BSON_TYPE_INT64:
        return (long double)bson_iter_int64(it);
    case BSON_TYPE_DECIMAL128:
        return dec_to_ld(it);
    default:
        return 0;
    }
}

double
msim_as_double(const bson_iter_t *it)
{
    return (double)num_ld(it);
}

bool
msim_iter_int64(const bson_iter_t *it, int64_t *out)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_INT32:
        *out = bson_iter_int32(it);
        return true;
    case BSON_TYPE_INT64:
        *out = bson_iter_int64(it);
        return true;
    case BSON_TYPE_DOUBLE: {
        double d = bson_iter_double(it);
        if (!isfinite(d) || d < -9.2e18 || d > 9.2e18)
            return false;
        *out = (int64_t)d;
        return true;
    }
    case BSON_TYPE_DECIMAL128: {
        long double d = dec_to_ld(it);
        if (!isfinite(d) || d < -9.2e18L || d > 9.2e18L)
            return false;
        *out = (int64_t)d;
        return true;
    }
    default:
        return false;
    }
}

static int
cmp_num(const bson_iter_t *a, const bson_iter_t *b)
{
    bson_type_t ta = bson_iter_type(a), tb = bson_iter_type(b);
    long double x, y;
    if ((ta == BSON_TYPE_INT32 || ta == BSON_TYPE_INT64) &&
        (tb == BSON_TYPE_INT32 || tb == BSON_TYPE_INT64)) {
        int64_t i = ta == BSON_TYPE_INT32 ? bson_iter_int32(a) : bson_iter_int64(a);
        int64_t j = tb == BSON_TYPE_INT32 ? bson_iter_int32(b) : bson_iter_int64(b);
        return i < j ? -1 : i > j;
    }
    if (ta == BSON_TYPE_DECIMAL128 || tb == BSON_TYPE_DECIMAL128)
        return msim_decimal_cmp(a, b); /* exact, as mongod: no rounding through a binary type */
    x = num_ld(a);
    y = num_ld(b);
    /* NaN sorts below every number and equals NaN. */
    if (isnan(x) || isnan(y))
        return isnan(x) && isnan(y) ? 0 : isnan(x) ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int
cmp_bytes(const char *a, uint32_t la, const char *b, uint32_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return la < lb ? -1 : la > lb;
}

static int cmp_container(const bson_iter_t *a, const bson_iter_t *b);

int
msim_cmp(const bson_iter_t *a, const bson_iter_t *b)
{
    bson_type_t ta = bson_iter_type(a), tb = bson_iter_type(b);
    int ra = msim_type_rank(ta), rb = msim_type_rank(tb);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    switch (ta) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return cmp_num(a, b);
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL: {
        uint32_t la, lb;
        const char *sa = ta == BSON_TYPE_UTF8 ? bson_iter_utf8(a, &la) : bson_iter_symbol(a, &la);
        const char *sb = tb == BSON_TYPE_UTF8 ? bson_iter_utf8(b, &lb) : bson_iter_symbol(b, &lb);
        return cmp_bytes(sa, la, sb, lb);
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        return cmp_container(a, b);
    case BSON_TYPE_BINARY: {
        bson_subtype_t sa, sb;
        uint32_t la, lb;
        const uint8_t *da, *db;
        bson_iter_binary(a, &sa, &la, &da);
        bson_iter_binary(b, &sb, &lb, &db);
        if (la != lb)
            return la < lb ? -1 : 1;
        if (sa != sb)
            return sa < sb ? -1 : 1;
        return cmp_bytes((const char *)da, la, (const char *)db, lb);
    }
    case BSON_TYPE_OID: {
        int c = memcmp(bson_iter_oid(a), bson_iter_oid(b), 12);
        return c < 0 ? -1 : c > 0;
    }
    case BSON_TYPE_BOOL:
        return (int)bson_iter_bool(a) - (int)bson_iter_bool(b);
    case BSON_TYPE_DATE_TIME: {
        int64_t x = bson_iter_date_time(a), y = bson_iter_date_time(b);
        return x < y ? -1 : x > y;
    }
    case BSON_TYPE_TIMESTAMP: {
        uint32_t t1, i1, t2, i2;
        bson_iter_timestamp(a, &t1, &i1);
        bson_iter_timestamp(b, &t2, &i2);
        if (t1 != t2)
            return t1 < t2 ? -1 : 1;
        return i1 < i2 ? -1 : i1 > i2;
    }
    case BSON_TYPE_REGEX: {
        const char *oa, *ob;
        const char *pa = bson_iter_regex(a, &oa), *pb = bson_iter_regex(b, &ob);
        int c = strcmp(pa, pb);
        if (c == 0)
            c = strcmp(oa, ob);
        return c < 0 ? -1 : c > 0;
    }
    case BSON_TYPE_DBPOINTER: {
        uint32_t la, lb;
        const char *ca, *cb;
        const bson_oid_t *oa, *ob;
        int c;
        bson_iter_dbpointer(a, &la, &ca, &oa);
        bson_iter_dbpointer(b, &lb, &cb, &ob);
        if (la != lb)
            return la < lb ? -1 : 1;
        c = cmp_bytes(ca, la, cb, lb);
        if (c != 0)
            return c;
        c = memcmp(oa, ob, 12);
        return c < 0 ? -1 : c > 0;
    }
    case BSON_TYPE_CODE: {
        uint32_t la, lb;
        const char *ca = bson_iter_code(a, &la), *cb = bson_iter_code(b, &lb);
        return cmp_bytes(ca, la, cb, lb);
    }
    case BSON_TYPE_CODEWSCOPE: {
        uint32_t la, lb, sa, sb;
        const uint8_t *da, *db;
        const char *ca = bson_iter_codewscope(a, &la, &sa, &da);
        const char *cb = bson_iter_codewscope(b, &lb, &sb, &db);
        int c = cmp_bytes(ca, la, cb, lb);
        if (c != 0)
            return c;
        return cmp_bytes((const char *)da, sa, (const char *)db, sb);
    }
    default:
        return 0; /* null, undefined, minkey, maxkey */
    }
}

static int
cmp_container(const bson_iter_t *a, const bson_iter_t *b)
{
    bson_iter_t ca, cb;
    if (!bson_iter_recurse(a, &ca) || !bson_iter_recurse(b, &cb))
        return 0;
    for (;;) {
        bool na = bson_iter_next(&ca), nb = bson_iter_next(&cb);
        int c;
        if (!na || !nb)
            return na == nb ? 0 : na ? 1 : -1;
        c = msim_type_rank(bson_iter_type(&ca)) - msim_type_rank(bson_iter_type(&cb));
        if (c != 0)
            return c < 0 ? -1 : 1;
        c = strcmp(bson_iter_key(&ca), bson_iter_key(&cb));
        if (c != 0)
            return c < 0 ? -1 : 1;
        c = msim_cmp(&ca, &cb);
        if (c != 0)
            return c;
    }
}

/* ------------------------------------------------------------------------ */

static const struct {
    bson_type_t type;
    const char *name;
} type_names[] = {
    {BSON_TYPE_DOUBLE, "double"},
    {BSON_TYPE_UTF8, "string"},
    {BSON_TYPE_DOCUMENT, "object"},
    {BSON_TYPE_ARRAY, "array"},
    {BSON_TYPE_BINARY, "binData"},
    {BSON_TYPE_UNDEFINED, "undefined"},
    {BSON_TYPE_OID, "objectId"},
    {BSON_TYPE_BOOL, "bool"},
    {BSON_TYPE_DATE_TIME, "date"},
    {BSON_TYPE_NULL, "null"},
    {BSON_TYPE_REGEX, "regex"},
    {BSON_TYPE_DBPOINTER, "dbPointer"},
    {BSON_TYPE_CODE, "javascript"},
    {BSON_TYPE_SYMBOL, "symbol"},
    {BSON_TYPE_CODEWSCOPE, "javascriptWithScope"},
    {BSON_TYPE_INT32, "int"},
    {BSON_TYPE_TIMESTAMP, "timestamp"},
    {BSON_TYPE_INT64, "long"},
    {BSON_TYPE_DECIMAL128, "decimal"},
    {BSON_TYPE_MINKEY, "minKey"},
    {BSON_TYPE_MAXKEY, "maxKey"},
};

const char *
msim_type_name(bson_type_t t)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (type_names[i].type == t)
            return type_names[i].name;
    return "missing";
}

bool
msim_type_from_name(const char *name, bson_type_t *t, bool *number)
{
    *number = false;
    if (strcmp(name, "number") == 0) {
        *number = true;
        *t = BSON_TYPE_EOD;
        return true;
    }
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (strcmp(type_names[i].name, name) == 0) {
            *t = type_names[i].type;
            return true;
        }
    return false;
}

bool
msim_append_raw(bson_t *dst, const char *key, int keylen, uint8_t type, const uint8_t *value,
                uint32_t vlen)
{
    /* a one-element document {key: value} built byte by byte, then
     * concatenated: libbson's typed appenders would re-encode the value
     * (bson_append_code, _dbpointer and _code_with_scope stop at the first
     * NUL of a string that may hold one; bson_append_regex sorts the
     * options), and mongod stores and returns every value as it was sent */
    uint8_t stackbuf[512], *buf;
    size_t klen = keylen < 0 ? strlen(key) : (size_t)keylen;
    size_t total = 4 + 1 + klen + 1 + (size_t)vlen + 1;
    bson_t one;
    bool ok;
    if (total > INT32_MAX || memchr(key, 0, klen) != NULL)
        return false;
    buf = total <= sizeof stackbuf ? stackbuf : malloc(total);
    if (buf == NULL)
        abort();
    buf[0] = (uint8_t)total;
    buf[1] = (uint8_t)(total >> 8);
    buf[2] = (uint8_t)(total >> 16);
    buf[3] = (uint8_t)(total >> 24);
    buf[4] = type;
    memcpy(buf + 5, key, klen);
    buf[5 + klen] = 0;
    if (vlen > 0)
        memcpy(buf + 6 + klen, value, vlen);
    buf[total - 1] = 0;
    ok = bson_init_static(&one, buf, total) && bson_concat(dst, &one);
    if (buf != stackbuf)
        free(buf);
    return ok;
}

void
msim_append_iter(bson_t *dst, const char *key, int keylen, const bson_iter_t *it)
{
    /* the value's bytes are raw[d1, next_off) of the iterator */
    if (key == NULL) {
        key = bson_iter_key(it);
        keylen = -1;
    }
    msim_append_raw(dst, key, keylen, it->raw[it->type], it->raw + it->d1, it->next_off - it->d1);
}

char *
msim_json_of(const bson_t *doc)
{
    size_t len;
    char *s = bson_as_relaxed_extended_json(doc, &len);
    if (s != NULL && len > 200) {
        s[197] = '.';
        s[198] = '.';
        s[199] = '.';
        s[200] = '\0';
    }
    return s;
}

char *
msim_value_json(const bson_iter_t *it)
{
    bson_t tmp = BSON_INITIALIZER;
    char *s, *r;
    msim_append_iter(&tmp, "v", 1, it);
    s = msim_json_of(&tmp);
    bson_destroy(&tmp);
    if (s == NULL)
        return bson_strdup("?");
    /* strip {"v" : ... } */
    if (strlen(s) > 8 && strncmp(s, "{ \"v\" : ", 8) == 0) {
        size_t l = strlen(s);
        r = bson_strndup(s + 8, l > 10 ? l - 10 : 0);
        bson_free(s);
        return r;
    }
    return s;
}

bool
msim_get_path(const bson_t *doc, const char *path, bson_iter_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return false;
    if (strchr(path, '.') == NULL)
        return bson_iter_find(&it, path) && (*out = it, true);
    return bson_iter_find_descendant(&it, path, out);
}

bool
msim_truthy(const bson_iter_t *it)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_BOOL:
        return bson_iter_bool(it);
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_EOD:
        return false;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return num_ld(it) != 0;
    default:
        return true;
    }
}
