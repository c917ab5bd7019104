/*
 * state/src/state_preflight.c - what the cutover's preflight (and
 * validation) must know before they let a migration through: the
 * migration's scope (include and exclude patterns), collections not fully
 * copied, indexes not built, invalid documents, and collections no clean
 * full validation covered since their copy finished.
 */
#include "state_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- the scope ---- */

void
mg_state_scope_cleanup(mg_state_scope_t *scope)
{
    mg_strlist_t *lists[2];

    if (scope == NULL)
        return;
    lists[0] = &scope->include;
    lists[1] = &scope->exclude;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < lists[k]->count; i++)
            free(lists[k]->items[i]);
        free(lists[k]->items);
    }
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
    /* k: known (init recorded its patterns, or had none), i: include, e: exclude */
    PGresult *res = mg_state__query(
        st,
        "WITH m AS (SELECT options FROM @.migration WHERE id = 1) "
        "SELECT 'k', CASE WHEN options ? 'include' OR (coalesce((options->>'include_count')::int, "
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
                "SELECT c.db || '.' || c.coll, CASE WHEN c.status NOT IN ('copied', 'following') "
                "THEN 'status ' || c.status ELSE (SELECT count(*) FROM @.partitions p WHERE p.db "
                "= c.db AND p.coll = c.coll AND p.status <> 'done') || ' partition(s) not "
                "copied' END, count(*) OVER () FROM @.collections c WHERE c.status <> 'failed' "
                "AND (c.status NOT IN ('copied', 'following') OR EXISTS (SELECT 1 FROM "
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
                "c.db AND v.coll = c.coll AND v.status = 'clean' AND r.mode = 'full' AND "
                "r.finished_at IS NOT NULL AND r.started_at > coalesce(c.copied_at, "
                "c.updated_at)) ORDER BY c.db, c.coll LIMIT $1",
                1, p, error),
            texts, nums, out, error))
        return false;
    out->total = out->n > 0 ? out->items[0].n1 : 0;
    return true;
}
