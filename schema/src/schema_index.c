/*
 * schema/src/schema_index.c - MongoDB index specifications -> expression
 * indexes on the JSONB column, or a report of why not and what to do
 * instead (docs/index-translation.md). Also the DDL of a collection table.
 */
#include "schema_internal.h"

#include <stdlib.h>
#include <string.h>

#define SQL_CAP (64 * 1024)

typedef struct {
    char *path;
    int direction;       /* 1 or -1 */
    const char *special; /* "hashed", "text", "2dsphere", ... or NULL */
    bool wildcard;       /* "$**" or "a.$**" */
} key_part_t;

/* set_note replaces *slot with a strdup of text (NULL keeps NULL). */
static bool
set_text(char **slot, const char *text, mg_error_t *error)
{
    free(*slot);
    *slot = NULL;
    if (text == NULL)
        return true;
    *slot = strdup(text);
    if (*slot == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    return true;
}

void
mg_schema_index_plan_cleanup(mg_schema_index_plan_t *plan)
{
    if (plan == NULL)
        return;
    free(plan->mongo_name);
    free(plan->sql);
    free(plan->statement);
    free(plan->schema);
    free(plan->tail);
    free(plan->note);
    free(plan->suggestion);
    free(plan->key_json);
    memset(plan, 0, sizeof(*plan));
}

const char *
mg_schema_index_status_name(mg_schema_index_status_t status)
{
    switch (status) {
    case MG_SCHEMA_INDEX_PRIMARY:
        return "primary_key";
    case MG_SCHEMA_INDEX_TRANSLATED:
        return "translated";
    case MG_SCHEMA_INDEX_CAVEAT:
        return "translated_with_caveat";
    case MG_SCHEMA_INDEX_NOT_TRANSLATED:
        return "not_translated";
    }
    return "unknown";
}

/* path_expr appends "(doc -> 'a' -> 'b')" for the dotted path. */
static bool
path_expr(const char *path, mg_buf_t *out, mg_error_t *error)
{
    const char *p = path;

    if (!mg_buf_append_str(out, "(doc", error))
        return false;
    while (true) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char *seg = strndup(p, n);
        bool ok;

        if (seg == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        ok = mg_buf_append_str(out, " -> ", error) && mg_schema_quote_literal(seg, out, error);
        free(seg);
        if (!ok)
            return false;
        if (dot == NULL)
            break;
        p = dot + 1;
    }
    return mg_buf_append_str(out, ")", error);
}

/* index_name derives a deterministic PostgreSQL index name. */
static void
index_name(const char *table, const char *mongo_name, char out[MG_SCHEMA_IDENT_MAX + 1])
{
    char joined[512];

    snprintf(joined, sizeof(joined), "%s_%s", table, mongo_name);
    if (mg_schema_ident_sanitize(joined, out)) {
        /* any change gets the hash, so "a.b_1" and "a_b_1" stay distinct */
        char base[MG_SCHEMA_IDENT_MAX + 1];
        uint32_t h = 2166136261u;
        snprintf(base, sizeof(base), "%s", out);
        for (const char *p = joined; *p; p++) {
            h ^= (unsigned char)*p;
            h *= 16777619u;
        }
        size_t keep = strlen(base);
        if (keep > MG_SCHEMA_IDENT_MAX - 9)
            keep = MG_SCHEMA_IDENT_MAX - 9;
        /* strip a hash suffix the sanitizer may have added for a cut */
        snprintf(out, MG_SCHEMA_IDENT_MAX + 1, "%.*s_%08x", (int)keep, base, h);
    }
}

static bool
parse_keys(const bson_t *key, key_part_t *parts, size_t *nparts, size_t max, char *why,
           size_t whysz)
{
    bson_iter_t it;
    size_t n = 0;

    if (!bson_iter_init(&it, key))
        return false;
    while (bson_iter_next(&it)) {
        key_part_t *k = &parts[n];
        const char *name = bson_iter_key(&it);

        if (n == max) {
            snprintf(why, whysz, "more than %zu key fields", max);
            return false;
        }
        memset(k, 0, sizeof(*k));
        k->path = (char *)name; /* borrowed from the spec */
        k->direction = 1;
        if (strcmp(name, "$**") == 0 ||
            (strlen(name) > 4 && strcmp(name + strlen(name) - 4, ".$**") == 0))
            k->wildcard = true;
        if (BSON_ITER_HOLDS_NUMBER(&it)) {
            double d = bson_iter_as_double(&it);
            k->direction = d < 0 ? -1 : 1;
        } else if (BSON_ITER_HOLDS_UTF8(&it)) {
            k->special = bson_iter_utf8(&it, NULL);
        } else {
            snprintf(why, whysz, "key \"%s\" has an unsupported value type", name);
            return false;
        }
        n++;
    }
    *nparts = n;
    return n > 0;
}

/*
 * partial_expr translates the supported subset of a partialFilterExpression
 * (equality, $eq, $exists, $gt/$gte/$lt/$lte on numbers, $type for bool,
 * string and number, $and) into a SQL predicate. Returns false with *why set
 * for anything else.
 */
static bool partial_expr(const bson_t *filter, mg_buf_t *out, char *why, size_t whysz,
                         mg_error_t *error);

static bool
value_json(const bson_iter_t *it, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_t tmp;
    bool ok;

    mg_buf_init(&tmp, SQL_CAP);
    ok = mg_schema_value_render(it, MG_SCHEMA_FIDELITY_RELAXED, &tmp, NULL, error) &&
         mg_buf_append_str(&tmp, "", error) &&
         mg_schema_quote_literal(tmp.data ? tmp.data : "null", out, error) &&
         mg_buf_append_str(out, "::jsonb", error);
    mg_buf_cleanup(&tmp);
    return ok;
}

static bool
field_condition(const char *path, bson_iter_t *val, mg_buf_t *out, char *why, size_t whysz,
                mg_error_t *error)
{
    mg_buf_t expr;
    bool ok = false;

    mg_buf_init(&expr, SQL_CAP);
    if (!path_expr(path, &expr, error))
        goto done;
    if (BSON_ITER_HOLDS_DOCUMENT(val)) {
        bson_t sub;
        bson_iter_t op;
        const uint8_t *data;
        uint32_t len;
        bool first = true;

        bson_iter_document(val, &len, &data);
        if (!bson_init_static(&sub, data, len) || !bson_iter_init(&op, &sub))
            goto unsupported_doc;
        if (!bson_iter_next(&op) || bson_iter_key(&op)[0] != '$')
            goto unsupported_doc; /* equality with a whole document */
        bson_iter_init(&op, &sub);
        while (bson_iter_next(&op)) {
            const char *name = bson_iter_key(&op);
            if (!first && !mg_buf_append_str(out, " AND ", error))
                goto done;
            first = false;
            if (strcmp(name, "$exists") == 0) {
                ok = mg_buf_printf(out, error, "%s IS %sNULL", expr.data,
                                   bson_iter_as_bool(&op) ? "NOT " : "");
            } else if (strcmp(name, "$eq") == 0 && !BSON_ITER_HOLDS_DOCUMENT(&op) &&
                       !BSON_ITER_HOLDS_ARRAY(&op)) {
                if (BSON_ITER_HOLDS_NULL(&op))
                    ok = mg_buf_printf(out, error, "(%s IS NULL OR %s = 'null'::jsonb)", expr.data,
                                       expr.data);
                else
                    ok = mg_buf_printf(out, error, "%s = ", expr.data) &&
                         value_json(&op, out, error);
            } else if ((strcmp(name, "$gt") == 0 || strcmp(name, "$gte") == 0 ||
                        strcmp(name, "$lt") == 0 || strcmp(name, "$lte") == 0) &&
                       BSON_ITER_HOLDS_NUMBER(&op)) {
                const char *sqlop = strcmp(name, "$gt") == 0    ? ">"
                                    : strcmp(name, "$gte") == 0 ? ">="
                                    : strcmp(name, "$lt") == 0  ? "<"
                                                                : "<=";
                /* type bracketing: a number bound only matches numbers */
                ok = mg_buf_printf(out, error, "(jsonb_typeof(%s) = 'number' AND %s %s ", expr.data,
                                   expr.data, sqlop) &&
                     value_json(&op, out, error) && mg_buf_append_str(out, ")", error);
            } else if (strcmp(name, "$type") == 0 && BSON_ITER_HOLDS_UTF8(&op)) {
                const char *t = bson_iter_utf8(&op, NULL);
                const char *jt = strcmp(t, "bool") == 0     ? "boolean"
                                 : strcmp(t, "string") == 0 ? "string"
                                 : strcmp(t, "number") == 0 ? "number"
                                                            : NULL;
                if (jt == NULL) {
                    snprintf(why, whysz, "partial filter $type \"%s\" is not translated", t);
                    goto done;
                }
                ok = mg_buf_printf(out, error, "jsonb_typeof(%s) = '%s'", expr.data, jt);
            } else {
                snprintf(why, whysz, "partial filter operator %s on \"%s\" is not translated", name,
                         path);
                goto done;
            }
            if (!ok)
                goto done;
        }
        ok = true;
        goto done;
    unsupported_doc:
        snprintf(why, whysz, "partial filter on \"%s\" compares with a document", path);
        goto done;
    }
    if (BSON_ITER_HOLDS_ARRAY(val) || BSON_ITER_HOLDS_REGEX(val)) {
        snprintf(why, whysz, "partial filter on \"%s\" uses an array or regex value", path);
        goto done;
    }
    if (BSON_ITER_HOLDS_NULL(val))
        ok = mg_buf_printf(out, error, "(%s IS NULL OR %s = 'null'::jsonb)", expr.data, expr.data);
    else
        ok = mg_buf_printf(out, error, "%s = ", expr.data) && value_json(val, out, error);
done:
    mg_buf_cleanup(&expr);
    return ok;
}

static bool
partial_expr(const bson_t *filter, mg_buf_t *out, char *why, size_t whysz, mg_error_t *error)
{
    bson_iter_t it;
    bool first = true;

    if (!bson_iter_init(&it, filter)) {
        snprintf(why, whysz, "partial filter is not a valid document");
        return false;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);

        if (!first && !mg_buf_append_str(out, " AND ", error))
            return false;
        first = false;
        if (strcmp(key, "$and") == 0 && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_t arr;
            bool inner_first = true;
            if (!bson_iter_recurse(&it, &arr) || !mg_buf_append_str(out, "(", error))
                return false;
            while (bson_iter_next(&arr)) {
                bson_t sub;
                const uint8_t *data;
                uint32_t len;
                if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
                    snprintf(why, whysz, "partial filter $and holds a non-document");
                    return false;
                }
                bson_iter_document(&arr, &len, &data);
                if (!bson_init_static(&sub, data, len))
                    return false;
                if (!inner_first && !mg_buf_append_str(out, " AND ", error))
                    return false;
                inner_first = false;
                if (!mg_buf_append_str(out, "(", error) ||
                    !partial_expr(&sub, out, why, whysz, error) ||
                    !mg_buf_append_str(out, ")", error))
                    return false;
            }
            if (!mg_buf_append_str(out, ")", error))
                return false;
            continue;
        }
        if (key[0] == '$') {
            snprintf(why, whysz, "partial filter operator %s is not translated", key);
            return false;
        }
        if (!field_condition(key, &it, out, why, whysz, error))
            return false;
    }
    return true;
}

