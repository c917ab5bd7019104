/*
 * validate/src/validate_shadow.c - translation of a MongoDB find (filter,
 * sort, skip, limit, projection) to SQL over the jsonb `doc` column with
 * MongoDB's semantics, or a "not translated: <reason>".
 *
 * The filter becomes one SQL/JSON path predicate, `doc @? '$ ? (...)'`, in
 * lax mode. Lax mode unwraps an array one level when a filter is applied
 * to it, which is exactly MongoDB's rule at the end of a path ("a path
 * matches if the value or any element of it matches"); everywhere else
 * every step is guarded by an explicit .type() test so that no other
 * implicit unwrapping or wrapping happens:
 *
 *   value reached by a.b:  exists(@."a" ? (@.type() == "object" && P(@."b")))
 *      - @."a" an object: its b; an array: the b of each element that is an
 *        object (one level, as MongoDB); anything else: nothing
 *   numeric step a.0:      also (@."a".type() == "array" && P(@."a"[0]))
 *   leaf predicate:        exists(E ? (scalar test of @))    (E or its elements)
 *                          || (E.type() == "array" && whole-array test of E)
 *
 * Every scalar test names its JSON type first (type bracketing), so
 * comparisons never meet an incomparable pair and the predicate stays
 * two-valued: negations ($ne, $nin, $not, $nor) are plain `!`.
 * docs/shadow-reads.md lists the coverage.
 */
#include "validate_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PATH_PARTS 32
#define EXPR_MAX       (1024 * 1024)            /* one path expression; longer is "path too long" */
#define DATE_MAX_MS    INT64_C(253402300800000) /* 10000-01-01T00:00:00Z */

typedef struct {
    mg_buf_t *out;
    mg_error_t *error;
    bool ok;
    int depth;
} gen_t;

typedef enum { OP_EQ, OP_GT, OP_GTE, OP_LT, OP_LTE } cmp_op_t;

static const char *const op_text[] = {"==", ">", ">=", "<", "<="};

/* ---- output helpers ---- */

static bool not_translated(gen_t *g, const char *fmt, ...) MG_PRINTF(2, 3);

static bool
not_translated(gen_t *g, const char *fmt, ...)
{
    char why[400];
    va_list ap;

    if (!g->ok)
        return false;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    mg_error_set(g->error, MG_ERROR_DOMAIN_CORE, MG_VALIDATE_ERR_NOT_TRANSLATED,
                 "not translated: %s", why);
    g->ok = false;
    return false;
}

static void
put(gen_t *g, const char *s)
{
    if (g->ok)
        g->ok = mg_buf_append_str(g->out, s, g->error);
}

static void
putn(gen_t *g, const char *s, size_t n)
{
    if (g->ok)
        g->ok = mg_buf_append(g->out, s, n, g->error);
}

/* put_jstr writes a jsonpath string literal: "..." with JSON escapes. */
static void
put_jstr(gen_t *g, const char *s, size_t n)
{
    put(g, "\"");
    for (size_t i = 0; i < n && g->ok; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            putn(g, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(g, esc);
        } else {
            putn(g, (const char *)&c, 1);
        }
    }
    put(g, "\"");
}

/*
 * Expressions of the path language: "@", "@.\"a\"", "@.\"a\"[3]", each in
 * its own growing buffer (text is data, never NULL once made).
 */
typedef struct {
    mg_buf_t buf;
    const char *text;
} expr_t;

static void
expr_free(expr_t *e)
{
    mg_buf_cleanup(&e->buf);
    e->text = NULL;
}

/* expr_make sets out (initialised here) to base followed by .key or [key]. */
static bool
expr_make(gen_t *g, const char *base, const char *key, bool index, expr_t *out)
{
    gen_t sub = {&out->buf, g->error, true, 0};

    mg_buf_init(&out->buf, EXPR_MAX);
    out->text = NULL;
    put(&sub, base);
    if (index) {
        put(&sub, "[");
        put(&sub, key);
        put(&sub, "]");
    } else {
        put(&sub, ".");
        put_jstr(&sub, key, strlen(key));
    }
    if (!sub.ok) {
        expr_free(out);
        return not_translated(g, "path too long");
    }
    out->text = out->buf.data;
    return true;
}

/* ---- values ---- */

static bool
is_index(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > 9 || strspn(k, "0123456789") != n)
        return false;
    return n == 1 || k[0] != '0';
}

/* number_text renders a finite int32/int64/double as a jsonpath number. */
static bool
number_text(gen_t *g, const bson_iter_t *v, char *out, size_t outsz)
{
    mg_buf_t b;
    mg_error_t e;

    if (BSON_ITER_HOLDS_DOUBLE(v) && !isfinite(bson_iter_double(v)))
        return not_translated(g, "comparison with NaN or Infinity");
    mg_buf_init(&b, outsz - 1);
    if (!mg_schema_value_render(v, MG_SCHEMA_FIDELITY_RELAXED, &b, NULL, &e)) {
        mg_buf_cleanup(&b);
        return not_translated(g, "number too long");
    }
    if (b.len > 0 && b.data[0] == '{') { /* -0.0 is wrapped: it equals 0 */
        snprintf(out, outsz, "0");
    } else {
        snprintf(out, outsz, "%s", b.data);
    }
    mg_buf_cleanup(&b);
    return true;
}

static double
number_value(const bson_iter_t *v)
{
    return bson_iter_as_double(v);
}

static bool
iso_date(int64_t ms, char *out, size_t outsz)
{
    time_t secs;
    struct tm tm;

    if (ms < 0 || ms >= DATE_MAX_MS)
        return false;
    secs = (time_t)(ms / 1000);
    gmtime_r(&secs, &tm);
    snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return true;
}

