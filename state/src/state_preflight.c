/*
 * state/src/state_preflight.c - what the cutover's preflight (and
 * validation) must know before they let a migration through: the
 * migration's scope (include and exclude patterns), collections not fully
 * copied, indexes not built, invalid documents, and collections no clean
 * full validation covered since their copy finished.
 */
#include "state_internal.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the scope ---- */

void
mg_state_scope_cleanup(mg_state_scope_t *scope)
{
    if (scope == NULL)
        return;
    mg_strlist_clear(&scope->include);
    mg_strlist_clear(&scope->exclude);
    memset(scope, 0, sizeof(*scope));
}

/* list_push appends a copy of item to l. */
static bool
list_push(mg_strlist_t *l, const char *item)
{
    char **grown = realloc(l->items, (l->count + 1) * sizeof(char *));

    if (grown == NULL)
        return false;
    l->items = grown;
    if ((l->items[l->count] = strdup(item)) == NULL)
        return false;
    l->count++;
    return true;
}

bool
mg_state_scope_get(mg_state_t *st, mg_state_scope_t *out, mg_error_t *error)
{
    /* k: known (init recorded its patterns, or had none), t: target schema, i: include,
     * e: exclude */
    PGresult *res = mg_state__query(
        st,
        "WITH m AS (SELECT options, target_schema FROM @.migration WHERE id = 1) "
        "SELECT 't', coalesce(target_schema, '') FROM m UNION ALL SELECT 'k', CASE WHEN options ? "
        "'include' OR (coalesce((options->>'include_count')::int, "
        "0) = 0 AND coalesce((options->>'exclude_count')::int, 0) = 0) THEN 't' ELSE 'f' END "
        "FROM m UNION ALL SELECT 'i', x FROM m, jsonb_array_elements_text(CASE WHEN "
        "jsonb_typeof(options->'include') = 'array' THEN options->'include' ELSE '[]' END) x "
        "UNION ALL SELECT 'e', x FROM m, jsonb_array_elements_text(CASE WHEN "
        "jsonb_typeof(options->'exclude') = 'array' THEN options->'exclude' ELSE '[]' END) x",
        0, NULL, error);
    bool ok = true;

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    for (int r = 0; ok && r < PQntuples(res); r++) {
        const char *kind = PQgetvalue(res, r, 0), *v = PQgetvalue(res, r, 1);
        if (*kind == 'k')
            out->known = strcmp(v, "t") == 0;
        else if (*kind == 't')
            ok = (size_t)snprintf(out->target_schema, sizeof(out->target_schema), "%s", v) <
                 sizeof(out->target_schema);
        else
            ok = list_push(*kind == 'i' ? &out->include : &out->exclude, v);
    }
    PQclear(res);
    if (!ok) {
        mg_state_scope_cleanup(out);
        return mg_state__oom(error);
    }
    return true;
}

static bool
scope_any(const mg_strlist_t *patterns, const char *ns)
{
    for (size_t i = 0; i < patterns->count; i++)
        if (fnmatch(patterns->items[i], ns, 0) == 0)
            return true;
    return false;
}

bool
mg_state_scope_match(const mg_state_scope_t *scope, const char *db, const char *coll)
{
    char ns[1024]; /* MongoDB caps a namespace at 255 bytes */

    if (strcmp(db, "admin") == 0 || strcmp(db, "local") == 0 || strcmp(db, "config") == 0 ||
        strncmp(coll, "system.", 7) == 0)
        return false;
    if ((size_t)snprintf(ns, sizeof(ns), "%s.%s", db, coll) >= sizeof(ns))
        return false;
    return (scope->include.count == 0 || scope_any(&scope->include, ns)) &&
           !scope_any(&scope->exclude, ns);
}

/* ---- what the preflight refuses ---- */