/* get_subdoc initialises *sub from the document field named key in spec. */
static bool
get_subdoc(const bson_t *spec, const char *key, bson_t *sub)
{
    bson_iter_t it;
    const uint8_t *data;
    uint32_t len;

    if (!bson_iter_init_find(&it, spec, key) || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    bson_iter_document(&it, &len, &data);
    return bson_init_static(sub, data, len);
}

static bool
spec_bool(const bson_t *spec, const char *key)
{
    bson_iter_t it;

    return bson_iter_init_find(&it, spec, key) && bson_iter_as_bool(&it);
}

/* top_field copies the first segment of path. */
static void
top_field(const char *path, char *out, size_t outsz)
{
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);

    snprintf(out, outsz, "%.*s", (int)n, path);
}

/* index_job_t carries one index specification through the translation steps. */
typedef struct {
    const bson_t *spec;
    const char *schema, *table;
    const mg_schema_census_t *census;
    mg_schema_index_plan_t *plan;
    mg_error_t *error;
    bson_t key;
    key_part_t parts[32];
    size_t nparts;
    bool unique, sparse;
    const char *method; /* "hash" or NULL (btree) */
    char why[512];      /* why the index is not translated */
    char caveat[1024];  /* what the built index does differently */
    size_t co;          /* length of caveat */
    mg_buf_t sql;       /* the statement after the index name (set_statement adds the head) */
    mg_buf_t where;     /* the partial or sparse predicate */
} index_job_t;