static bool
holds_number(const bson_iter_t *v)
{
    return BSON_ITER_HOLDS_INT32(v) || BSON_ITER_HOLDS_INT64(v) || BSON_ITER_HOLDS_DOUBLE(v);
}

/* cmp_holds tells whether a op b. */
static bool
cmp_holds(double a, cmp_op_t op, double b)
{
    switch (op) {
    case OP_EQ:
        return a == b;
    case OP_GT:
        return a > b;
    case OP_GTE:
        return a >= b;
    case OP_LT:
        return a < b;
    case OP_LTE:
        return a <= b;
    }
    return false;
}

/* number_cmp is scalar_cmp for a number v (the wrapped doubles compare as numbers too). */
static bool
number_cmp(gen_t *g, const char *x, cmp_op_t op, const bson_iter_t *v)
{
    char num[512];
    double d = number_value(v);

    if (!number_text(g, v, num, sizeof(num)))
        return false;
    put(g, "((");
    put(g, x);
    put(g, ".type() == \"number\" && ");
    put(g, x);
    put(g, " ");
    put(g, op_text[op]);
    put(g, " ");
    put(g, num);
    put(g, ")");
    /* the wrapped doubles compare as numbers in MongoDB */
    if (cmp_holds(0.0, op, d)) {
        put(g, " || (");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        put(g, x);
        put(g, ".\"$numberDouble\" == \"-0.0\")");
    }
    if (op == OP_GT || op == OP_GTE) {
        put(g, " || (");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        put(g, x);
        put(g, ".\"$numberDouble\" == \"Infinity\")");
    }
    if (op == OP_LT || op == OP_LTE) {
        put(g, " || (");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        put(g, x);
        put(g, ".\"$numberDouble\" == \"-Infinity\")");
    }
    put(g, ")");
    return g->ok;
}

/* date_cmp is scalar_cmp for a date v ($date as ISO text, or $numberLong out of range). */
static bool
date_cmp(gen_t *g, const char *x, cmp_op_t op, const bson_iter_t *v)
{
    char num[512], iso[40];

    int64_t ms = bson_iter_date_time(v);
    if (!iso_date(ms, iso, sizeof(iso))) {
        if (op != OP_EQ)
            return not_translated(g, "range bound is a date outside 1970-9999");
        snprintf(num, sizeof(num), "%lld", (long long)ms);
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        put(g, x);
        put(g, ".\"$date\".\"$numberLong\" == ");
        put_jstr(g, num, strlen(num));
        put(g, ")");
        return g->ok;
    }
    put(g, "(");
    put(g, x);
    put(g, ".type() == \"object\" && ((");
    put(g, x);
    put(g, ".\"$date\".type() == \"string\" && ");
    put(g, x);
    put(g, ".\"$date\" ");
    put(g, op_text[op]);
    put(g, " ");
    put_jstr(g, iso, strlen(iso));
    put(g, ")");
    if (op == OP_LT || op == OP_LTE) {
        put(g, " || (");
        put(g, x);
        put(g, ".\"$date\".\"$numberLong\" starts with \"-\")");
    }
    if (op == OP_GT || op == OP_GTE) {
        put(g, " || (");
        put(g, x);
        put(g, ".\"$date\".\"$numberLong\".type() == \"string\" && !(");
        put(g, x);
        put(g, ".\"$date\".\"$numberLong\" starts with \"-\"))");
    }
    put(g, "))");
    return g->ok;
}

/*
 * scalar_cmp writes a test of the single value x against v with op, with
 * MongoDB's type bracketing. Null is handled by the caller.
 */
static bool
scalar_cmp(gen_t *g, const char *x, cmp_op_t op, const bson_iter_t *v)
{
    if (holds_number(v))
        return number_cmp(g, x, op, v);
    switch (bson_iter_type(v)) {
    case BSON_TYPE_UTF8: {
        uint32_t len;
        const char *s = bson_iter_utf8(v, &len);
        if (memchr(s, '\0', len) != NULL || !bson_utf8_validate(s, len, false))
            return not_translated(g, "string with NUL or invalid UTF-8");
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"string\" && ");
        put(g, x);
        put(g, " ");
        put(g, op_text[op]);
        put(g, " ");
        put_jstr(g, s, len);
        put(g, ")");
        return g->ok;
    }
    case BSON_TYPE_BOOL:
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"boolean\" && ");
        put(g, x);
        put(g, " ");
        put(g, op_text[op]);
        put(g, bson_iter_bool(v) ? " true)" : " false)");
        return g->ok;
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(bson_iter_oid(v), hex);
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        put(g, x);
        put(g, ".\"$oid\".type() == \"string\" && ");
        put(g, x);
        put(g, ".\"$oid\" ");
        put(g, op_text[op]);
        put(g, " ");
        put_jstr(g, hex, 24);
        put(g, ")");
        return g->ok;
    }
    case BSON_TYPE_DATE_TIME:
        return date_cmp(g, x, op, v);
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        if (op != OP_EQ)
            return not_translated(g, "range bound is MinKey or MaxKey");
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        put(g, x);
        put(g, BSON_ITER_HOLDS_MAXKEY(v) ? ".\"$maxKey\" == 1)" : ".\"$minKey\" == 1)");
        return g->ok;
    case BSON_TYPE_DOCUMENT:
        return not_translated(g, "comparison with an embedded document (jsonb does not keep "
                                 "field order)");
    case BSON_TYPE_DECIMAL128:
        return not_translated(g, "comparison with a Decimal128");
    default:
        return not_translated(g, "comparison with a value of type %s",
                              mg_schema_bson_type_alias(bson_iter_type(v))
                                  ? mg_schema_bson_type_alias(bson_iter_type(v))
                                  : "unknown");
    }
}