bool
mg_state_collections_incomplete(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error)
{
    static const int texts[3] = {0, 1, -1}, nums[3] = {2, -1, -1};
    char lim[32];
    const char *p[1] = {mg_state__i64(lim, limit)};

    if (!mg_state__read_rows(
            mg_state__query(
                st,
                "SELECT c.db || '.' || c.coll, CASE WHEN c.status NOT IN ('copied', 'following', "
                "'added') "
                "THEN 'status ' || c.status ELSE (SELECT count(*) FROM @.partitions p WHERE p.db "
                "= c.db AND p.coll = c.coll AND p.status <> 'done') || ' partition(s) not "
                "copied' END, count(*) OVER () FROM @.collections c WHERE c.status <> 'failed' "
                "AND (c.status NOT IN ('copied', 'following', 'added') OR EXISTS (SELECT 1 FROM "
                "@.partitions p WHERE p.db = c.db AND p.coll = c.coll AND p.status <> 'done')) "
                "ORDER BY c.db, c.coll LIMIT $1",
                1, p, error),
            texts, nums, out, error))
        return false;
    out->total = out->n > 0 ? out->items[0].n1 : 0;
    return true;
}

bool
mg_state_indexes_unbuilt(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error)
{
    static const int texts[3] = {0, 1, -1}, nums[3] = {2, -1, -1};
    char lim[32];
    const char *p[1] = {mg_state__i64(lim, limit)};

    if (!mg_state__read_rows(mg_state__query(st,
                                             "SELECT db || '.' || coll || ' index ' || "
                                             "mongo_name, build_status || coalesce(': ' || note, "
                                             "''), count(*) OVER () FROM @.indexes WHERE "
                                             "build_status NOT IN ('built', 'skipped') ORDER BY "
                                             "db, coll, mongo_name LIMIT $1",
                                             1, p, error),
                             texts, nums, out, error))
        return false;
    out->total = out->n > 0 ? out->items[0].n1 : 0;
    return true;
}

bool
mg_state_invalid_namespaces(mg_state_t *st, mg_state_rows_t *out, mg_error_t *error)
{
    static const int texts[3] = {0, 1, -1}, nums[3] = {2, -1, -1};

    if (!mg_state__read_rows(mg_state__query(st,
                                             "SELECT db || '.' || coll, count(*) || ', first "
                                             "_id ' || min(doc_id), count(*) FROM "
                                             "@.invalid_docs GROUP BY db, coll ORDER BY db, coll",
                                             0, NULL, error),
                             texts, nums, out, error))
        return false;
    for (size_t k = 0; k < out->n; k++)
        out->total += out->items[k].n1;
    return true;
}

bool
mg_state_collections_unvalidated(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error)
{
    static const int texts[3] = {0, 1, -1}, nums[3] = {2, -1, -1};
    char lim[32];
    const char *p[1] = {mg_state__i64(lim, limit)};

    if (!mg_state__read_rows(
            mg_state__query(
                st,
                "SELECT c.db || '.' || c.coll, coalesce(to_char(coalesce(c.copied_at, "
                "c.updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
                "count(*) OVER () FROM @.collections c WHERE NOT EXISTS (SELECT 1 FROM "
                "@.validation_results v JOIN @.validation_runs r ON r.id = v.run_id WHERE v.db = "
                "c.db AND v.coll = c.coll AND v.status IN ('clean', 'mismatch') AND r.mode = "
                "'full' AND r.finished_at IS NOT NULL AND r.started_at > coalesce(c.copied_at, "
                "c.updated_at) AND (v.status = 'clean' OR EXISTS (SELECT 1 FROM "
                "@.validation_results v2 JOIN @.validation_runs r2 ON r2.id = v2.run_id WHERE "
                "v2.db = c.db AND v2.coll = c.coll AND v2.status = 'clean' AND r2.finished_at IS "
                "NOT NULL AND r2.started_at > r.finished_at))) ORDER BY c.db, c.coll LIMIT $1",
                1, p, error),
            texts, nums, out, error))
        return false;
    out->total = out->n > 0 ? out->items[0].n1 : 0;
    return true;
}
