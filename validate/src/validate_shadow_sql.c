/*
 * validate/src/validate_shadow_sql.c - the SQL of a translated find: the
 * selected column (projection), the table, the filter as a bound SQL/JSON
 * path (validate_shadow.c), the sort as MongoDB's order on typed keys
 * (schema_index_expr.c), skip and limit.
 *
 * Every part of the statement is built in growing buffers (mg_buf_t) with
 * a cap; nothing is cut. Values travel as parameters: the path predicate,
 * the projected keys, skip and limit. What stays in the text is the
 * schema and table (mg_schema_quote_ident) and the field names of sort
 * paths (mg_schema_quote_literal, E'' when a backslash is in the name),
 * which must be literal so that the planner can match the expression with
 * an index's.
 */
#include "validate_internal.h"

#include <stdlib.h>
#include <string.h>

#define SQL_MAX   (16 * 1024 * 1024)
#define PARAM_MAX 64

typedef struct {
    mg_buf_t *out;
    mg_error_t *error;
    bool ok;
    char **params;
    int nparams;
} sqlgen_t;

static bool sql_not_translated(sqlgen_t *s, const char *fmt, ...) MG_PRINTF(2, 3);

static bool
sql_not_translated(sqlgen_t *s, const char *fmt, ...)
{
    char why[400];
    va_list ap;

    if (!s->ok)
        return false;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    mg_error_set(s->error, MG_ERROR_DOMAIN_CORE, MG_VALIDATE_ERR_NOT_TRANSLATED,
                 "not translated: %s", why);
    s->ok = false;
    return false;
}

static void
sput(sqlgen_t *s, const char *text)
{
    if (s->ok)
        s->ok = mg_buf_append_str(s->out, text, s->error);
}

/* param_add adds value (copied) as the next parameter. */
static void
param_add(sqlgen_t *s, const char *value)
{
    char *copy;

    if (!s->ok)
        return;
    if (s->nparams == PARAM_MAX) {
        sql_not_translated(s, "more than %d parameters", PARAM_MAX);
        return;
    }
    if ((copy = strdup(value)) == NULL) {
        s->ok = mg_error_set(s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return;
    }
    s->params[s->nparams++] = copy;
}

/* param adds value as the next parameter and writes "$n::cast". */
static void
param(sqlgen_t *s, const char *value, const char *cast)
{
    param_add(s, value);
    if (s->ok)
        s->ok = mg_buf_printf(s->out, s->error, "$%d::%s", s->nparams, cast);
}

/* key_expr writes one part of the typed key of path, or refuses the path. */
static void
key_expr(sqlgen_t *s, const char *path, mg_schema_key_part_t part)
{
    mg_error_t e;

    if (!s->ok)
        return;
    if (!mg_schema_key_expr(path, part, s->out, &e)) {
        if (e.code == MG_ERROR_CODE_INVALID_ARGUMENT)
            sql_not_translated(s, "sort path \"%.200s\": empty or $ component", path);
        else
            s->ok = mg_error_set(s->error, e.domain, e.code, "%s", e.message);
    }
}

static bool
holds_number(const bson_iter_t *v)
{
    return BSON_ITER_HOLDS_INT32(v) || BSON_ITER_HOLDS_INT64(v) || BSON_ITER_HOLDS_DOUBLE(v);
}

/*
 * gen_sort writes " ORDER BY" with the typed key of every sort field, and
 * into guard the condition that a matched document holds a value the key
 * cannot order as MongoDB does (an array, a document, another type).
 */
static bool
gen_sort(sqlgen_t *s, const bson_t *sort, mg_buf_t *guard)
{
    static const mg_schema_key_part_t parts[] = {MG_SCHEMA_KEY_PART_RANK, MG_SCHEMA_KEY_PART_NUM,
                                                 MG_SCHEMA_KEY_PART_TEXT};
    sqlgen_t g = {guard, s->error, true, NULL, 0};
    bson_iter_t it;
    bool first = true;

    if (!bson_iter_init(&it, sort))
        return sql_not_translated(s, "corrupt sort");
    sput(s, " ORDER BY ");
    while (s->ok && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        double d = holds_number(&it) ? bson_iter_as_double(&it) : 0;
        if (d != 1 && d != -1)
            return sql_not_translated(s, "sort on \"%.200s\": only 1 and -1", k);
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
            if (!first)
                sput(s, ", ");
            first = false;
            key_expr(s, k, parts[i]);
            sput(s, d < 0 ? " DESC" : " ASC");
        }
        sput(&g, guard->len > 0 ? " OR " : "");
        key_expr(&g, k, MG_SCHEMA_KEY_PART_RANK);
        if (g.ok)
            g.ok = mg_buf_printf(guard, s->error, " >= %d", MG_SCHEMA_RANK_ARRAY);
        s->ok = s->ok && g.ok;
    }
    if (first)
        return sql_not_translated(s, "empty sort");
    return s->ok;
}