/* array_eq writes a test that x is an array equal to the array v (scalars only). */
static bool
array_eq(gen_t *g, const char *x, const bson_iter_t *v)
{
    bson_iter_t it;
    uint32_t n = 0;

    if (!bson_iter_recurse(v, &it))
        return not_translated(g, "corrupt array");
    put(g, "(");
    put(g, x);
    put(g, ".type() == \"array\"");
    while (bson_iter_next(&it)) {
        char idx[16];
        expr_t elem;
        bool ok;
        if (BSON_ITER_HOLDS_NULL(&it) || BSON_ITER_HOLDS_ARRAY(&it))
            return not_translated(g, "equality with an array holding null or arrays");
        snprintf(idx, sizeof(idx), "%u", n);
        if (!expr_make(g, x, idx, true, &elem))
            return false;
        put(g, " && ");
        ok = scalar_cmp(g, elem.text, OP_EQ, &it);
        expr_free(&elem);
        if (!ok)
            return false;
        n++;
    }
    put(g, " && ");
    put(g, x);
    if (g->ok)
        g->ok = mg_buf_printf(g->out, g->error, ".size() == %u)", n);
    return g->ok;
}

/* ---- regular expressions ---- */

/* Where a regex scan stands (regex_to_are). */
typedef struct {
    bool in_class;
    int class_prev;   /* in brackets: the last plain ASCII character, -1 when none */
    bool class_first; /* in brackets: nothing read yet after [ or [^ */
    int depth;        /* open groups */
    bool atom;        /* a quantifier may follow (a character, class, escape, group) */
    bool quantified;  /* the last item was a quantifier (one lazy ? may follow) */
} regex_scan_t;

/*
 * regex_class_char takes one character at *pp inside brackets. A '-' is a
 * literal first or last; otherwise it must make a range of two plain
 * ASCII characters in order (PCRE and PostgreSQL read the others
 * differently, or refuse them).
 */
static bool
regex_class_char(gen_t *g, const char **pp, regex_scan_t *r, mg_buf_t *out)
{
    const char *p = *pp;
    unsigned char c = (unsigned char)*p;

    if (c == ']' && !r->class_first) {
        r->in_class = false;
        r->atom = true;
        r->quantified = false;
        return mg_buf_append(out, p, 1, g->error) || (g->ok = false);
    }
    if (c == '[' && (p[1] == ':' || p[1] == '=' || p[1] == '.'))
        return not_translated(g, "regex: POSIX bracket expression");
    if (c == '-' && !r->class_first && p[1] != ']') {
        unsigned char hi = (unsigned char)p[1];
        if (r->class_prev < 0 || hi == '\\' || hi == '[' || hi == '\0' || hi >= 0x80 ||
            (unsigned char)r->class_prev > hi)
            return not_translated(g, "regex: character range other than two ASCII characters "
                                     "in order");
        if (!mg_buf_append(out, p, 2, g->error))
            return g->ok = false;
        *pp = p + 1;
        r->class_prev = -1; /* a range does not start another */
        r->class_first = false;
        return true;
    }
    r->class_prev = c < 0x80 ? c : -1;
    r->class_first = false;
    return mg_buf_append(out, p, 1, g->error) || (g->ok = false);
}

/*
 * regex_quantifier takes a quantifier at *pp (* + ? or a bound {m}, {m,},
 * {m,n}): it needs an operand; one lazy ? may follow; a bound above 255
 * (PostgreSQL's limit) or out of order is refused.
 */
static bool
regex_quantifier(gen_t *g, const char **pp, regex_scan_t *r, mg_buf_t *out)
{
    const char *p = *pp, *q = p + 1;
    long lo = 0, hi = -1;

    if (*p == '?' && r->quantified) { /* lazy: the same matches as greedy */
        r->quantified = false;
        return mg_buf_append(out, p, 1, g->error) || (g->ok = false);
    }
    if (!r->atom)
        return not_translated(g, "regex: quantifier without an operand");
    if (*p == '{') {
        for (; *q >= '0' && *q <= '9' && lo <= 255; q++)
            lo = lo * 10 + (*q - '0');
        if (q == p + 1)
            return not_translated(g, "regex: literal {");
        if (*q == ',') {
            q++;
            if (*q >= '0' && *q <= '9')
                for (hi = 0; *q >= '0' && *q <= '9' && hi <= 255; q++)
                    hi = hi * 10 + (*q - '0');
        } else {
            hi = lo;
        }
        if (*q != '}')
            return not_translated(g, "regex: literal {");
        if (lo > 255 || hi > 255 || (hi >= 0 && lo > hi))
            return not_translated(g, "regex: bound above 255 or out of order");
    } else {
        q = p;
    }
    if (!mg_buf_append(out, p, (size_t)(q - p + 1), g->error))
        return g->ok = false;
    *pp = q;
    r->atom = false;
    r->quantified = true;
    /* possessive quantifiers (PCRE only) */
    if (q[1] == '+')
        return not_translated(g, "regex: possessive quantifier");
    return true;
}

/*
 * regex_to_are checks that pattern uses only the subset whose meaning is
 * the same in PCRE and PostgreSQL's regular expressions and that both
 * accept (balanced groups, quantifiers with an operand, bounds up to 255,
 * ranges of two ASCII characters in order), and rewrites an unescaped `$`
 * (PCRE: end, or before a final newline) as (?:\n?$).
 */
