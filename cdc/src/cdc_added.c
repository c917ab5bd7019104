/*
 * cdc/src/cdc_added.c - collections created on the source after init
 * (docs/sync.md, "Collections created after init"): a change event of a
 * namespace that is not planned but matches the migration's --include /
 * --exclude patterns creates its table the way init does and records the
 * collection; its changes are applied from that event on. One that arrives
 * with documents the stream did not carry (renamed into the scope, or first
 * seen by an event other than an insert) is recorded failed, to be re-synced.
 */
#include "cdc_follow.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

/* added_names resolves db.coll's schema and table with every recorded collection (as init). */
static bool
added_names(follow_t *f, const char *db, const char *coll, mg_schema_naming_entry_t *out,
            mg_error_t *error)
{
    mg_state_colls_t colls = {0};
    mg_schema_naming_t *naming =
        mg_schema_naming_new(f->scope.target_schema[0] ? f->scope.target_schema : NULL);
    const mg_schema_naming_entry_t *e;
    bool ok = naming != NULL && mg_state_collections_load(f->st, false, &colls, error);

    if (naming == NULL)
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; ok && i < colls.n; i++)
        ok = mg_schema_naming_add(naming, colls.items[i].db, colls.items[i].coll, error);
    ok = ok && mg_schema_naming_add(naming, db, coll, error) &&
         mg_schema_naming_reserve(naming, f->s->state_schema, error) &&
         mg_schema_naming_resolve(naming, error);
    if (ok && (e = mg_schema_naming_find(naming, db, coll)) != NULL)
        *out = *e; /* its db and coll are the naming's: the caller sets its own */
    else if (ok)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                          "could not name collection \"%s.%s\": not in the name plan", db, coll);
    mg_schema_naming_destroy(naming);
    mg_state_colls_cleanup(&colls);
    return ok;
}

/* added_record creates the table and records the collection, in one transaction. */
static bool
added_record(follow_t *f, const mg_schema_naming_entry_t *n, mg_schema_key_type_t key,
             const char *census_json, const char *status, const char *why, mg_error_t *error)
{
    mg_buf_t ddl, ev;
    mg_state_coll_new_t c = {n->db, n->coll, n->schema,  n->table, mg_schema_key_type_name(key),
                             0,     0,       census_json};
    yajl_gen g = yajl_gen_alloc(NULL);
    bool ok;

    mg_buf_init(&ddl, 1 << 20);
    mg_buf_init(&ev, 1 << 16);
    yajl_gen_map_open(g);
    mg_json_kstr(g, "db", n->db);
    mg_json_kstr(g, "collection", n->coll);
    mg_json_kstr(g, "schema", n->schema);
    mg_json_kstr(g, "table", n->table);
    mg_json_kstr(g, "status", status);
    mg_json_kstr(g, "error", why);
    yajl_gen_map_close(g);
    ok = mg_json_take(g, &ev, error) &&
         mg_buf_append_str(&ddl, "CREATE SCHEMA IF NOT EXISTS ", error) &&
         mg_schema_quote_ident(n->schema, &ddl, error) && mg_buf_append_str(&ddl, ";\n", error) &&
         mg_schema_sql_helpers_ddl(n->schema, &ddl, error) &&
         mg_schema_table_ddl_named(n, key, &ddl, error) && mg_state_begin(f->st, error);
    yajl_gen_free(g);
    if (ok) {
        ok = mg_pg_exec(f->pg, ddl.data, error) && mg_state_collection_insert(f->st, &c, error) &&
             mg_state_collection_set_status(f->st, n->db, n->coll, status, why, error) &&
             mg_state_event_add(f->st, "cdc.collection_added", ev.data, error) &&
             mg_state_commit(f->st, error);
        if (!ok)
            mg_state_rollback(f->st);
    }
    if (!ok)
        mg_error_prefix(error,
                        "could not add collection \"%s.%s\" created on the source after init",
                        n->db, n->coll);
    mg_buf_cleanup(&ddl);
    mg_buf_cleanup(&ev);
    return ok;
}

/* added_follow appends the collection to the followed ones; the batches are rebuilt (both empty).
 */