/* index_step_t is what a translation step decided. */
typedef enum {
    INDEX_STEP_NEXT,           /* go on with the next step */
    INDEX_STEP_BUILT,          /* job->sql is the statement; job->caveat its caveats */
    INDEX_STEP_NOT_TRANSLATED, /* job->why says why */
    INDEX_STEP_DONE,           /* the plan is complete as it stands */
    INDEX_STEP_FAILED,         /* job->error is set */
} index_step_t;

/* step_identity reads the name, the key document and the unique/sparse flags. */
static index_step_t
step_identity(index_job_t *job)
{
    mg_schema_index_plan_t *plan = job->plan;
    bson_iter_t it;

    if (!bson_iter_init_find(&it, job->spec, "name") || !BSON_ITER_HOLDS_UTF8(&it)) {
        mg_error_set(job->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "index specification on \"%s.%s\" has no name", job->schema, job->table);
        return INDEX_STEP_FAILED;
    }
    if (!set_text(&plan->mongo_name, bson_iter_utf8(&it, NULL), job->error))
        return INDEX_STEP_FAILED;
    index_name(job->table, plan->mongo_name, plan->pg_name);
    if (!get_subdoc(job->spec, "key", &job->key)) {
        mg_error_set(job->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "index \"%s\" on \"%s.%s\" has no key document", plan->mongo_name, job->schema,
                     job->table);
        return INDEX_STEP_FAILED;
    }
    {
        char *kj = bson_as_relaxed_extended_json(&job->key, NULL);
        bool set = set_text(&plan->key_json, kj, job->error);
        bson_free(kj);
        if (!set)
            return INDEX_STEP_FAILED;
    }
    job->unique = spec_bool(job->spec, "unique");
    job->sparse = spec_bool(job->spec, "sparse");
    plan->unique = job->unique;
    return INDEX_STEP_NEXT;
}