static bool
regex_to_are(gen_t *g, const char *pattern, mg_buf_t *out)
{
    regex_scan_t r = {false, -1, false, 0, false, false};
    mg_error_t *e = g->error;

    for (const char *p = pattern; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = true;
        if (c == '\\') {
            char n = p[1];
            if (n == '\0')
                return not_translated(g, "regex ends with a backslash");
            if (strchr("dDwWsS", n) != NULL) {
                if (r.in_class && strchr("DWS", n) != NULL)
                    return not_translated(g, "regex: negated class escape inside brackets");
            } else if (strchr("nrtf.\\*+?()[]{}|^$/-", n) == NULL) {
                return not_translated(g, "regex escape \\%c", n);
            }
            ok = mg_buf_append(out, p, 2, e);
            p++;
            if (r.in_class) {
                r.class_prev = -1;
                r.class_first = false;
            } else {
                r.atom = true;
                r.quantified = false;
            }
        } else if (r.in_class) {
            if (!regex_class_char(g, &p, &r, out))
                return false;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (!regex_quantifier(g, &p, &r, out))
                return false;
        } else if (c == '[') {
            r.in_class = r.class_first = true;
            r.class_prev = -1;
            ok = mg_buf_append(out, p, 1, e);
            if (p[1] == '^') {
                ok = ok && mg_buf_append(out, p + 1, 1, e);
                p++;
            }
            if (p[1] == ']') { /* a leading ] is a literal in both */
                ok = ok && mg_buf_append(out, "\\]", 2, e);
                p++;
                r.class_first = false;
            }
        } else if (c == '(') {
            if (p[1] == '?' && p[2] != ':')
                return not_translated(g, "regex: (? group other than (?:");
            ok = mg_buf_append(out, p, p[1] == '?' ? 3 : 1, e);
            p += p[1] == '?' ? 2 : 0;
            r.depth++;
            r.atom = r.quantified = false;
        } else if (c == ')') {
            if (r.depth == 0)
                return not_translated(g, "regex: unbalanced )");
            r.depth--;
            ok = mg_buf_append(out, p, 1, e);
            r.atom = true;
            r.quantified = false;
        } else {
            /* $ is an anchor (rewritten); ^ and | take no quantifier; UTF-8 bytes are literals */
            ok = c == '$' ? mg_buf_append_str(out, "(?:\\n?$)", e) : mg_buf_append(out, p, 1, e);
            r.atom = c != '$' && c != '^' && c != '|';
            r.quantified = false;
        }
        if (!ok) {
            g->ok = false;
            return false;
        }
    }
    if (r.in_class)
        return not_translated(g, "regex: unterminated [");
    if (r.depth > 0)
        return not_translated(g, "regex: unbalanced (");
    return true;
}

/* regex_test writes the test of x (a string) against pattern/options. */
static bool
regex_test(gen_t *g, const char *x, const char *pattern, const char *options)
{
    mg_buf_t are;
    char flags[8] = "";
    size_t nf = 0;

    for (const char *o = options; *o; o++) {
        if (*o == 'i' || *o == 's') {
            if (strchr(flags, *o) == NULL && nf < 4)
                flags[nf++] = *o;
        } else if (*o == 'm') {
            if (strchr(pattern, '^') != NULL || strchr(pattern, '$') != NULL)
                return not_translated(g, "regex option m with ^ or $");
        } else {
            return not_translated(g, "regex option %c", *o);
        }
    }
    mg_buf_init(&are, 64 * 1024);
    if (!regex_to_are(g, pattern, &are)) {
        mg_buf_cleanup(&are);
        return false;
    }
    put(g, "(");
    put(g, x);
    put(g, ".type() == \"string\" && ");
    put(g, x);
    put(g, " like_regex ");
    put_jstr(g, are.data != NULL ? are.data : "", are.len);
    if (nf > 0) {
        put(g, " flag ");
        put_jstr(g, flags, nf);
    }
    put(g, ")");
    mg_buf_cleanup(&are);
    return g->ok;
}

/* ---- $type ---- */

static const char *const wrapper_keys[] = {"$oid",           "$date",      "$numberDouble",
                                           "$numberDecimal", "$numberInt", "$numberLong",
                                           "$binary",        "$undefined", "$regularExpression",
                                           "$dbPointer",     "$code",      "$symbol",
                                           "$timestamp",     "$minKey",    "$maxKey",
                                           "$stringBase64",  "$literal",   NULL};

static void
has_key(gen_t *g, const char *x, const char *key)
{
    put(g, "exists(");
    put(g, x);
    put(g, ".");
    put_jstr(g, key, strlen(key));
    put(g, ")");
}

/* type_test writes the test that x has BSON type alias (not "array"). */
static bool
type_test(gen_t *g, const char *x, const char *alias)
{
    static const struct {
        const char *alias;
        const char *key;
    } wrapped[] = {{"objectId", "$oid"},
                   {"date", "$date"},
                   {"binData", "$binary"},
                   {"undefined", "$undefined"},
                   {"regex", "$regularExpression"},
                   {"dbPointer", "$dbPointer"},
                   {"symbol", "$symbol"},
                   {"timestamp", "$timestamp"},
                   {"minKey", "$minKey"},
                   {"maxKey", "$maxKey"},
                   {"decimal", "$numberDecimal"}};

    if (strcmp(alias, "string") == 0) {
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"string\" || (");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        has_key(g, x, "$stringBase64");
        put(g, "))");
        return g->ok;
    }
    if (strcmp(alias, "bool") == 0 || strcmp(alias, "null") == 0) {
        put(g, "(");
        put(g, x);
        put(g, strcmp(alias, "bool") == 0 ? ".type() == \"boolean\")" : ".type() == \"null\")");
        return g->ok;
    }
    if (strcmp(alias, "number") == 0) {
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"number\" || (");
        put(g, x);
        put(g, ".type() == \"object\" && (");
        has_key(g, x, "$numberDouble");
        put(g, " || ");
        has_key(g, x, "$numberDecimal");
        put(g, ")))");
        return g->ok;
    }
    if (strcmp(alias, "object") == 0) {
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"object\"");
        for (int i = 0; wrapper_keys[i] != NULL; i++) {
            if (strcmp(wrapper_keys[i], "$literal") == 0)
                continue;
            put(g, " && !");
            has_key(g, x, wrapper_keys[i]);
        }
        put(g, ")");
        return g->ok;
    }
    if (strcmp(alias, "javascript") == 0 || strcmp(alias, "javascriptWithScope") == 0) {
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        has_key(g, x, "$code");
        put(g, strcmp(alias, "javascript") == 0 ? " && !" : " && ");
        has_key(g, x, "$scope");
        put(g, ")");
        return g->ok;
    }
    for (size_t i = 0; i < sizeof(wrapped) / sizeof(wrapped[0]); i++) {
        if (strcmp(alias, wrapped[i].alias) == 0) {
            put(g, "(");
            put(g, x);
            put(g, ".type() == \"object\" && ");
            has_key(g, x, wrapped[i].key);
            put(g, ")");
            return g->ok;
        }
    }
    if (strcmp(alias, "double") == 0 || strcmp(alias, "int") == 0 || strcmp(alias, "long") == 0)
        return not_translated(g, "$type \"%s\": jsonb numbers do not keep the BSON number type",
                              alias);
    return not_translated(g, "$type \"%s\"", alias);
}

