/*
 * schema/src/schema_index_expr.c - typed keys of a field path: the SQL
 * expressions that put a jsonb value in MongoDB's order (BSON type rank,
 * then a number, then bytes), shared by the query indexes init creates and
 * the queries the shadow-read translator writes, so that the planner sees
 * the same expression on both sides (docs/shadow-reads.md, "Index-served
 * queries").
 *
 * For a path a.b the value is x = (doc -> 'a' -> 'b') and the key is three
 * columns:
 *
 *   rank  MongoDB's type order: MinKey 1, null or missing 2, NaN 3, other
 *         numbers 4, strings 5, ObjectId 8, booleans 9, dates 10, MaxKey 13;
 *         98 when the value or a document on the way is an array (MongoDB
 *         then compares elements: not served by this key), 99 for
 *         documents and every other type
 *   num   numbers by value (exact: jsonb numbers are numeric), -0.0 as 0,
 *         +-Infinity; booleans 0/1; dates as an order-keeping number (the
 *         17 digits of the fixed-width ISO text, milliseconds before 1970,
 *         milliseconds + 10^17 after 9999)
 *   text  strings and ObjectId hex, COLLATE "C" (bytewise, as MongoDB)
 *
 * Every expression is IMMUTABLE and never raises, whatever the document
 * holds: a cast only runs on text that was matched against its exact form.
 */
#include "schema_internal.h"

#include <string.h>
#include <time.h>

/* the offset that puts dates after 9999 above every in-range date key */
#define DATE_AFTER_OFFSET "100000000000000000"

static bool
app(mg_buf_t *out, const char *s, mg_error_t *error)
{
    return mg_buf_append_str(out, s, error);
}

/* check_path refuses an empty path or component and $-prefixed components. */
static bool
check_path(const char *path, mg_error_t *error)
{
    const char *p = path;

    while (true) {
        const char *dot = strchr(p, '.');
        size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || p[0] == '$')
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "field path \"%s\" has an empty or $ component", path);
        if (dot == NULL)
            return true;
        p = dot + 1;
    }
}

/* prefix_expr appends (doc -> 'a' -> ...) for the first n components of path. */
static bool
prefix_expr(const char *path, size_t ncomp, mg_buf_t *out, mg_error_t *error)
{
    const char *p = path;

    if (!app(out, "(doc", error))
        return false;
    for (size_t i = 0; i < ncomp; i++) {
        const char *dot = strchr(p, '.');
        size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
        mg_buf_t seg;
        bool ok;

        mg_buf_init(&seg, n + 1);
        ok = mg_buf_append(&seg, p, n, error) && app(out, " -> ", error) &&
             mg_schema_quote_literal(seg.data != NULL ? seg.data : "", out, error);
        mg_buf_cleanup(&seg);
        if (!ok)
            return false;
        if (dot == NULL)
            break;
        p = dot + 1;
    }
    return app(out, ")", error);
}

static size_t
components(const char *path)
{
    size_t n = 1;

    for (const char *p = path; *p != '\0'; p++)
        n += *p == '.';
    return n;
}

bool
mg_schema_path_expr(const char *path, mg_buf_t *out, mg_error_t *error)
{
    return check_path(path, error) && prefix_expr(path, components(path), out, error);
}

/* rank_expr appends the rank of x (text of the value expression); prefixes of path first. */
static bool
rank_expr(const char *path, const char *x, mg_buf_t *out, mg_error_t *error)
{
    size_t n = components(path);
    bool ok = n == 1 || app(out, "(CASE", error);

    for (size_t i = 1; ok && i < n; i++) {
        ok = app(out, " WHEN jsonb_typeof(", error) && prefix_expr(path, i, out, error) &&
             app(out, ") = 'array' THEN 98", error);
    }
    return ok && (n == 1 || app(out, " ELSE ", error)) &&
           mg_buf_printf(
               out, error,
               "(CASE jsonb_typeof(%1$s) WHEN 'number' THEN 4 WHEN 'string' THEN 5"
               " WHEN 'boolean' THEN 9 WHEN 'array' THEN 98 WHEN 'object' THEN (CASE"
               " WHEN %1$s ? '$oid' THEN 8 WHEN %1$s ? '$date' THEN 10"
               " WHEN %1$s ? '$minKey' THEN 1 WHEN %1$s ? '$maxKey' THEN 13"
               " WHEN (%1$s ->> '$numberDouble') IN ('NaN', '-NaN')"
               " OR (%1$s ->> '$numberDouble') LIKE 'bits:%%'"
               " OR (%1$s ->> '$numberDecimal') IN ('NaN', '-NaN') THEN 3"
               " WHEN (%1$s ->> '$numberDouble') IN ('-0.0', 'Infinity', '-Infinity') THEN 4"
               " WHEN (%1$s ->> '$numberDecimal') IN ('Infinity', '-Infinity')"
               " OR (%1$s ->> '$numberDecimal') ~ '" MG_SCHEMA_DECIMAL_RE "' THEN 4"
               " ELSE 99 END) ELSE 2 END)",
               x) &&
           (n == 1 || app(out, " END)", error));
}