/* step_keys splits the key document into its parts. */
static index_step_t
step_keys(index_job_t *job)
{
    if (!parse_keys(&job->key, job->parts, &job->nparts, 32, job->why, sizeof(job->why))) {
        if (job->why[0] == '\0')
            snprintf(job->why, sizeof(job->why), "the key document is empty or corrupt");
        return INDEX_STEP_NOT_TRANSLATED;
    }
    return INDEX_STEP_NEXT;
}

/* step_primary: the _id index is the table's primary key. */
static index_step_t
step_primary(index_job_t *job)
{
    if (job->nparts == 1 && strcmp(job->parts[0].path, "_id") == 0 &&
        job->parts[0].special == NULL) {
        job->plan->status = MG_SCHEMA_INDEX_PRIMARY;
        return set_text(&job->plan->note, "served by the primary key on the _id column", job->error)
                   ? INDEX_STEP_DONE
                   : INDEX_STEP_FAILED;
    }
    return INDEX_STEP_NEXT;
}

/* step_kinds: text, geospatial and compound hashed keys are not translated. */
static index_step_t
step_kinds(index_job_t *job)
{
    mg_schema_index_plan_t *plan = job->plan;

    for (size_t i = 0; i < job->nparts; i++) {
        const char *s = job->parts[i].special;
        if (s == NULL)
            continue;
        if (strcmp(s, "text") == 0) {
            bson_iter_t lang;
            const char *l = "english";
            if (bson_iter_init_find(&lang, job->spec, "default_language") &&
                BSON_ITER_HOLDS_UTF8(&lang))
                l = bson_iter_utf8(&lang, NULL);
            snprintf(job->why, sizeof(job->why),
                     "text indexes have MongoDB's own tokenizer, stemming and scoring; $text "
                     "queries are not translated");
            char sugg[512];
            snprintf(sugg, sizeof(sugg),
                     "full-text search in PostgreSQL: CREATE INDEX ON \"%s\".\"%s\" USING gin "
                     "(to_tsvector('%s', <concatenation of the indexed fields as text>))",
                     job->schema, job->table, strcmp(l, "none") == 0 ? "simple" : l);
            if (!set_text(&plan->suggestion, sugg, job->error))
                return INDEX_STEP_FAILED;
            return INDEX_STEP_NOT_TRANSLATED;
        }
        if (strcmp(s, "2dsphere") == 0 || strcmp(s, "2d") == 0 || strcmp(s, "geoHaystack") == 0) {
            char sugg[512];
            snprintf(job->why, sizeof(job->why), "geospatial (%s) indexes need PostGIS", s);
            snprintf(sugg, sizeof(sugg),
                     "install PostGIS and CREATE INDEX ON \"%s\".\"%s\" USING gist "
                     "((ST_GeomFromGeoJSON(doc ->> '%s')))",
                     job->schema, job->table, job->parts[i].path);
            if (!set_text(&plan->suggestion, sugg, job->error))
                return INDEX_STEP_FAILED;
            return INDEX_STEP_NOT_TRANSLATED;
        }
        if (strcmp(s, "hashed") == 0) {
            if (job->nparts != 1) {
                snprintf(job->why, sizeof(job->why),
                         "compound hashed indexes are not translated (PostgreSQL hash "
                         "indexes take one column)");
                if (!set_text(&plan->suggestion,
                              "a btree index on the same fields serves equality lookups",
                              job->error))
                    return INDEX_STEP_FAILED;
                return INDEX_STEP_NOT_TRANSLATED;
            }
            job->method = "hash";
            continue;
        }
        snprintf(job->why, sizeof(job->why), "index type \"%s\" is not translated", s);
        return INDEX_STEP_NOT_TRANSLATED;
    }
    return INDEX_STEP_NEXT;
}

