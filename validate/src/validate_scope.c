/*
 * validate/src/validate_scope.c - is everything in scope migrated? The
 * source's namespaces that the migration's include and exclude rules take
 * in (and that init would plan: ordinary collections, not system.*, views
 * or time-series) compared with the plan in the state schema. A
 * collection created on the source after init and not (yet) followed is
 * named, so validation and the cutover's preflight refuse instead of
 * letting its documents slip through (issue 14, hole 0).
 */
#include "validate_internal.h"

#include <fnmatch.h>
#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>

/* Databases whose collections are never migrated. */
static bool
internal_db(const char *db)
{
    return strcmp(db, "admin") == 0 || strcmp(db, "local") == 0 || strcmp(db, "config") == 0;
}

static bool
matches(const mg_strlist_t *patterns, const char *ns)
{
    for (size_t i = 0; patterns != NULL && i < patterns->count; i++)
        if (fnmatch(patterns->items[i], ns, 0) == 0)
            return true;
    return false;
}

bool
mg_validate_scope_wants(const mg_state_scope_t *scope, const char *db, const char *name,
                        const char *type)
{
    char ns[1024];

    if (internal_db(db) || strncmp(name, "system.", 7) == 0)
        return false;
    if (type != NULL && strcmp(type, "collection") != 0)
        return false; /* views, time-series: init skips them too */
    snprintf(ns, sizeof(ns), "%s.%s", db, name);
    if (scope->include.count > 0 && !matches(&scope->include, ns))
        return false;
    return !matches(&scope->exclude, ns);
}

static int
coll_cmp(const void *a, const void *b)
{
    const mg_state_coll_t *x = a, *y = b;
    int c = strcmp(x->db, y->db);

    return c != 0 ? c : strcmp(x->coll, y->coll);
}

/* planned tells whether db.coll is a collection of the plan (sorted by coll_cmp). */
static bool
planned(const mg_state_colls_t *colls, const char *db, const char *coll)
{
    mg_state_coll_t key = {.db = (char *)db, .coll = (char *)coll};

    return colls->n > 0 &&
           bsearch(&key, colls->items, colls->n, sizeof(*colls->items), coll_cmp) != NULL;
}

/* One pass over the source: what it needs and what it found. */
typedef struct {
    mongoc_client_t *client;
    const mg_state_scope_t *scope;
    const mg_state_colls_t *plan;
    const mg_strlist_t *only; /* restrict to these patterns (NULL: all) */
    mg_strlist_t *missing;
} scope_walk_t;

static bool
push(mg_strlist_t *l, const char *item, mg_error_t *error)
{
    char **grown = realloc(l->items, (l->count + 1) * sizeof(char *));

    if (grown == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    l->items = grown;
    if ((l->items[l->count] = strdup(item)) == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    l->count++;
    return true;
}

/* walk_db adds the collections of db in scope and not planned to w->missing. */
static bool
walk_db(scope_walk_t *w, const char *db, mg_error_t *error)
{
    mongoc_database_t *d = mongoc_client_get_database(w->client, db);
    bson_t opts = BSON_INITIALIZER;
    mongoc_cursor_t *cur;
    const bson_t *spec;
    bson_error_t be;
    bool ok = true;

    BSON_APPEND_BOOL(&opts, "nameOnly", true);
    cur = mongoc_database_find_collections_with_opts(d, &opts);
    while (ok && mongoc_cursor_next(cur, &spec)) {
        bson_iter_t it;
        const char *name = NULL, *type = "collection";
        char ns[1024];
        if (bson_iter_init_find(&it, spec, "name") && BSON_ITER_HOLDS_UTF8(&it))
            name = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, spec, "type") && BSON_ITER_HOLDS_UTF8(&it))
            type = bson_iter_utf8(&it, NULL);
        if (name == NULL || !mg_validate_scope_wants(w->scope, db, name, type) ||
            planned(w->plan, db, name))
            continue;
        snprintf(ns, sizeof(ns), "%s.%s", db, name);
        if (w->only == NULL || w->only->count == 0 || matches(w->only, ns))
            ok = push(w->missing, ns, error);
    }
    if (ok && mongoc_cursor_error(cur, &be))
        ok = mg_error_set_bson(error, &be,
                               "could not list the collections of source database \"%s\"", db);
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    mongoc_database_destroy(d);
    return ok;
}

/* walk lists the source's databases and walks each. */
static bool
walk(scope_walk_t *w, mg_error_t *error)
{
    bson_t *cmd = BCON_NEW("listDatabases", BCON_INT32(1), "nameOnly", BCON_BOOL(true),
                           "authorizedDatabases", BCON_BOOL(true));
    bson_t reply;
    bson_error_t be;
    bson_iter_t it, dbs, d;
    bool ok = mongoc_client_command_simple(w->client, "admin", cmd, NULL, &reply, &be);

    if (!ok)
        ok = mg_error_set_bson(error, &be, "could not list the source's databases");
    else if (!bson_iter_init_find(&it, &reply, "databases") || !BSON_ITER_HOLDS_ARRAY(&it) ||
             !bson_iter_recurse(&it, &dbs))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                          "listDatabases on the source returned no \"databases\" array");
    while (ok && bson_iter_next(&dbs)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&dbs) || !bson_iter_recurse(&dbs, &d) ||
            !bson_iter_find(&d, "name") || !BSON_ITER_HOLDS_UTF8(&d))
            continue;
        if (!internal_db(bson_iter_utf8(&d, NULL)))
            ok = walk_db(w, bson_iter_utf8(&d, NULL), error);
    }
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok;
}

bool
mg_validate_scope_unmigrated(struct _mongoc_client_t *client, mg_state_t *st,
                             const mg_strlist_t *only, mg_strlist_t *missing, bool *known,
                             mg_error_t *error)
{
    mg_state_scope_t scope;
    mg_state_colls_t plan = {0};
    bool ok;

    missing->items = NULL;
    missing->count = 0;
    *known = false;
    if (!mg_state_scope_get(st, &scope, error))
        return false;
    *known = scope.known;
    ok = !scope.known || mg_state_collections_load(st, false, &plan, error);
    if (ok && scope.known) {
        if (plan.n > 1)
            qsort(plan.items, plan.n, sizeof(*plan.items), coll_cmp);
        scope_walk_t w = {client, &scope, &plan, only, missing};
        ok = walk(&w, error);
    }
    mg_state_colls_cleanup(&plan);
    mg_state_scope_cleanup(&scope);
    if (!ok)
        mg_validate_strlist_cleanup(missing);
    return ok;
}

void
mg_validate_strlist_cleanup(mg_strlist_t *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

bool
mg_validate_scope_describe(const mg_strlist_t *missing, char *out, size_t outsz)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < missing->count && n + 1 < outsz; i++) {
        if (i == 8) {
            snprintf(out + n, outsz - n, " and %zu more", missing->count - i);
            break;
        }
        n += (size_t)snprintf(out + n, outsz - n, "%s%s", i > 0 ? ", " : "", missing->items[i]);
        if (n >= outsz)
            n = outsz - 1;
    }
    return missing->count > 0;
}