/* num_expr appends the number of x: numbers, booleans, dates. */
static bool
num_expr(const char *x, mg_buf_t *out, mg_error_t *error)
{
    return mg_buf_printf(
        out, error,
        "(CASE jsonb_typeof(%1$s) WHEN 'number' THEN (%1$s)::numeric"
        " WHEN 'boolean' THEN (CASE WHEN (%1$s)::boolean THEN 1 ELSE 0 END)::numeric"
        " WHEN 'object' THEN (CASE"
        " WHEN (%1$s ->> '$date') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
        "[.][0-9]{3}Z$' THEN translate(%1$s ->> '$date', '-:.TZ', '')::numeric"
        " WHEN (%1$s -> '$date' ->> '$numberLong') ~ '^-[0-9]{1,19}$'"
        " THEN (%1$s -> '$date' ->> '$numberLong')::numeric"
        " WHEN (%1$s -> '$date' ->> '$numberLong') ~ '^[0-9]{1,19}$'"
        " THEN (%1$s -> '$date' ->> '$numberLong')::numeric + " DATE_AFTER_OFFSET
        " WHEN (%1$s ->> '$numberDouble') = '-0.0' THEN 0::numeric"
        " WHEN (%1$s ->> '$numberDouble') IN ('Infinity', '-Infinity')"
        " THEN (%1$s ->> '$numberDouble')::numeric"
        " WHEN (%1$s ->> '$numberDecimal') IN ('Infinity', '-Infinity')"
        " OR (%1$s ->> '$numberDecimal') ~ '" MG_SCHEMA_DECIMAL_RE "'"
        " THEN (%1$s ->> '$numberDecimal')::numeric END) END)",
        x);
}

/* text_expr appends the text of x: strings and ObjectId hex, bytewise. */
static bool
text_expr(const char *x, mg_buf_t *out, mg_error_t *error)
{
    return mg_buf_printf(out, error,
                         "((CASE jsonb_typeof(%1$s) WHEN 'string' THEN (%1$s #>> '{}')"
                         " WHEN 'object' THEN (%1$s ->> '$oid') END) COLLATE \"C\")",
                         x);
}

bool
mg_schema_key_expr(const char *path, mg_schema_key_part_t part, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_t x;
    bool ok;

    if (!check_path(path, error))
        return false;
    mg_buf_init(&x, out->limit);
    ok = prefix_expr(path, components(path), &x, error);
    if (ok) {
        switch (part) {
        case MG_SCHEMA_KEY_PART_RANK:
            ok = rank_expr(path, x.data, out, error);
            break;
        case MG_SCHEMA_KEY_PART_NUM:
            ok = num_expr(x.data, out, error);
            break;
        case MG_SCHEMA_KEY_PART_TEXT:
            ok = text_expr(x.data, out, error);
            break;
        }
    }
    mg_buf_cleanup(&x);
    return ok;
}

bool
mg_schema_date_key(int64_t ms, mg_buf_t *out, mg_error_t *error)
{
    time_t secs;
    struct tm tm;

    if (ms < 0)
        return mg_buf_printf(out, error, "%lld", (long long)ms);
    if (ms >= MG_SCHEMA_DATE_MAX_MS) /* above every in-range key; no int64 overflow */
        return mg_buf_printf(out, error, "%llu",
                             (unsigned long long)ms + UINT64_C(100000000000000000));
    secs = (time_t)(ms / 1000);
    gmtime_r(&secs, &tm);
    return mg_buf_printf(out, error, "%04d%02d%02d%02d%02d%02d%03d", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         (int)(ms % 1000));
}