/* step_wildcard: a GIN index over the (sub)document answers containment. */
static index_step_t
step_wildcard(index_job_t *job)
{
    mg_buf_t *sql = &job->sql;
    mg_error_t *error = job->error;

    if (job->nparts == 1 && job->parts[0].wildcard) {
        char sub_path[512];
        /* sql holds the statement after the index name (set_statement) */
        mg_buf_append_str(sql, " ON ", error);
        mg_schema_quote_ident(job->schema, sql, error);
        mg_buf_append_str(sql, ".", error);
        mg_schema_quote_ident(job->table, sql, error);
        if (strcmp(job->parts[0].path, "$**") == 0) {
            if (!mg_buf_append_str(sql, " USING gin (doc jsonb_path_ops)", error))
                return INDEX_STEP_FAILED;
        } else {
            snprintf(sub_path, sizeof(sub_path), "%.*s", (int)(strlen(job->parts[0].path) - 4),
                     job->parts[0].path);
            if (!mg_buf_append_str(sql, " USING gin (", error) ||
                !path_expr(sub_path, sql, error) ||
                !mg_buf_append_str(sql, " jsonb_path_ops)", error))
                return INDEX_STEP_FAILED;
        }
        job->co += (size_t)snprintf(job->caveat + job->co, sizeof(job->caveat) - job->co,
                                    "wildcard index became a GIN (jsonb_path_ops) index: it "
                                    "serves containment (@>) queries, not ranges or sorts");
        bson_iter_t wp;
        if (bson_iter_init_find(&wp, job->spec, "wildcardProjection") &&
            job->co < sizeof(job->caveat))
            job->co +=
                (size_t)snprintf(job->caveat + job->co, sizeof(job->caveat) - job->co,
                                 "; wildcardProjection is ignored (the whole path is indexed)");
        return INDEX_STEP_BUILT;
    }
    for (size_t i = 0; i < job->nparts; i++) {
        if (job->parts[i].wildcard) {
            snprintf(job->why, sizeof(job->why), "compound wildcard indexes are not translated");
            return INDEX_STEP_NOT_TRANSLATED;
        }
    }
    return INDEX_STEP_NEXT;
}

/* step_filter: partial and sparse filters become the WHERE predicate. */
static index_step_t
step_filter(index_job_t *job)
{
    bson_t sub;

    if (get_subdoc(job->spec, "partialFilterExpression", &sub)) {
        mg_error_t inner;
        mg_error_clear(&inner);
        if (!partial_expr(&sub, &job->where, job->why, sizeof(job->why), &inner)) {
            /* a real failure (memory) sets inner; an unsupported filter only sets why */
            if (mg_error_is_set(&inner)) {
                if (job->error != NULL)
                    *job->error = inner;
                return INDEX_STEP_FAILED;
            }
            return INDEX_STEP_NOT_TRANSLATED;
        }
    } else if (job->sparse) {
        for (size_t i = 0; i < job->nparts; i++) {
            if (i > 0 && !mg_buf_append_str(&job->where, " OR ", job->error))
                return INDEX_STEP_FAILED;
            if (!path_expr(job->parts[i].path, &job->where, job->error) ||
                !mg_buf_append_str(&job->where, " IS NOT NULL", job->error))
                return INDEX_STEP_FAILED;
        }
    }
    return INDEX_STEP_NEXT;
}