/* type_alias_of reads one $type operand (alias string or number) into alias. */
static bool
type_alias_of(gen_t *g, const bson_iter_t *v, const char **alias)
{
    if (BSON_ITER_HOLDS_UTF8(v)) {
        *alias = bson_iter_utf8(v, NULL);
        return true;
    }
    if (holds_number(v)) {
        int64_t n = bson_iter_as_int64(v);
        const char *a = NULL;
        if (n == -1)
            a = "minKey";
        else if (n == 127)
            a = "maxKey";
        else if (n > 0 && n < 20)
            a = mg_schema_bson_type_alias((bson_type_t)n);
        if (a == NULL)
            return not_translated(g, "$type %lld", (long long)n);
        *alias = a;
        return true;
    }
    return not_translated(g, "$type operand is not a string or number");
}

/* ---- path predicates ---- */

/* A leaf test: what to check on the value at the end of a path. */
typedef enum {
    LEAF_CMP,       /* scalar comparison op v (elements too) */
    LEAF_REGEX,     /* regex (elements too) */
    LEAF_ARRAY_EQ,  /* equality with an array v: the value, or an element */
    LEAF_TYPE,      /* $type alias (elements too; "array": the value itself) */
    LEAF_SIZE,      /* $size n (the value itself) */
    LEAF_EXISTS,    /* exists */
    LEAF_ELEMMATCH, /* $elemMatch (the value itself) */
    LEAF_NULL_OR_MISSING,
} leaf_kind_t;

typedef struct {
    leaf_kind_t kind;
    cmp_op_t op;
    const bson_iter_t *value;
    const char *pattern;
    const char *options;
    const char *alias;
    int64_t size;
} leaf_t;

static bool gen_filter_doc(gen_t *g, const bson_t *filter, int depth);
static bool gen_elem_ops(gen_t *g, const char *x, const bson_iter_t *ops);

/* scalar_leaf writes the per-value test of a leaf on x. */
static bool
scalar_leaf(gen_t *g, const char *x, const leaf_t *leaf)
{
    switch (leaf->kind) {
    case LEAF_CMP:
        return scalar_cmp(g, x, leaf->op, leaf->value);
    case LEAF_REGEX:
        return regex_test(g, x, leaf->pattern, leaf->options);
    case LEAF_ARRAY_EQ:
        return array_eq(g, x, leaf->value);
    case LEAF_TYPE:
        return type_test(g, x, leaf->alias);
    default:
        return not_translated(g, "internal: leaf kind");
    }
}

/* leaf writes the test of the value expression e at the end of a path. */
static bool
leaf(gen_t *g, const expr_t *e, const leaf_t *lf)
{
    switch (lf->kind) {
    case LEAF_EXISTS:
        put(g, "exists(");
        put(g, e->text);
        put(g, ")");
        return g->ok;
    case LEAF_SIZE:
        put(g, "(");
        put(g, e->text);
        put(g, ".type() == \"array\" && ");
        put(g, e->text);
        if (g->ok)
            g->ok = mg_buf_printf(g->out, g->error, ".size() == %lld)", (long long)lf->size);
        return g->ok;
    case LEAF_ELEMMATCH:
        put(g, "(");
        put(g, e->text);
        put(g, ".type() == \"array\" && exists(");
        put(g, e->text);
        put(g, " ? (");
        if (!gen_elem_ops(g, "@", lf->value))
            return false;
        put(g, ")))");
        return g->ok;
    case LEAF_TYPE:
        if (strcmp(lf->alias, "array") == 0) {
            put(g, "(");
            put(g, e->text);
            put(g, ".type() == \"array\")");
            return g->ok;
        }
        break;
    case LEAF_ARRAY_EQ:
        put(g, "(exists(");
        put(g, e->text);
        put(g, " ? (");
        if (!array_eq(g, "@", lf->value))
            return false;
        put(g, ")) || ");
        if (!array_eq(g, e->text, lf->value))
            return false;
        put(g, ")");
        return g->ok;
    case LEAF_NULL_OR_MISSING:
        put(g, "(!exists(");
        put(g, e->text);
        put(g, ") || exists(");
        put(g, e->text);
        put(g, " ? (@.type() == \"null\")))");
        return g->ok;
    default:
        break;
    }
    put(g, "exists(");
    put(g, e->text);
    put(g, " ? (");
    if (!scalar_leaf(g, "@", lf))
        return false;
    put(g, "))");
    return g->ok;
}