static bool
added_follow(follow_t *f, const mg_schema_naming_entry_t *n, mg_schema_key_type_t key,
             const char *status, int *k, mg_error_t *error)
{
    follow_coll_t *colls = realloc(f->colls, (f->ncolls + 2) * sizeof(*colls));
    mg_cdc_table_t *tables;
    follow_coll_t *c;

    if (colls != NULL)
        f->colls = colls;
    tables = colls != NULL ? realloc(f->tables, (f->ncolls + 2) * sizeof(*tables)) : NULL;
    if (tables == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    f->tables = tables;
    c = &f->colls[f->ncolls];
    memset(c, 0, sizeof(*c));
    c->db = strdup(n->db);
    c->coll = strdup(n->coll);
    c->schema = strdup(n->schema);
    c->table = strdup(n->table);
    c->key = key;
    snprintf(c->status, sizeof(c->status), "%s", status);
    if (c->db == NULL || c->coll == NULL || c->schema == NULL || c->table == NULL) {
        free(c->db);
        free(c->coll);
        free(c->schema);
        free(c->table);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    *k = (int)f->ncolls++;
    /* the tables moved: every entry points into f->colls again, and the batches see them */
    for (size_t i = 0; i < f->ncolls; i++)
        f->tables[i] = (mg_cdc_table_t){f->colls[i].db, f->colls[i].coll, f->colls[i].schema,
                                        f->colls[i].table, f->colls[i].key};
    return mg_cdc__rebuild_batches(f, error);
}

/* added_why says why db.coll must be re-synced, or leaves why empty when it is followed. */
static void
added_why(const mg_cdc_event_t *ev, const char *db, const char *coll, mg_cdc__seen_t seen,
          char *why, size_t whysz)
{
    static const char *const how[] = {
        [MG_CDC__SEEN_EVENT] = "created on the source after init; its first change seen was "
                               "not an insert, so it holds documents the change stream did not "
                               "carry",
        [MG_CDC__SEEN_RENAMED] = "renamed into the migrated namespaces after init, with documents "
                                 "the change stream did not carry",
        [MG_CDC__SEEN_LISTED] = "created on the source after init and before the change stream's "
                                "start (T0), so it holds documents the stream does not carry",
    };

    why[0] = '\0';
    if (seen == MG_CDC__SEEN_EVENT && ev->op == MG_CDC_OP_INSERT)
        return;
    snprintf(why, whysz, "%s; its table was created empty. Re-sync it: migrate sync --resync %s.%s",
             how[seen], db, coll);
}

bool
mg_cdc__maybe_add(follow_t *f, const mg_cdc_event_t *ev, const char *db, const char *coll,
                  mg_cdc__seen_t seen, int *k, mg_error_t *error)
{
    char why[1024];
    const char *status;
    mg_schema_naming_entry_t n;
    mg_schema_census_t *census = NULL;
    mg_buf_t json;
    bool ok;

    *k = -1;
    if (!f->scope_loaded) {
        if (!mg_state_scope_get(f->st, &f->scope, error))
            return false;
        f->scope_loaded = true;
    }
    if (!mg_state_scope_match(&f->scope, db, coll))
        return true;
    if (!f->scope.known) {
        if (!f->scope_warned)
            MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.collection_unplanned",
                         MG_LOG_FIELDS(MG_LOG_STR("db", db), MG_LOG_STR("collection", coll)),
                         "collection %s.%s is not planned and this migration's --include/--exclude "
                         "patterns were not recorded by its init: collections created after init "
                         "are not followed; re-run migrate init to record them",
                         db, coll);
        f->scope_warned = true;
        return true;
    }
    added_why(ev, db, coll, seen, why, sizeof(why));
    status = why[0] != '\0' ? "failed" : "added";
    /* what came before is applied first: the batches are rebuilt with the new table */
    if (!mg_cdc__apply(f, error) || !added_names(f, db, coll, &n, error))
        return false;
    n.db = (char *)db;
    n.coll = (char *)coll;
    mg_buf_init(&json, 1 << 20);
    census = mg_schema_census_new(db, coll);
    ok = census != NULL
             ? mg_schema_census_choose_key(census, NULL, 0, error) &&
                   mg_schema_census_to_json(census, &json, error)
             : mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    mg_schema_key_type_t key = census != NULL ? mg_schema_census_key_type(census) : 0;
    ok = ok && added_record(f, &n, key, json.data, status, why[0] ? why : NULL, error) &&
         added_follow(f, &n, key, status, k, error);
    mg_schema_census_destroy(census);
    mg_buf_cleanup(&json);
    if (!ok)
        return false;
    if (why[0] != '\0')
        MG_LOG_EVENT(MG_LOG_ERROR, "cdc", "cdc.collection_added",
                     MG_LOG_FIELDS(MG_LOG_STR("db", db), MG_LOG_STR("collection", coll),
                                   MG_LOG_STR("table", n.table), MG_LOG_STR("status", status)),
                     "collection %s.%s %s", db, coll, why);
    else
        MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.collection_added",
                     MG_LOG_FIELDS(MG_LOG_STR("db", db), MG_LOG_STR("collection", coll),
                                   MG_LOG_STR("table", n.table), MG_LOG_STR("status", status)),
                     "collection %s.%s created on the source after init: table \"%s\".\"%s\" "
                     "created, followed from its first event",
                     db, coll, n.schema, n.table);
    return true;
}

/* scan_db checks the collections of one watched database (views and other types are not). */
static bool
scan_db(follow_t *f, const char *db, mg_error_t *error)
{
    mongoc_database_t *d = mongoc_client_get_database(f->mongo, db);
    mongoc_cursor_t *cur = mongoc_database_find_collections_with_opts(d, NULL);
    const bson_t *spec;
    bson_error_t be;
    bool ok = true;
    int k;

    while (ok && mongoc_cursor_next(cur, &spec)) {
        bson_iter_t it;
        const char *name = NULL, *type = "collection";
        if (bson_iter_init_find(&it, spec, "name") && BSON_ITER_HOLDS_UTF8(&it))
            name = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, spec, "type") && BSON_ITER_HOLDS_UTF8(&it))
            type = bson_iter_utf8(&it, NULL);
        if (name != NULL && strcmp(type, "collection") == 0 && mg_cdc__find_table(f, db, name) < 0)
            ok = mg_cdc__maybe_add(f, NULL, db, name, MG_CDC__SEEN_LISTED, &k, error);
    }
    if (ok && mongoc_cursor_error(cur, &be))
        ok = mg_error_set_bson(error, &be,
                               "could not list the collections of source database \"%s\"", db);
    mongoc_cursor_destroy(cur);
    mongoc_database_destroy(d);
    return ok;
}

bool
mg_cdc__added_scan(follow_t *f, mg_error_t *error)
{
    size_t ndbs = f->ndbs;
    char **dbs = calloc(ndbs + 1, sizeof(char *));
    bool ok = dbs != NULL;

    /* a copy: adding a collection may rebuild f->dbs */
    for (size_t i = 0; ok && i < ndbs; i++)
        ok = (dbs[i] = strdup(f->dbs[i])) != NULL;
    if (!ok)
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; ok && i < ndbs; i++)
        ok = scan_db(f, dbs[i], error);
    for (size_t i = 0; dbs != NULL && i < ndbs; i++)
        free(dbs[i]);
    free(dbs);
    return ok;
}