/* step_collation: PostgreSQL compares jsonb strings by the database collation. */
static index_step_t
step_collation(index_job_t *job)
{
    bson_t sub;

    if (get_subdoc(job->spec, "collation", &sub)) {
        bson_iter_t st;
        int strength = 3;
        if (bson_iter_init_find(&st, &sub, "strength") && BSON_ITER_HOLDS_NUMBER(&st))
            strength = (int)bson_iter_as_int64(&st);
        if (job->unique && strength < 3) {
            char sugg[512];
            snprintf(job->why, sizeof(job->why),
                     "unique index with a case-insensitive collation (strength %d): "
                     "uniqueness would differ",
                     strength);
            snprintf(sugg, sizeof(sugg),
                     "CREATE UNIQUE INDEX ON \"%s\".\"%s\" ((lower(doc ->> '%s')))", job->schema,
                     job->table, job->parts[0].path);
            if (!set_text(&job->plan->suggestion, sugg, job->error))
                return INDEX_STEP_FAILED;
            return INDEX_STEP_NOT_TRANSLATED;
        }
        job->co += (size_t)snprintf(job->caveat + job->co, sizeof(job->caveat) - job->co,
                                    "%scollation ignored: strings compare as in the target "
                                    "database",
                                    job->co ? "; " : "");
    }
    return INDEX_STEP_NEXT;
}

/* step_ttl: the index is built; expiry is not enforced by PostgreSQL. */
static index_step_t
step_ttl(index_job_t *job)
{
    bson_iter_t ttl;

    if (bson_iter_init_find(&ttl, job->spec, "expireAfterSeconds") &&
        BSON_ITER_HOLDS_NUMBER(&ttl) && job->co < sizeof(job->caveat)) {
        char sugg[512];
        job->co += (size_t)snprintf(job->caveat + job->co, sizeof(job->caveat) - job->co,
                                    "%sTTL (expireAfterSeconds=%lld) is not enforced by "
                                    "PostgreSQL",
                                    job->co ? "; " : "", (long long)bson_iter_as_int64(&ttl));
        snprintf(sugg, sizeof(sugg),
                 "schedule DELETE FROM \"%s\".\"%s\" WHERE (doc -> '%s' ->> '$date')"
                 "::timestamptz < now() - interval '%lld seconds' (e.g. with pg_cron)",
                 job->schema, job->table, job->parts[0].path, (long long)bson_iter_as_int64(&ttl));
        if (!set_text(&job->plan->suggestion, sugg, job->error))
            return INDEX_STEP_FAILED;
    }
    return INDEX_STEP_NEXT;
}

/* step_arrays: MongoDB indexes each element (multikey); a btree here indexes the whole value. */
static index_step_t
step_arrays(index_job_t *job)
{
    for (size_t i = 0; job->census != NULL && i < job->nparts; i++) {
        char top[256];
        top_field(job->parts[i].path, top, sizeof(top));
        if (mg_schema_census_field_is_array(job->census, top) && job->co < sizeof(job->caveat)) {
            job->co += (size_t)snprintf(job->caveat + job->co, sizeof(job->caveat) - job->co,
                                        "%sfield \"%s\" holds arrays: MongoDB indexes each "
                                        "element, this index covers the whole array value",
                                        job->co ? "; " : "", top);
            if (job->plan->suggestion == NULL &&
                !set_text(&job->plan->suggestion,
                          "for element lookups add CREATE INDEX ... USING gin ((doc -> "
                          "'<field>') jsonb_path_ops)",
                          job->error))
                return INDEX_STEP_FAILED;
        }
    }
    return INDEX_STEP_NEXT;
}