/* value_at writes the test that the value(s) reached by parts[i..] from e pass lf. */
static bool
value_at(gen_t *g, const expr_t *e, char **parts, int n, int i, const leaf_t *lf)
{
    expr_t sub;
    bool ok;

    if (i == n)
        return leaf(g, e, lf);
    put(g, "(exists(");
    put(g, e->text);
    put(g, " ? (@.type() == \"object\" && ");
    if (!expr_make(g, "@", parts[i], false, &sub))
        return false;
    ok = value_at(g, &sub, parts, n, i + 1, lf);
    expr_free(&sub);
    if (!ok)
        return false;
    put(g, "))");
    if (is_index(parts[i])) {
        put(g, " || (");
        put(g, e->text);
        put(g, ".type() == \"array\" && ");
        if (!expr_make(g, e->text, parts[i], true, &sub))
            return false;
        ok = value_at(g, &sub, parts, n, i + 1, lf);
        expr_free(&sub);
        if (!ok)
            return false;
        put(g, ")");
    }
    put(g, ")");
    return g->ok;
}

/* path_test writes the test of field path (dotted) from the document @ against lf. */
static bool
path_test(gen_t *g, const char *path, const leaf_t *lf)
{
    char *buf = strdup(path);
    char *parts[MAX_PATH_PARTS];
    int n = 0;
    expr_t first;
    bool ok = false;

    if (buf == NULL) {
        g->ok = mg_error_set(g->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return false;
    }
    for (char *s = buf, *dot;; s = dot + 1) {
        dot = strchr(s, '.');
        if (dot != NULL)
            *dot = '\0';
        if (*s == '\0' || *s == '$') {
            not_translated(g, "path \"%.200s\": empty or $ component", path);
            goto done;
        }
        if (n == MAX_PATH_PARTS) {
            not_translated(g, "path \"%.200s\": too deep", path);
            goto done;
        }
        parts[n++] = s;
        if (dot == NULL)
            break;
    }
    if (lf->kind == LEAF_NULL_OR_MISSING && n > 1) {
        not_translated(g, "null equality through a dotted path");
        goto done;
    }
    if (expr_make(g, "@", parts[0], false, &first)) {
        ok = value_at(g, &first, parts, n, 1, lf);
        expr_free(&first);
    }
done:
    free(buf);
    return ok;
}

/* eq_test writes the equality test of path with v ($eq, or a plain value). */
static bool
eq_test(gen_t *g, const char *path, const bson_iter_t *v)
{
    leaf_t lf = {.kind = LEAF_CMP, .op = OP_EQ, .value = v};

    if (BSON_ITER_HOLDS_NULL(v)) {
        lf.kind = LEAF_NULL_OR_MISSING;
    } else if (BSON_ITER_HOLDS_ARRAY(v)) {
        lf.kind = LEAF_ARRAY_EQ;
    } else if (BSON_ITER_HOLDS_REGEX(v)) {
        const char *opts;
        lf.kind = LEAF_REGEX;
        lf.pattern = bson_iter_regex(v, &opts);
        lf.options = opts != NULL ? opts : "";
    }
    return path_test(g, path, &lf);
}

static bool
in_test(gen_t *g, const char *path, const bson_iter_t *v)
{
    bson_iter_t it;
    bool first = true;

    if (!BSON_ITER_HOLDS_ARRAY(v) || !bson_iter_recurse(v, &it))
        return not_translated(g, "$in/$nin needs an array");
    put(g, "(");
    while (bson_iter_next(&it)) {
        if (!first)
            put(g, " || ");
        first = false;
        if (!eq_test(g, path, &it))
            return false;
    }
    if (first)
        put(g, "1 == 0");
    put(g, ")");
    return g->ok;
}

/* regex_of reads $regex (string or regex) and $options of an operator document. */
static bool
regex_of(gen_t *g, const bson_iter_t *ops, const char **pattern, const char **options)
{
    bson_iter_t it;

    *pattern = NULL;
    *options = "";
    if (!bson_iter_recurse(ops, &it))
        return not_translated(g, "corrupt operator document");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "$regex") == 0) {
            if (BSON_ITER_HOLDS_UTF8(&it)) {
                *pattern = bson_iter_utf8(&it, NULL);
            } else if (BSON_ITER_HOLDS_REGEX(&it)) {
                const char *o;
                *pattern = bson_iter_regex(&it, &o);
                if (o != NULL && *o && **options == '\0')
                    *options = o;
            } else {
                return not_translated(g, "$regex is not a string");
            }
        } else if (strcmp(k, "$options") == 0) {
            if (!BSON_ITER_HOLDS_UTF8(&it))
                return not_translated(g, "$options is not a string");
            *options = bson_iter_utf8(&it, NULL);
        }
    }
    return true;
}

/* type_op_test writes {$type: alias or [aliases]} on path. */
static bool
type_op_test(gen_t *g, const char *path, const bson_iter_t *it)
{
    leaf_t lf = {.value = it, .kind = LEAF_TYPE};
    bson_iter_t t;
    bool first = true;

    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        if (!type_alias_of(g, it, &lf.alias))
            return false;
        path_test(g, path, &lf);
        return g->ok;
    }
    bson_iter_recurse(it, &t);
    put(g, "(");
    while (bson_iter_next(&t)) {
        if (!type_alias_of(g, &t, &lf.alias))
            return false;
        if (!first)
            put(g, " || ");
        first = false;
        path_test(g, path, &lf);
    }
    if (first)
        put(g, "1 == 0");
    put(g, ")");
    return g->ok;
}