/* projection_keys collects the keys of proj that are on (want=true) or off, _id aside. */
static bool
projection_keys(sqlgen_t *s, const bson_t *proj, bool want, bool with_id, mg_buf_t *array)
{
    bson_iter_t it;
    const char **keys = calloc(bson_count_keys(proj) + 2, sizeof(char *));
    size_t n = 0;

    if (keys == NULL) {
        s->ok = mg_error_set(s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return false;
    }
    if (with_id)
        keys[n++] = "_id";
    bson_iter_init(&it, proj);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") != 0 && bson_iter_as_bool(&it) == want)
            keys[n++] = k;
    }
    s->ok = mg_pg_text_array(keys, n, array, s->error);
    free(keys);
    return s->ok;
}

/* gen_select writes the selected column: doc or its projection. */
static bool
gen_select(sqlgen_t *s, const bson_t *proj)
{
    bson_iter_t it;
    int include = 0, exclude = 0;
    bool id = true;
    mg_buf_t array;

    if (proj == NULL || bson_count_keys(proj) == 0) {
        sput(s, "doc::text");
        return s->ok;
    }
    if (!bson_iter_init(&it, proj))
        return sql_not_translated(s, "corrupt projection");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strchr(k, '.') != NULL || k[0] == '$')
            return sql_not_translated(s, "projection of a dotted path or operator");
        if (!(holds_number(&it) || BSON_ITER_HOLDS_BOOL(&it)))
            return sql_not_translated(s, "projection value for \"%.200s\" is not 0/1/true/false",
                                      k);
        bool on = bson_iter_as_bool(&it);
        if (strcmp(k, "_id") == 0)
            id = on;
        else if (on)
            include++;
        else
            exclude++;
    }
    if (include > 0 && exclude > 0)
        return sql_not_translated(s, "projection mixes inclusion and exclusion");
    mg_buf_init(&array, SQL_MAX);
    if (include > 0 || (exclude == 0 && id)) {
        if (projection_keys(s, proj, true, id, &array)) {
            sput(s, "coalesce((SELECT jsonb_object_agg(key, value) FROM jsonb_each(doc) "
                    "WHERE key = ANY(");
            param(s, array.data, "text[]");
            sput(s, ")), '{}'::jsonb)::text");
        }
    } else if (projection_keys(s, proj, false, !id, &array)) {
        sput(s, "(doc - ");
        param(s, array.data, "text[]");
        sput(s, ")::text");
    }
    mg_buf_cleanup(&array);
    return s->ok;
}

void
mg_validate_sql_cleanup(mg_validate_sql_t *sql)
{
    if (sql == NULL)
        return;
    for (int i = 0; i < sql->nparams; i++)
        free(sql->params[i]);
    free(sql->params);
    free(sql->jsonpath);
    free(sql->sql);
    free(sql->guard_sql);
    memset(sql, 0, sizeof(*sql));
}

/* skip_limit writes OFFSET and LIMIT as parameters. */
static bool
skip_limit(sqlgen_t *s, const mg_validate_find_t *find)
{
    char n[32];

    if (find->skip < 0)
        return sql_not_translated(s, "negative skip");
    if (find->skip > 0) {
        snprintf(n, sizeof(n), "%lld", (long long)find->skip);
        sput(s, " OFFSET ");
        param(s, n, "bigint");
    }
    if (find->limit != 0) {
        /* a negative limit counts as its absolute value (INT64_MIN has none) */
        if (find->limit == INT64_MIN)
            return sql_not_translated(s, "limit out of range");
        snprintf(n, sizeof(n), "%lld", (long long)(find->limit < 0 ? -find->limit : find->limit));
        sput(s, " LIMIT ");
        param(s, n, "bigint");
    }
    return s->ok;
}