/* step_statement writes the statement after the index name (set_statement adds the head). */
static index_step_t
step_statement(index_job_t *job)
{
    mg_buf_t *sql = &job->sql;
    mg_error_t *error = job->error;

    if (!mg_buf_append_str(sql, " ON ", error) || !mg_schema_quote_ident(job->schema, sql, error) ||
        !mg_buf_append_str(sql, ".", error) || !mg_schema_quote_ident(job->table, sql, error))
        return INDEX_STEP_FAILED;
    if (job->method != NULL && !mg_buf_printf(sql, error, " USING %s", job->method))
        return INDEX_STEP_FAILED;
    if (!mg_buf_append_str(sql, " (", error))
        return INDEX_STEP_FAILED;
    for (size_t i = 0; i < job->nparts; i++) {
        if (i > 0 && !mg_buf_append_str(sql, ", ", error))
            return INDEX_STEP_FAILED;
        /* unique: MongoDB treats a missing field as null, so both must clash */
        if (job->unique && job->where.len == 0) {
            if (!mg_buf_append_str(sql, "COALESCE(", error) ||
                !path_expr(job->parts[i].path, sql, error) ||
                !mg_buf_append_str(sql, ", 'null'::jsonb)", error))
                return INDEX_STEP_FAILED;
        } else if (!path_expr(job->parts[i].path, sql, error)) {
            return INDEX_STEP_FAILED; /* path_expr's parentheses make it an index expression */
        }
        if (job->parts[i].direction < 0 && job->method == NULL &&
            !mg_buf_append_str(sql, " DESC", error))
            return INDEX_STEP_FAILED;
    }
    if (!mg_buf_append_str(sql, ")", error))
        return INDEX_STEP_FAILED;
    if (job->where.len > 0 && !mg_buf_printf(sql, error, " WHERE %s", job->where.data))
        return INDEX_STEP_FAILED;
    return INDEX_STEP_BUILT;
}

/* The translation, step by step; each step may end it (built, not translated, failed). */
static index_step_t (*const index_steps[])(index_job_t *) = {
    step_identity, step_keys,      step_primary, step_kinds,  step_wildcard,
    step_filter,   step_collation, step_ttl,     step_arrays, step_statement,
};

bool
mg_schema_index_translate(const bson_t *spec, const char *schema, const char *table,
                          const mg_schema_census_t *census, mg_schema_index_plan_t *plan,
                          mg_error_t *error)
{
    index_job_t job;
    index_step_t step = INDEX_STEP_NEXT;
    bool ok = false;

    memset(plan, 0, sizeof(*plan));
    memset(&job, 0, sizeof(job));
    job.spec = spec;
    job.schema = schema;
    job.table = table;
    job.census = census;
    job.plan = plan;
    job.error = error;
    mg_buf_init(&job.sql, SQL_CAP);
    mg_buf_init(&job.where, SQL_CAP);

    for (size_t i = 0; step == INDEX_STEP_NEXT && i < sizeof(index_steps) / sizeof(index_steps[0]);
         i++)
        step = index_steps[i](&job);

    switch (step) {
    case INDEX_STEP_BUILT:
        plan->status = job.co > 0 ? MG_SCHEMA_INDEX_CAVEAT : MG_SCHEMA_INDEX_TRANSLATED;
        ok = set_text(&plan->tail, job.sql.data, error) && set_text(&plan->schema, schema, error) &&
             mg_schema_index_plan_rename(plan, plan->pg_name, error) &&
             set_text(&plan->note, job.co ? job.caveat : NULL, error);
        break;
    case INDEX_STEP_NOT_TRANSLATED:
        plan->status = MG_SCHEMA_INDEX_NOT_TRANSLATED;
        ok = set_text(&plan->note, job.why, error);
        break;
    case INDEX_STEP_DONE:
        ok = true;
        break;
    case INDEX_STEP_NEXT: /* not reached: step_statement ends every run it gets to */
    case INDEX_STEP_FAILED:
        break;
    }
    mg_buf_cleanup(&job.sql);
    mg_buf_cleanup(&job.where);
    if (!ok)
        mg_schema_index_plan_cleanup(plan);
    return ok;
}

/*
 * build_sql writes the DO block that builds an index: the statement, then a
 * comment on the index holding the SHA-256 of the statement; and when a
 * relation of that name exists already (a re-run after the build
 * committed, or a name taken by something else), a check that it is this
 * index, by that comment, else an error naming it. So "built" always means
 * that index, never IF NOT EXISTS over another one.
 */