/* all_test writes {$all: [scalars]} on path. */
static bool
all_test(gen_t *g, const char *path, const bson_iter_t *it)
{
    bson_iter_t a;
    bool first = true;

    if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &a))
        return not_translated(g, "$all needs an array");
    put(g, "(");
    while (bson_iter_next(&a)) {
        if (BSON_ITER_HOLDS_DOCUMENT(&a))
            return not_translated(g, "$all with documents or $elemMatch");
        if (!first)
            put(g, " && ");
        first = false;
        eq_test(g, path, &a);
    }
    if (first)
        put(g, "1 == 0");
    put(g, ")");
    return g->ok;
}

/* ops_test writes the conjunction of the operators of ops on path. */
static bool
ops_test(gen_t *g, const char *path, const bson_iter_t *ops)
{
    bson_iter_t it;
    bool first = true, regex_done = false;

    if (!bson_iter_recurse(ops, &it))
        return not_translated(g, "corrupt operator document");
    put(g, "(");
    while (bson_iter_next(&it)) {
        const char *op = bson_iter_key(&it);
        leaf_t lf = {.value = &it};
        if (strcmp(op, "$options") == 0)
            continue;
        if (!first)
            put(g, " && ");
        first = false;
        if (strcmp(op, "$eq") == 0) {
            eq_test(g, path, &it);
        } else if (strcmp(op, "$ne") == 0) {
            put(g, "!");
            eq_test(g, path, &it);
        } else if (strcmp(op, "$gt") == 0 || strcmp(op, "$gte") == 0 || strcmp(op, "$lt") == 0 ||
                   strcmp(op, "$lte") == 0) {
            lf.kind = LEAF_CMP;
            lf.op =
                op[1] == 'g' ? (op[3] == 'e' ? OP_GTE : OP_GT) : (op[3] == 'e' ? OP_LTE : OP_LT);
            if (BSON_ITER_HOLDS_NULL(&it)) {
                if (lf.op == OP_GTE || lf.op == OP_LTE)
                    eq_test(g, path, &it);
                else
                    put(g, "1 == 0");
            } else if (BSON_ITER_HOLDS_ARRAY(&it) || BSON_ITER_HOLDS_REGEX(&it)) {
                return not_translated(g, "%s with an array or regex", op);
            } else {
                path_test(g, path, &lf);
            }
        } else if (strcmp(op, "$in") == 0) {
            in_test(g, path, &it);
        } else if (strcmp(op, "$nin") == 0) {
            put(g, "!");
            in_test(g, path, &it);
        } else if (strcmp(op, "$exists") == 0) {
            lf.kind = LEAF_EXISTS;
            bool want = bson_iter_as_bool(&it);
            if (!want)
                put(g, "!");
            path_test(g, path, &lf);
        } else if (strcmp(op, "$type") == 0 || strcmp(op, MG_VALIDATE_TYPE_KEY) == 0) {
            if (!type_op_test(g, path, &it))
                return false;
        } else if (strcmp(op, "$size") == 0) {
            if (!holds_number(&it) || number_value(&it) != floor(number_value(&it)) ||
                number_value(&it) < 0)
                return not_translated(g, "$size needs a non-negative whole number");
            lf.kind = LEAF_SIZE;
            lf.size = bson_iter_as_int64(&it);
            path_test(g, path, &lf);
        } else if (strcmp(op, "$regex") == 0) {
            if (regex_done)
                continue;
            regex_done = true;
            lf.kind = LEAF_REGEX;
            if (!regex_of(g, ops, &lf.pattern, &lf.options))
                return false;
            path_test(g, path, &lf);
        } else if (strcmp(op, "$not") == 0) {
            put(g, "!");
            if (BSON_ITER_HOLDS_REGEX(&it)) {
                eq_test(g, path, &it);
            } else if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                ops_test(g, path, &it);
            } else {
                return not_translated(g, "$not needs an operator document or a regex");
            }
        } else if (strcmp(op, "$all") == 0) {
            if (!all_test(g, path, &it))
                return false;
        } else if (strcmp(op, "$elemMatch") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it))
                return not_translated(g, "$elemMatch needs a document");
            lf.kind = LEAF_ELEMMATCH;
            path_test(g, path, &lf);
        } else {
            return not_translated(g, "operator %s", op);
        }
        if (!g->ok)
            return false;
    }
    if (first)
        return not_translated(g, "empty operator document");
    put(g, ")");
    return g->ok;
}

/* is_operator_doc tells whether a field's value is an operator document. */
static bool
is_operator_doc(gen_t *g, const bson_iter_t *v, bool *ops)
{
    bson_iter_t it;
    int with = 0, without = 0;

    *ops = false;
    if (!BSON_ITER_HOLDS_DOCUMENT(v))
        return true;
    if (!bson_iter_recurse(v, &it))
        return not_translated(g, "corrupt document");
    while (bson_iter_next(&it)) {
        if (bson_iter_key(&it)[0] == '$')
            with++;
        else
            without++;
    }
    if (with > 0 && without > 0)
        return not_translated(g, "operators mixed with fields");
    *ops = with > 0;
    return true;
}