/* guard_statement writes the sort guard: SELECT EXISTS (matched rows it cannot order). */
static bool
guard_statement(sqlgen_t *s, const char *from, bool has_filter, const char *cond)
{
    sput(s, "SELECT EXISTS (SELECT 1");
    sput(s, from);
    sput(s, has_filter ? " WHERE doc @? $1::jsonpath AND (" : " WHERE (");
    sput(s, cond);
    sput(s, "))");
    return s->ok;
}

bool
mg_validate_shadow_translate(const mg_validate_find_t *find, const char *schema, const char *table,
                             mg_schema_fidelity_t fidelity, mg_validate_sql_t *out,
                             mg_error_t *error)
{
    mg_buf_t path, sql, guard, from, guard_sql;
    char *params[PARAM_MAX];
    sqlgen_t s = {&sql, error, true, params, 0};
    bool has_filter = find->filter != NULL && bson_count_keys(find->filter) > 0;
    bool ok = false;

    memset(out, 0, sizeof(*out));
    mg_buf_init(&path, SQL_MAX);
    mg_buf_init(&sql, SQL_MAX);
    mg_buf_init(&guard, SQL_MAX);
    mg_buf_init(&from, 4096);
    mg_buf_init(&guard_sql, SQL_MAX);
    if (fidelity != MG_SCHEMA_FIDELITY_RELAXED) {
        sql_not_translated(&s, "the target stores numbers in exact fidelity (as strings)");
        goto done;
    }
    if (has_filter && !mg_validate__jsonpath_filter(find->filter, &path, error))
        goto done;
    if (!mg_buf_append_str(&from, " FROM ", error) ||
        !mg_schema_quote_ident(schema, &from, error) || !mg_buf_append_str(&from, ".", error) ||
        !mg_schema_quote_ident(table, &from, error))
        goto done;
    sput(&s, "SELECT ");
    if (has_filter)
        param_add(&s, path.data); /* $1 first: the guard uses the same parameters' prefix */
    if (!gen_select(&s, find->projection))
        goto done;
    sput(&s, from.data);
    if (has_filter)
        sput(&s, " WHERE doc @? $1::jsonpath");
    if (find->sort != NULL && bson_count_keys(find->sort) > 0) {
        if (!gen_sort(&s, find->sort, &guard))
            goto done;
        out->ordered = true;
    } else if (find->skip != 0 || find->limit != 0) {
        out->count_only = true;
    }
    if (!skip_limit(&s, find))
        goto done;
    if (guard.len > 0) {
        sqlgen_t gs = {&guard_sql, error, true, NULL, 0};
        if (!guard_statement(&gs, from.data, has_filter, guard.data))
            goto done;
        out->guard_sql = guard_sql.data; /* steal */
        guard_sql.data = NULL;
        out->guard_nparams = has_filter ? 1 : 0;
    }
    ok = s.ok;
done:
    if (ok) {
        out->sql = sql.data;
        sql.data = NULL;
        if (has_filter) {
            out->jsonpath = path.data;
            path.data = NULL;
        }
        out->params = malloc((size_t)(s.nparams > 0 ? s.nparams : 1) * sizeof(char *));
        if (out->params == NULL) {
            ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        } else {
            memcpy(out->params, params, (size_t)s.nparams * sizeof(char *));
            out->nparams = s.nparams;
            s.nparams = 0;
        }
    }
    for (int i = 0; i < s.nparams; i++)
        free(params[i]);
    mg_buf_cleanup(&path);
    mg_buf_cleanup(&sql);
    mg_buf_cleanup(&guard);
    mg_buf_cleanup(&from);
    mg_buf_cleanup(&guard_sql);
    if (!ok)
        mg_validate_sql_cleanup(out);
    return ok;
}