static bool
build_sql(const mg_schema_index_plan_t *plan, mg_buf_t *out, mg_error_t *error)
{
    uint8_t digest[32];
    char mark[80], tag[32];
    mg_buf_t qname;
    bool ok;
    int n = 0;

    mg_schema__sha256(plan->statement, strlen(plan->statement), digest);
    memcpy(mark, "migrate:", 8);
    for (int i = 0; i < 32; i++) {
        mark[8 + 2 * i] = mg_schema__hex[digest[i] >> 4];
        mark[9 + 2 * i] = mg_schema__hex[digest[i] & 15];
    }
    mark[72] = '\0';
    /* a dollar-quote tag the statement does not contain */
    do
        snprintf(tag, sizeof(tag), "$mg%d$", n++);
    while (strstr(plan->statement, tag) != NULL);
    mg_buf_init(&qname, 4 * MG_SCHEMA_IDENT_MAX + 16);
    ok = mg_schema_quote_ident(plan->schema, &qname, error) &&
         mg_buf_append_str(&qname, ".", error) &&
         mg_schema_quote_ident(plan->pg_name, &qname, error) &&
         mg_buf_printf(out, error, "DO %s BEGIN %s; COMMENT ON INDEX %s IS '%s'; ", tag,
                       plan->statement, qname.data, mark) &&
         mg_buf_append_str(out, "EXCEPTION WHEN duplicate_table THEN IF coalesce(obj_description(",
                           error) &&
         mg_schema_quote_literal(qname.data, out, error) &&
         mg_buf_printf(out, error,
                       "::regclass, 'pg_class'), '') <> '%s' THEN RAISE EXCEPTION "
                       "'could not build index %%: a different relation of that name exists "
                       "(it is not the index migrate planned)', ",
                       mark) &&
         mg_schema_quote_literal(qname.data, out, error) &&
         mg_buf_printf(out, error, " USING ERRCODE = 'duplicate_table'; END IF; END %s", tag);
    mg_buf_cleanup(&qname);
    return ok;
}

bool
mg_schema_index_plan_rename(mg_schema_index_plan_t *plan, const char *pg_name, mg_error_t *error)
{
    mg_buf_t buf;
    bool ok;

    if (plan->tail == NULL || plan->schema == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "index \"%s\" is not built: it has no statement to rename",
                            plan->mongo_name != NULL ? plan->mongo_name : "?");
    if (pg_name != plan->pg_name)
        snprintf(plan->pg_name, sizeof(plan->pg_name), "%s", pg_name);
    mg_buf_init(&buf, SQL_CAP);
    ok = mg_buf_printf(&buf, error, "CREATE %sINDEX ", plan->unique ? "UNIQUE " : "") &&
         mg_schema_quote_ident(plan->pg_name, &buf, error) &&
         mg_buf_append_str(&buf, plan->tail, error) && set_text(&plan->statement, buf.data, error);
    mg_buf_reset(&buf);
    ok = ok && build_sql(plan, &buf, error) && set_text(&plan->sql, buf.data, error);
    mg_buf_cleanup(&buf);
    return ok;
}

bool
mg_schema_table_ddl_named(const mg_schema_naming_entry_t *e, mg_schema_key_type_t key_type,
                          mg_buf_t *out, mg_error_t *error)
{
    return mg_buf_append_str(out, "CREATE TABLE ", error) &&
           mg_schema_quote_ident(e->schema, out, error) && mg_buf_append_str(out, ".", error) &&
           mg_schema_quote_ident(e->table, out, error) &&
           mg_buf_printf(out, error, " (_id %s%s NOT NULL, doc jsonb NOT NULL, CONSTRAINT ",
                         mg_schema_key_type_sql(key_type),
                         key_type == MG_SCHEMA_KEY_CANONICAL ? " COLLATE \"C\"" : "") &&
           mg_schema_quote_ident(e->pkey, out, error) &&
           mg_buf_append_str(out, " PRIMARY KEY (_id))", error);
}

bool
mg_schema_table_ddl(const char *schema, const char *table, mg_schema_key_type_t key_type,
                    mg_buf_t *out, mg_error_t *error)
{
    return mg_buf_append_str(out, "CREATE TABLE ", error) &&
           mg_schema_quote_ident(schema, out, error) && mg_buf_append_str(out, ".", error) &&
           mg_schema_quote_ident(table, out, error) &&
           mg_buf_printf(out, error, " (_id %s%s NOT NULL PRIMARY KEY, doc jsonb NOT NULL)",
                         mg_schema_key_type_sql(key_type),
                         key_type == MG_SCHEMA_KEY_CANONICAL ? " COLLATE \"C\"" : "");
}