/* gen_elem_ops writes the $elemMatch test of one element x (@). */
static bool
gen_elem_ops(gen_t *g, const char *x, const bson_iter_t *spec)
{
    bson_iter_t it;
    bson_t sub;
    uint32_t len;
    const uint8_t *data;
    bool doc_form = false, first = true;

    if (!bson_iter_recurse(spec, &it))
        return not_translated(g, "corrupt $elemMatch");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] != '$' || strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 ||
            strcmp(k, "$nor") == 0)
            doc_form = true;
    }
    if (doc_form) {
        bson_iter_document(spec, &len, &data);
        if (!bson_init_static(&sub, data, len))
            return not_translated(g, "corrupt $elemMatch");
        put(g, "(");
        put(g, x);
        put(g, ".type() == \"object\" && ");
        if (!gen_filter_doc(g, &sub, g->depth + 1))
            return false;
        put(g, ")");
        return g->ok;
    }
    /* operator form: each operator on the element itself */
    bson_iter_recurse(spec, &it);
    put(g, "(");
    while (bson_iter_next(&it)) {
        const char *op = bson_iter_key(&it);
        if (!first)
            put(g, " && ");
        first = false;
        if (strcmp(op, "$eq") == 0 || strcmp(op, "$ne") == 0) {
            if (BSON_ITER_HOLDS_NULL(&it) || BSON_ITER_HOLDS_ARRAY(&it) ||
                BSON_ITER_HOLDS_REGEX(&it))
                return not_translated(g, "$elemMatch %s with null, array or regex", op);
            if (op[1] == 'n')
                put(g, "!");
            scalar_cmp(g, x, OP_EQ, &it);
        } else if (strcmp(op, "$gt") == 0 || strcmp(op, "$gte") == 0 || strcmp(op, "$lt") == 0 ||
                   strcmp(op, "$lte") == 0) {
            cmp_op_t o =
                op[1] == 'g' ? (op[3] == 'e' ? OP_GTE : OP_GT) : (op[3] == 'e' ? OP_LTE : OP_LT);
            if (BSON_ITER_HOLDS_NULL(&it) || BSON_ITER_HOLDS_ARRAY(&it) ||
                BSON_ITER_HOLDS_REGEX(&it))
                return not_translated(g, "$elemMatch %s with null, array or regex", op);
            scalar_cmp(g, x, o, &it);
        } else if (strcmp(op, "$regex") == 0) {
            const char *p, *o;
            if (!regex_of(g, spec, &p, &o))
                return false;
            regex_test(g, x, p, o);
        } else if (strcmp(op, "$options") == 0) {
            put(g, "1 == 1");
        } else if (strcmp(op, "$type") == 0 || strcmp(op, MG_VALIDATE_TYPE_KEY) == 0) {
            const char *alias;
            if (!type_alias_of(g, &it, &alias))
                return false;
            if (strcmp(alias, "array") == 0) {
                put(g, "(");
                put(g, x);
                put(g, ".type() == \"array\")");
            } else {
                type_test(g, x, alias);
            }
        } else if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0) {
            bson_iter_t a;
            bool f2 = true;
            if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &a))
                return not_translated(g, "%s needs an array", op);
            put(g, op[1] == 'n' ? "!(" : "(");
            while (bson_iter_next(&a)) {
                if (BSON_ITER_HOLDS_NULL(&a) || BSON_ITER_HOLDS_ARRAY(&a))
                    return not_translated(g, "$elemMatch %s with null or arrays", op);
                if (!f2)
                    put(g, " || ");
                f2 = false;
                if (BSON_ITER_HOLDS_REGEX(&a)) {
                    const char *o, *p = bson_iter_regex(&a, &o);
                    regex_test(g, x, p, o != NULL ? o : "");
                } else {
                    scalar_cmp(g, x, OP_EQ, &a);
                }
            }
            if (f2)
                put(g, "1 == 0");
            put(g, ")");
        } else {
            return not_translated(g, "$elemMatch operator %s", op);
        }
        if (!g->ok)
            return false;
    }
    if (first)
        put(g, "1 == 0");
    put(g, ")");
    return g->ok;
}

/* gen_logical writes $and / $or / $nor over an array of filters. */
static bool
gen_logical(gen_t *g, const char *op, const bson_iter_t *v, int depth)
{
    bson_iter_t it;
    bool first = true;
    const char *join = strcmp(op, "$and") == 0 ? " && " : " || ";

    if (!BSON_ITER_HOLDS_ARRAY(v) || !bson_iter_recurse(v, &it))
        return not_translated(g, "%s needs an array", op);
    put(g, strcmp(op, "$nor") == 0 ? "!(" : "(");
    while (bson_iter_next(&it)) {
        bson_t sub;
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it))
            return not_translated(g, "%s element is not a document", op);
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&sub, data, len))
            return not_translated(g, "corrupt document");
        if (!first)
            put(g, join);
        first = false;
        if (!gen_filter_doc(g, &sub, depth + 1))
            return false;
    }
    if (first)
        return not_translated(g, "%s with an empty array", op);
    put(g, ")");
    return g->ok;
}

/* gen_filter_doc writes the predicate of a filter document relative to @. */
static bool
gen_filter_doc(gen_t *g, const bson_t *filter, int depth)
{
    bson_iter_t it;
    bool first = true;
    int saved = g->depth;

    if (depth > 20)
        return not_translated(g, "filter nested deeper than 20");
    g->depth = depth;
    if (!bson_iter_init(&it, filter))
        return not_translated(g, "corrupt filter");
    put(g, "(");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool ops;
        if (strcmp(k, "$comment") == 0)
            continue;
        if (!first)
            put(g, " && ");
        first = false;
        if (k[0] == '$') {
            if (strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0) {
                if (!gen_logical(g, k, &it, depth))
                    return false;
            } else {
                return not_translated(g, "operator %s", k);
            }
            continue;
        }
        if (!is_operator_doc(g, &it, &ops))
            return false;
        if (ops ? !ops_test(g, k, &it) : !eq_test(g, k, &it))
            return false;
    }
    if (first)
        put(g, "1 == 1");
    put(g, ")");
    g->depth = saved;
    return g->ok;
}

/* ---- entry point ---- */

bool
mg_validate__jsonpath_filter(const bson_t *filter, mg_buf_t *out, mg_error_t *error)
{
    gen_t g = {out, error, true, 0};

    put(&g, "$ ? ");
    return gen_filter_doc(&g, filter, 0) && g.ok;
}
