/*
 * migrator/src/cli_init.c - `migrate init`: census of the MongoDB source,
 * JSONB tables and the state schema on the target, and the plan on stdout.
 *
 * Steps: options -> source (list namespaces, include/exclude, census per
 * collection) -> names and index plan -> target checks (state schema,
 * unrelated tables) -> DDL in ONE transaction -> plan. --dry-run stops
 * before the transaction and prints the DDL. docs/init.md is the manual.
 */
#include "migrator_internal.h"
#include "mg/version.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#define SQL_CAP      (16 * 1024 * 1024)
#define MAX_PATTERNS 1000

typedef struct {
    char *source;
    char *target;
    mg_strlist_t include;
    mg_strlist_t exclude;
    char *target_schema;
    char *state_schema;
    char *app_role;
    mg_strlist_t key_type;
    int fidelity;
    int census_mode;
    int64_t sample_size;
    bool dry_run;
    bool reset;
    bool yes;
    bool json;
} init_opts_t;

static const char *const fidelity_choices[] = {"relaxed", "exact", NULL};
static const char *const census_choices[] = {"sample", "full", NULL};

static const mg_config_option_t init_options[] = {
    MG_MIGRATOR_OPTION_SOURCE(init_opts_t, source),
    MG_MIGRATOR_OPTION_TARGET(init_opts_t, target),
    {.name = "include",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(init_opts_t, include),
     .metavar = "DB.COLL",
     .help = "namespaces to migrate: db.coll or db.* (default: all)"},
    {.name = "exclude",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(init_opts_t, exclude),
     .metavar = "PATTERN",
     .help = "namespaces to leave out: db.coll or db.*"},
    {.name = "target_schema",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(init_opts_t, target_schema),
     .metavar = "NAME",
     .help = "put every table in this schema (default: one schema per source database)"},
    MG_MIGRATOR_OPTION_STATE_SCHEMA(init_opts_t, state_schema),
    {.name = "app_role",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(init_opts_t, app_role),
     .metavar = "NAME",
     .help = "the application's role (created NOLOGIN when missing): reads and writes the "
             "migrated tables, nothing else (docs/application.md)"},
    {.name = "key_type",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(init_opts_t, key_type),
     .metavar = "[DB.COLL=]TYPE",
     .help = "key column type: canonical (every _id fits), text_objectid, text_string or bigint; "
             "for all collections or DB.COLL / DB.* (default: chosen from the census)"},
    {.name = "type_fidelity",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(init_opts_t, fidelity),
     .default_value = "relaxed",
     .choices = fidelity_choices,
     .metavar = "MODE",
     .help = "how numbers are stored (docs/type-mapping.md)"},
    {.name = "census",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(init_opts_t, census_mode),
     .default_value = "sample",
     .choices = census_choices,
     .metavar = "MODE",
     .help = "examine a sample of each collection, or every document"},
    {.name = "sample_size",
     .type = MG_CONFIG_INT,
     .offset = offsetof(init_opts_t, sample_size),
     .default_value = "1000",
     .min = 1,
     .max = 1000000,
     .metavar = "N",
     .help = "documents sampled per collection"},
    {.name = "dry_run",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(init_opts_t, dry_run),
     .default_value = "false",
     .help = "print the plan and the DDL; change nothing"},
    {.name = "reset",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(init_opts_t, reset),
     .default_value = "false",
     .help = "drop the tables and state of an earlier init and start again (needs --yes)"},
    {.name = "yes",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(init_opts_t, yes),
     .default_value = "false",
     .help = "confirm --reset"},
    MG_MIGRATOR_OPTION_JSON(init_opts_t, json, "print the plan as one JSON object"),
};
#define N_INIT_OPTIONS (sizeof(init_options) / sizeof(init_options[0]))

/* One collection of the plan. */
typedef struct {
    char *db;
    char *coll;
    const mg_schema_naming_entry_t *name; /* borrowed from the naming plan */
    mg_schema_census_t *census;
    mg_schema_index_plan_t *indexes;
    size_t nindexes;
    mg_schema_key_type_t key;
    char *census_json;
    const char *recorded; /* re-run: "exists", "differs: ...", "new" */
    char recorded_buf[256];
} plan_coll_t;

/* A namespace left out, with the reason. */
typedef struct {
    char *ns;
    char *reason;
} skipped_t;

typedef struct {
    const init_opts_t *o;
    mg_mongo_t *src; /* borrowed from the command's resources */
    mg_state_t *st;  /* the same: the target and its state schema */
    PGconn *pg;      /* mg_state_conn(st) */
    char pg_version[32];
    mg_schema_naming_t *naming;
    plan_coll_t *colls;
    size_t ncolls;
    skipped_t *skipped;
    size_t nskipped;
    bool state_exists;
    int state_version;
    bool app_role_exists; /* --app-role names a role the target has already */
    bool plan_matches;    /* re-run: everything planned is recorded the same way */
    char **stale;         /* re-run: recorded collections no longer planned */
    size_t nstale;
    const char *source_from; /* where --source came from ("env MIGRATE_SOURCE") */
} init_ctx_t;

/* ---- small helpers ---- */

static bool
push_skipped(init_ctx_t *ctx, const char *db, const char *coll, const char *reason,
             mg_error_t *error)
{
    skipped_t *grown = realloc(ctx->skipped, (ctx->nskipped + 1) * sizeof(*grown));
    size_t n = strlen(db) + strlen(coll) + 2;

    if (grown == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    ctx->skipped = grown;
    skipped_t *s = &ctx->skipped[ctx->nskipped];
    s->ns = malloc(n);
    s->reason = strdup(reason);
    if (s->ns == NULL || s->reason == NULL) {
        free(s->ns);
        free(s->reason);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    snprintf(s->ns, n, "%s.%s", db, coll);
    ctx->nskipped++;
    return true;
}

static bool
push_coll(init_ctx_t *ctx, const char *db, const char *coll, mg_error_t *error)
{
    plan_coll_t *grown = realloc(ctx->colls, (ctx->ncolls + 1) * sizeof(*grown));

    if (grown == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    ctx->colls = grown;
    plan_coll_t *pc = &ctx->colls[ctx->ncolls];
    memset(pc, 0, sizeof(*pc));
    pc->db = strdup(db);
    pc->coll = strdup(coll);
    if (pc->db == NULL || pc->coll == NULL) {
        free(pc->db);
        free(pc->coll);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    ctx->ncolls++;
    return true;
}

static void
ctx_cleanup(init_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        for (size_t k = 0; k < pc->nindexes; k++)
            mg_schema_index_plan_cleanup(&pc->indexes[k]);
        free(pc->indexes);
        mg_schema_census_destroy(pc->census);
        free(pc->census_json);
        free(pc->db);
        free(pc->coll);
    }
    free(ctx->colls);
    for (size_t i = 0; i < ctx->nskipped; i++) {
        free(ctx->skipped[i].ns);
        free(ctx->skipped[i].reason);
    }
    free(ctx->skipped);
    for (size_t i = 0; i < ctx->nstale; i++)
        free(ctx->stale[i]);
    free(ctx->stale);
    mg_schema_naming_destroy(ctx->naming);
}

/* pattern_ok checks that a pattern has the shape DB.COLL or DB.*. */
static bool
check_patterns(const mg_strlist_t *list, const char *what, mg_error_t *error)
{
    if (list->count > MAX_PATTERNS)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_LIMIT,
                            "more than %d %s patterns", MAX_PATTERNS, what);
    for (size_t i = 0; i < list->count; i++) {
        const char *p = list->items[i];
        const char *dot = strchr(p, '.');
        if (dot == NULL || dot == p || dot[1] == '\0')
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "invalid %s pattern \"%s\": expected DB.COLLECTION or DB.*", what,
                                p);
    }
    return true;
}

static bool
matches_any(const mg_strlist_t *list, const char *ns, bool *hits)
{
    bool any = false;

    for (size_t i = 0; i < list->count; i++) {
        if (fnmatch(list->items[i], ns, 0) == 0) {
            any = true;
            if (hits != NULL)
                hits[i] = true;
        }
    }
    return any;
}

/* ---- source: namespaces ---- */

static bool
is_internal_db(const char *db)
{
    return strcmp(db, "admin") == 0 || strcmp(db, "local") == 0 || strcmp(db, "config") == 0;
}

/* list_collections adds the collections of db to the plan or to skipped. */
static bool
list_collections(init_ctx_t *ctx, const char *db, bool *include_hits, mg_error_t *error)
{
    mongoc_database_t *d = mongoc_client_get_database(ctx->src->client, db);
    mongoc_cursor_t *cur = mongoc_database_find_collections_with_opts(d, NULL);
    const bson_t *spec;
    bson_error_t be;
    bool ok = true;

    while (ok && mongoc_cursor_next(cur, &spec)) {
        bson_iter_t it;
        const char *name = NULL, *type = "collection";
        char ns[1024];

        if (bson_iter_init_find(&it, spec, "name") && BSON_ITER_HOLDS_UTF8(&it))
            name = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, spec, "type") && BSON_ITER_HOLDS_UTF8(&it))
            type = bson_iter_utf8(&it, NULL);
        if (name == NULL)
            continue;
        snprintf(ns, sizeof(ns), "%s.%s", db, name);
        if (ctx->o->include.count > 0 && !matches_any(&ctx->o->include, ns, include_hits))
            continue;
        if (matches_any(&ctx->o->exclude, ns, NULL)) {
            ok = push_skipped(ctx, db, name, "excluded by --exclude", error);
            continue;
        }
        if (strncmp(name, "system.", 7) == 0) {
            ok = push_skipped(ctx, db, name, "system collection", error);
        } else if (strcmp(type, "view") == 0) {
            ok =
                push_skipped(ctx, db, name,
                             "view: not copied (recreate it as a SQL view over the tables)", error);
        } else if (strcmp(type, "timeseries") == 0) {
            ok = push_skipped(ctx, db, name, "time-series collection: not supported", error);
        } else if (strcmp(type, "collection") != 0) {
            char why[128];
            snprintf(why, sizeof(why), "collection type \"%s\": not supported", type);
            ok = push_skipped(ctx, db, name, why, error);
        } else {
            ok = push_coll(ctx, db, name, error);
        }
    }
    if (ok && mongoc_cursor_error(cur, &be))
        ok = mg_error_set_bson(error, &be,
                               "could not list the collections of source database "
                               "\"%s\"",
                               db);
    mongoc_cursor_destroy(cur);
    mongoc_database_destroy(d);
    return ok;
}

static bool
list_namespaces(init_ctx_t *ctx, mg_error_t *error)
{
    bson_t *cmd = BCON_NEW("listDatabases", BCON_INT32(1), "nameOnly", BCON_BOOL(true),
                           "authorizedDatabases", BCON_BOOL(true));
    bson_t reply;
    bson_iter_t it, dbs;
    bool *hits = calloc(ctx->o->include.count + 1, sizeof(bool));
    bool ok = false;

    if (hits == NULL) {
        bson_destroy(cmd);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    if (!mg_mongo_command(ctx->src, "admin", cmd, &reply, error))
        goto done;
    if (!bson_iter_init_find(&it, &reply, "databases") || !bson_iter_recurse(&it, &dbs)) {
        mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                     "listDatabases on the source returned no \"databases\" array");
        goto done;
    }
    while (bson_iter_next(&dbs)) {
        bson_iter_t d;
        if (!BSON_ITER_HOLDS_DOCUMENT(&dbs) || !bson_iter_recurse(&dbs, &d) ||
            !bson_iter_find(&d, "name") || !BSON_ITER_HOLDS_UTF8(&d))
            continue;
        const char *db = bson_iter_utf8(&d, NULL);
        if (is_internal_db(db))
            continue;
        if (!list_collections(ctx, db, hits, error))
            goto done;
    }
    for (size_t i = 0; i < ctx->o->include.count; i++) {
        if (!hits[i]) {
            mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                         "include pattern \"%s\" matches no collection on the source",
                         ctx->o->include.items[i]);
            goto done;
        }
    }
    if (ctx->ncolls == 0) {
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                     "no collection to migrate: the source has none outside admin, local and "
                     "config, or all were excluded");
        goto done;
    }
    ok = true;
done:
    free(hits);
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok;
}

/* ---- census ---- */

/* $collStats: one document per shard holding the collection (one on a replica set), summed */
typedef struct {
    plan_coll_t *pc;
    bool seen;
    int64_t count, size, storage;
} stats_ctx_t;

static int64_t
as_int64(const bson_iter_t *it)
{
    return BSON_ITER_HOLDS_NUMBER(it) ? bson_iter_as_int64(it) : 0;
}

static bool
on_collstats(void *vctx, const bson_t *doc, mg_error_t *error)
{
    stats_ctx_t *s = vctx;
    bson_iter_t it, st;
    int64_t count = 0, size = 0, storage = 0;

    if (!bson_iter_init_find(&it, doc, "storageStats") || !bson_iter_recurse(&it, &st))
        return true;
    while (bson_iter_next(&st)) {
        const char *k = bson_iter_key(&st);
        if (strcmp(k, "count") == 0)
            count = as_int64(&st);
        else if (strcmp(k, "size") == 0)
            size = as_int64(&st);
        else if (strcmp(k, "storageSize") == 0)
            storage = as_int64(&st);
    }
    s->count += count;
    s->size += size;
    s->storage += storage;
    mg_schema_census_set_stats(s->pc->census, s->count, s->size, s->storage);
    s->seen = true;
    return true;
}

static bool
on_id_type(void *vctx, const bson_t *doc, mg_error_t *error)
{
    plan_coll_t *pc = vctx;
    bson_iter_t it;
    const char *alias = NULL;
    int64_t n = 0;

    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it))
        alias = bson_iter_utf8(&it, NULL);
    if (bson_iter_init_find(&it, doc, "n"))
        n = as_int64(&it);
    if (alias == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                            "unexpected $group result on \"%s.%s\" (no _id type)", pc->db,
                            pc->coll);
    return mg_schema_census_add_id_type(pc->census, alias, n, error);
}

static bool
on_count(void *vctx, const bson_t *doc, mg_error_t *error)
{
    bson_iter_t it;

    if (bson_iter_init_find(&it, doc, "n"))
        *(int64_t *)vctx = as_int64(&it);
    return true;
}

static bool
on_sample(void *vctx, const bson_t *doc, mg_error_t *error)
{
    plan_coll_t *pc = vctx;

    return mg_schema_census_add_sample(pc->census, doc, error);
}

static bool
take_census(init_ctx_t *ctx, plan_coll_t *pc, mg_error_t *error)
{
    mongoc_collection_t *c = NULL;
    bson_t *pipe = NULL;
    bson_error_t be;
    stats_ctx_t stats = {pc, false, 0, 0, 0};
    bool ok = false;

    pc->census = mg_schema_census_new(pc->db, pc->coll);
    if (pc->census == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");

    /* 1. size and count: $collStats, else the estimated count */
    pipe =
        BCON_NEW("pipeline", "[", "{", "$collStats", "{", "storageStats", "{", "}", "}", "}", "]");
    mg_error_t soft;
    if (!mg_mongo_aggregate(ctx->src, pc->db, pc->coll, pipe, on_collstats, &stats, &soft) ||
        !stats.seen) {
        c = mongoc_client_get_collection(ctx->src->client, pc->db, pc->coll);
        int64_t n = mongoc_collection_estimated_document_count(c, NULL, NULL, NULL, &be);
        if (n < 0) {
            mg_error_set_bson(error, &be, "could not count collection \"%s.%s\"", pc->db, pc->coll);
            goto done;
        }
        mg_schema_census_set_stats(pc->census, n, 0, 0);
        mongoc_collection_destroy(c);
        c = NULL;
    }
    bson_destroy(pipe);

    /* 2. the exact _id type distribution, computed by the server */
    pipe = BCON_NEW("pipeline", "[", "{", "$group", "{", "_id", "{", "$type", BCON_UTF8("$_id"),
                    "}", "n", "{", "$sum", BCON_INT32(1), "}", "}", "}", "]");
    if (!mg_mongo_aggregate(ctx->src, pc->db, pc->coll, pipe, on_id_type, pc, error))
        goto done;
    bson_destroy(pipe);
    pipe = NULL;

    /* 3. string _ids that read as ObjectId hex, when both kinds are present */
    mg_schema_key_type_t k = mg_schema_census_key_type(pc->census);
    if (k == MG_SCHEMA_KEY_TEXT_OID) {
        int64_t n = 0;
        pipe = BCON_NEW("pipeline", "[", "{", "$match", "{", "_id", "{", "$type",
                        BCON_UTF8("string"), "$regex", BCON_UTF8("^[0-9a-f]{24}$"), "}", "}", "}",
                        "{", "$count", BCON_UTF8("n"), "}", "]");
        if (!mg_mongo_aggregate(ctx->src, pc->db, pc->coll, pipe, on_count, &n, error))
            goto done;
        mg_schema_census_set_oid_like_strings(pc->census, n);
        bson_destroy(pipe);
        pipe = NULL;
    }

    /* 4. documents: a sample, or all of them */
    mg_schema_census_set_full_scan(pc->census, ctx->o->census_mode == 1);
    if (ctx->o->census_mode == 1)
        pipe = BCON_NEW("pipeline", "[", "]");
    else
        pipe = BCON_NEW("pipeline", "[", "{", "$sample", "{", "size",
                        BCON_INT64(ctx->o->sample_size), "}", "}", "]");
    if (!mg_mongo_aggregate(ctx->src, pc->db, pc->coll, pipe, on_sample, pc, error))
        goto done;
    if (!mg_schema_census_choose_key(pc->census, (const char *const *)ctx->o->key_type.items,
                                     ctx->o->key_type.count, error))
        goto done;
    pc->key = mg_schema_census_key_type(pc->census);
    ok = true;
done:
    if (c != NULL)
        mongoc_collection_destroy(c);
    bson_destroy(pipe);
    return ok;
}

static bool
plan_indexes(init_ctx_t *ctx, plan_coll_t *pc, mg_error_t *error)
{
    mongoc_collection_t *c = mongoc_client_get_collection(ctx->src->client, pc->db, pc->coll);
    mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(c, NULL);
    const bson_t *spec;
    bson_error_t be;
    bool ok = true;

    while (ok && mongoc_cursor_next(cur, &spec)) {
        mg_schema_index_plan_t *grown = realloc(pc->indexes, (pc->nindexes + 1) * sizeof(*grown));
        if (grown == NULL) {
            ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            break;
        }
        pc->indexes = grown;
        ok = mg_schema_index_translate(spec, pc->name->schema, pc->name->table, pc->census,
                                       &pc->indexes[pc->nindexes], error);
        if (ok)
            pc->nindexes++;
        else
            mg_error_prefix(error, "collection \"%s.%s\"", pc->db, pc->coll);
    }
    if (ok && mongoc_cursor_error(cur, &be))
        ok = mg_error_set_bson(error, &be, "could not list the indexes of \"%s.%s\"", pc->db,
                               pc->coll);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    return ok;
}

/* ---- target ---- */

/*
 * check_target verifies the server version and encoding, probes the state schema and,
 * for a first init, that no target schema holds tables already.
 */
static bool
check_target(init_ctx_t *ctx, mg_error_t *error)
{
    int v = PQserverVersion(ctx->pg);
    const char *enc = PQparameterStatus(ctx->pg, "server_encoding");

    snprintf(ctx->pg_version, sizeof(ctx->pg_version), "%d.%d", v / 10000, v % 10000);
    if (v < 120000)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "target runs PostgreSQL %s; version 12 or later is needed",
                            ctx->pg_version);
    /* the JSON text is UTF-8 (type-mapping.md): another encoding would refuse
     * or silently alter characters it has no code for */
    if (enc == NULL || strcmp(enc, "UTF8") != 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "could not initialise target database \"%s\": its encoding is %s; "
                            "migrate needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE "
                            "template0)",
                            PQdb(ctx->pg), enc != NULL ? enc : "unknown");
    if (!mg_state_probe(ctx->st, &ctx->state_exists, &ctx->state_version, error))
        return false;
    if (ctx->state_exists && ctx->state_version == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "target schema \"%s\" exists but was not created by migrate; choose "
                            "another with --state-schema",
                            ctx->o->state_schema);
    if (ctx->state_version > MG_STATE_VERSION)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "state schema \"%s\" has version %d, newer than this migrate "
                            "understands (%d); upgrade migrate",
                            ctx->o->state_schema, ctx->state_version, MG_STATE_VERSION);
    return true;
}

/*
 * check_app_role refuses an application role that would not be least
 * privilege: migrate's own role (it owns every table and the state schema),
 * a superuser, or one that can create roles or databases, bypass row
 * security or replicate. A role that does not exist yet is created.
 */
static bool
check_app_role(init_ctx_t *ctx, mg_error_t *error)
{
    const char *role = ctx->o->app_role;
    const char *params[1] = {role};
    PGresult *res;
    const char *why = NULL;

    if (role == NULL)
        return true;
    res = mg_pg_query(ctx->pg,
                      "SELECT rolname = current_user, rolsuper, rolcreaterole OR rolcreatedb OR "
                      "rolbypassrls OR rolreplication FROM pg_roles WHERE rolname = $1",
                      1, params, error);
    if (res == NULL)
        return false;
    ctx->app_role_exists = PQntuples(res) == 1;
    if (ctx->app_role_exists && strcmp(PQgetvalue(res, 0, 0), "t") == 0)
        why = "it is the role migrate connects as, which owns the tables and the state schema";
    else if (ctx->app_role_exists && strcmp(PQgetvalue(res, 0, 1), "t") == 0)
        why = "it is a superuser";
    else if (ctx->app_role_exists && strcmp(PQgetvalue(res, 0, 2), "t") == 0)
        why = "it can create roles or databases, bypass row security or replicate";
    PQclear(res);
    if (why != NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not use application role \"%s\": %s; name a role of its own "
                            "with --app-role",
                            role, why);
    return true;
}

/* unrelated_tables lists relations in the planned schemas that are not planned tables. */
static bool
check_unrelated_tables(init_ctx_t *ctx, mg_error_t *error)
{
    for (size_t i = 0; i < ctx->ncolls; i++) {
        const char *schema = ctx->colls[i].name->schema;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(ctx->colls[j].name->schema, schema) == 0;
        if (seen)
            continue;
        if (strcmp(schema, ctx->o->state_schema) == 0)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "target schema \"%s\" is also the state schema; choose another "
                                "with --target-schema or --state-schema",
                                schema);
        const char *params[1] = {schema};
        PGresult *res = mg_pg_query(
            ctx->pg,
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1",
            1, params, error);
        if (res == NULL)
            return false;
        int n = PQntuples(res);
        if (n > 0) {
            char list[400];
            size_t o = 0;
            list[0] = '\0';
            for (int r = 0; r < n && r < 10 && o < sizeof(list); r++)
                o += (size_t)snprintf(list + o, sizeof(list) - o, "%s\"%s\"", r ? ", " : "",
                                      PQgetvalue(res, r, 0));
            mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                         "target schema \"%s\" already holds %d table(s) not created by migrate "
                         "(%s%s); choose another schema with --target-schema, or empty it",
                         schema, n, list, n > 10 ? ", ..." : "");
            PQclear(res);
            return false;
        }
        PQclear(res);
    }
    return true;
}

/*
 * compare_with_state marks each planned collection as recorded the same
 * way, recorded differently, or new; and lists recorded collections that
 * are no longer planned. ctx->plan_matches is true when nothing differs.
 */
/* recorded_as marks pc as recorded the same way, recorded differently, or new. */
static void
recorded_as(plan_coll_t *pc, const mg_state_colls_t *rec)
{
    pc->recorded = "new: not in the recorded plan";
    for (size_t r = 0; r < rec->n; r++) {
        const mg_state_coll_t *c = &rec->items[r];
        if (strcmp(c->db, pc->db) != 0 || strcmp(c->coll, pc->coll) != 0)
            continue;
        if (strcmp(c->schema, pc->name->schema) == 0 && strcmp(c->table, pc->name->table) == 0 &&
            strcmp(c->key_type, mg_schema_key_type_name(pc->key)) == 0) {
            pc->recorded = "exists";
        } else {
            snprintf(pc->recorded_buf, sizeof(pc->recorded_buf),
                     "differs: recorded as %s.%s with key %s", c->schema, c->table, c->key_type);
            pc->recorded = pc->recorded_buf;
        }
        return;
    }
}

/*
 * compare_with_state marks each planned collection as recorded the same
 * way, recorded differently, or new; and lists recorded collections that
 * are no longer planned. ctx->plan_matches is true when nothing differs.
 */
static bool
compare_with_state(init_ctx_t *ctx, mg_error_t *error)
{
    mg_state_colls_t rec = {0};
    bool ok = false;

    if (!mg_state_collections_load(ctx->st, false, &rec, error))
        return false;
    /* matches only when every planned collection exists as recorded */
    ctx->plan_matches = true;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        recorded_as(&ctx->colls[i], &rec);
        if (strcmp(ctx->colls[i].recorded, "exists") != 0)
            ctx->plan_matches = false;
    }
    for (size_t r = 0; r < rec.n; r++) {
        bool planned = false;
        for (size_t i = 0; i < ctx->ncolls && !planned; i++)
            planned = strcmp(rec.items[r].db, ctx->colls[i].db) == 0 &&
                      strcmp(rec.items[r].coll, ctx->colls[i].coll) == 0;
        if (planned)
            continue;
        char **grown = realloc(ctx->stale, (ctx->nstale + 1) * sizeof(char *));
        if (grown == NULL) {
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto done;
        }
        ctx->stale = grown;
        size_t n = strlen(rec.items[r].db) + strlen(rec.items[r].coll) + 2;
        ctx->stale[ctx->nstale] = malloc(n);
        if (ctx->stale[ctx->nstale] == NULL) {
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto done;
        }
        snprintf(ctx->stale[ctx->nstale], n, "%s.%s", rec.items[r].db, rec.items[r].coll);
        ctx->nstale++;
        ctx->plan_matches = false;
    }
    ok = true;
done:
    mg_state_colls_cleanup(&rec);
    return ok;
}

/* first_in_schema is true when collection i is the first planned in its schema. */
static bool
first_in_schema(const init_ctx_t *ctx, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(ctx->colls[j].name->schema, ctx->colls[i].name->schema) == 0)
            return false;
    return true;
}

/*
 * app_role_ddl appends what --app-role asks for: the role (NOLOGIN: the
 * operator gives it a login or grants it to the application's own), and per
 * target schema USAGE, the four data privileges on every table, also on
 * tables migrate creates there later. Nothing on the state schema. Every
 * statement can run again.
 */
static bool
app_role_ddl(init_ctx_t *ctx, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_t role;
    bool ok = true;

    if (ctx->o->app_role == NULL)
        return true;
    mg_buf_init(&role, 1024);
    ok = mg_schema_quote_ident(ctx->o->app_role, &role, error);
    if (ok && !ctx->app_role_exists)
        ok = mg_buf_printf(out, error, "CREATE ROLE %s NOLOGIN;\n", role.data);
    for (size_t i = 0; ok && i < ctx->ncolls; i++) {
        mg_buf_t schema;
        if (!first_in_schema(ctx, i))
            continue;
        mg_buf_init(&schema, 1024);
        ok = mg_schema_quote_ident(ctx->colls[i].name->schema, &schema, error) &&
             mg_buf_printf(out, error,
                           "GRANT USAGE ON SCHEMA %s TO %s;\n"
                           "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO "
                           "%s;\n"
                           "ALTER DEFAULT PRIVILEGES IN SCHEMA %s GRANT SELECT, INSERT, UPDATE, "
                           "DELETE ON TABLES TO %s;\n",
                           schema.data, role.data, schema.data, role.data, schema.data, role.data);
        mg_buf_cleanup(&schema);
    }
    mg_buf_cleanup(&role);
    return ok;
}

/* build_ddl appends every statement of the plan, in execution order. */
static bool
build_ddl(init_ctx_t *ctx, bool include_state, mg_buf_t *out, mg_error_t *error)
{
    if (include_state && !mg_state_ddl(ctx->st, out, error))
        return false;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        const char *schema = ctx->colls[i].name->schema;
        if (!first_in_schema(ctx, i))
            continue;
        if (!mg_buf_append_str(out, "CREATE SCHEMA IF NOT EXISTS ", error) ||
            !mg_schema_quote_ident(schema, out, error) || !mg_buf_append_str(out, ";\n", error) ||
            !mg_schema_sql_helpers_ddl(schema, out, error))
            return false;
    }
    for (size_t i = 0; i < ctx->ncolls; i++) {
        if (!mg_schema_table_ddl_named(ctx->colls[i].name, ctx->colls[i].key, out, error) ||
            !mg_buf_append_str(out, ";\n", error))
            return false;
    }
    return app_role_ddl(ctx, out, error);
}

/* grant_app_role runs --app-role's statements alone: a re-run on a target that matches. */
static bool
grant_app_role(init_ctx_t *ctx, mg_error_t *error)
{
    mg_buf_t ddl;
    bool ok;

    mg_buf_init(&ddl, SQL_CAP);
    ok = app_role_ddl(ctx, &ddl, error) && mg_state_begin(ctx->st, error);
    if (ok && !(mg_pg_exec(ctx->pg, ddl.data, error) && mg_state_commit(ctx->st, error))) {
        mg_state_rollback(ctx->st);
        ok = false;
    }
    mg_buf_cleanup(&ddl);
    return ok;
}

/* plan_options writes the options that shape the data, and the scope, as one JSON object. */
static bool
plan_options(const init_ctx_t *ctx, mg_buf_t *out, mg_error_t *error)
{
    const mg_strlist_t *lists[2] = {&ctx->o->include, &ctx->o->exclude};
    const char *names[2] = {"include", "exclude"};
    yajl_gen g = yajl_gen_alloc(NULL);
    bool ok;

    if (g == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    yajl_gen_map_open(g);
    mg_json_kstr(g, "census", census_choices[ctx->o->census_mode]);
    mg_json_kint(g, "sample_size", ctx->o->sample_size);
    for (int k = 0; k < 2; k++) { /* the scope: later commands compare the source with it */
        mg_json_str(g, names[k]);
        yajl_gen_array_open(g);
        for (size_t i = 0; i < lists[k]->count; i++)
            mg_json_str(g, lists[k]->items[i]);
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    ok = mg_json_take(g, out, error);
    yajl_gen_free(g);
    return ok;
}

/*
 * record_plan records the migration row (the source URI without its
 * password, and where the password comes from), and each collection with
 * its census and indexes.
 */
static bool
record_plan(init_ctx_t *ctx, mg_error_t *error)
{
    mg_buf_t opts;
    char secret[256];
    bool ok, had = false;
    char *uri = mg_mongo_uri_strip_password(ctx->o->source, &had);

    mg_buf_init(&opts, 1 << 20);
    snprintf(secret, sizeof(secret), "the password of the source URI, from %s",
             ctx->source_from != NULL ? ctx->source_from : "?");
    ok = plan_options(ctx, &opts, error);
    if (ok && uri == NULL)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    if (ok) {
        mg_state_migration_new_t m = {MG_VERSION_STRING,
                                      uri,
                                      ctx->src->version,
                                      ctx->src->set_name,
                                      ctx->o->target_schema,
                                      fidelity_choices[ctx->o->fidelity],
                                      opts.data,
                                      had ? secret : NULL};
        ok = mg_state_migration_insert(ctx->st, &m, error);
    }
    free(uri);
    mg_buf_cleanup(&opts);
    for (size_t i = 0; ok && i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        mg_state_coll_new_t c = {pc->db,
                                 pc->coll,
                                 pc->name->schema,
                                 pc->name->table,
                                 mg_schema_key_type_name(pc->key),
                                 mg_schema_census_count(pc->census),
                                 mg_schema_census_size_bytes(pc->census),
                                 pc->census_json};
        ok = mg_state_collection_insert(ctx->st, &c, error);
        for (size_t k = 0; ok && k < pc->nindexes; k++) {
            mg_schema_index_plan_t *ip = &pc->indexes[k];
            mg_state_index_t x = {
                .db = pc->db,
                .coll = pc->coll,
                .mongo_name = ip->mongo_name,
                .pg_name = ip->pg_name,
                .key_json = ip->key_json,
                .unique = ip->unique,
                .translation = mg_schema_index_status_name(ip->status),
                .build_status = ip->status == MG_SCHEMA_INDEX_PRIMARY          ? "built"
                                : ip->status == MG_SCHEMA_INDEX_NOT_TRANSLATED ? "skipped"
                                                                               : "pending",
                .sql = ip->sql,
                .note = ip->note,
                .suggestion = ip->suggestion,
            };
            ok = mg_state_index_insert(ctx->st, &x, error);
        }
    }
    return ok;
}

/* apply runs reset (optional), DDL and the plan's rows in one transaction. */
static bool
apply(init_ctx_t *ctx, mg_error_t *error)
{
    mg_buf_t ddl;
    bool ok = false;
    char event[256];

    mg_buf_init(&ddl, SQL_CAP);
    if (!mg_state_begin(ctx->st, error))
        goto done;
    if (ctx->o->reset && ctx->state_exists && !mg_state_drop_ddl(ctx->st, &ddl, error))
        goto rollback;
    if (!build_ddl(ctx, true, &ddl, error))
        goto rollback;
    /* one multi-statement string: simple query protocol, one transaction */
    if (!mg_pg_exec(ctx->pg, ddl.data, error))
        goto rollback;
    if (!record_plan(ctx, error))
        goto rollback;
    snprintf(event, sizeof(event), "{\"collections\":%zu,\"reset\":%s}", ctx->ncolls,
             ctx->o->reset ? "true" : "false");
    if (!mg_state_event_add(ctx->st, "init", event, error))
        goto rollback;
    if (!mg_state_commit(ctx->st, error))
        goto rollback;
    ok = true;
    goto done;
rollback:
    mg_state_rollback(ctx->st);
done:
    mg_buf_cleanup(&ddl);
    return ok;
}

/* ---- output ---- */

static void
print_json(init_ctx_t *ctx, const char *outcome, const mg_buf_t *ddl)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;

    yajl_gen_map_open(g);
    mg_json_kstr(g, "outcome", outcome);
    mg_json_kstr(g, "source", ctx->src->uri_shown);
    mg_json_kstr(g, "source_version", ctx->src->version);
    mg_json_kstr(g, "source_set_name", ctx->src->set_name[0] ? ctx->src->set_name : NULL);
    mg_json_kstr(g, "target_version", ctx->pg_version);
    mg_json_kstr(g, "state_schema", ctx->o->state_schema);
    mg_json_kstr(g, "type_fidelity", fidelity_choices[ctx->o->fidelity]);
    mg_json_str(g, "collections");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        yajl_gen_map_open(g);
        mg_json_kstr(g, "db", pc->db);
        mg_json_kstr(g, "collection", pc->coll);
        mg_json_kstr(g, "schema", pc->name->schema);
        mg_json_kstr(g, "table", pc->name->table);
        mg_json_str(g, "renamed");
        yajl_gen_bool(g, pc->name->table_renamed || pc->name->schema_renamed);
        mg_json_kstr(g, "key_type", mg_schema_key_type_name(pc->key));
        mg_json_kstr(g, "key_sql_type", mg_schema_key_type_sql(pc->key));
        mg_json_str(g, "documents");
        yajl_gen_integer(g, mg_schema_census_count(pc->census));
        mg_json_str(g, "size_bytes");
        yajl_gen_integer(g, mg_schema_census_size_bytes(pc->census));
        if (pc->recorded != NULL)
            mg_json_kstr(g, "recorded", pc->recorded);
        mg_json_str(g, "census");
        /* already JSON: embed it as is */
        yajl_gen_number(g, pc->census_json, strlen(pc->census_json));
        mg_json_str(g, "indexes");
        yajl_gen_array_open(g);
        for (size_t k = 0; k < pc->nindexes; k++) {
            mg_schema_index_plan_t *ip = &pc->indexes[k];
            yajl_gen_map_open(g);
            mg_json_kstr(g, "name", ip->mongo_name);
            mg_json_kstr(g, "pg_name", ip->pg_name);
            mg_json_kstr(g, "translation", mg_schema_index_status_name(ip->status));
            mg_json_kstr(g, "sql", ip->statement); /* _migrate.indexes.sql: ip->sql builds it */
            mg_json_kstr(g, "note", ip->note);
            mg_json_kstr(g, "suggestion", ip->suggestion);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_str(g, "skipped");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < ctx->nskipped; i++) {
        yajl_gen_map_open(g);
        mg_json_kstr(g, "namespace", ctx->skipped[i].ns);
        mg_json_kstr(g, "reason", ctx->skipped[i].reason);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_str(g, "no_longer_planned");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < ctx->nstale; i++)
        mg_json_str(g, ctx->stale[i]);
    yajl_gen_array_close(g);
    if (ddl != NULL)
        mg_json_kstr(g, "ddl", ddl->data);
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    fwrite(buf, 1, len, stdout);
    fputc('\n', stdout);
    yajl_gen_free(g);
}

static void
print_text(init_ctx_t *ctx, const char *outcome, const mg_buf_t *ddl)
{
    char a[32], b[32];
    int64_t docs = 0, bytes = 0;
    mg_buf_t warn;
    mg_error_t e;

    printf("source  %s (%s%s%s, MongoDB %s)\n", ctx->src->uri_shown,
           ctx->src->set_name[0] ? "replica set \"" : "not a replica set", ctx->src->set_name,
           ctx->src->set_name[0] ? "\"" : "", ctx->src->version);
    printf("target  PostgreSQL %s, state schema \"%s\"\n", ctx->pg_version, ctx->o->state_schema);
    printf("types   %s fidelity; census by %s\n\n", fidelity_choices[ctx->o->fidelity],
           ctx->o->census_mode == 1 ? "full scan" : "sample");
    printf("  %-32s %-32s %10s %10s  %-13s %s\n", "COLLECTION", "TABLE", "DOCUMENTS", "SIZE", "KEY",
           "INDEXES");
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        char ns[300], tbl[300], idx[64];
        size_t built = 0, skipped = 0;
        for (size_t k = 0; k < pc->nindexes; k++) {
            if (pc->indexes[k].status == MG_SCHEMA_INDEX_NOT_TRANSLATED)
                skipped++;
            else if (pc->indexes[k].status != MG_SCHEMA_INDEX_PRIMARY)
                built++;
        }
        snprintf(ns, sizeof(ns), "%s.%s", pc->db, pc->coll);
        snprintf(tbl, sizeof(tbl), "%s.%s", pc->name->schema, pc->name->table);
        if (skipped > 0)
            snprintf(idx, sizeof(idx), "%zu (+%zu not translated)", built, skipped);
        else
            snprintf(idx, sizeof(idx), "%zu", built);
        docs += mg_schema_census_count(pc->census);
        bytes += mg_schema_census_size_bytes(pc->census);
        printf("  %-32s %-32s %10s %10s  %-13s %s%s%s\n", ns, tbl,
               mg_format_count(mg_schema_census_count(pc->census), a, sizeof(a)),
               mg_format_bytes(mg_schema_census_size_bytes(pc->census), b, sizeof(b)),
               mg_schema_key_type_name(pc->key), idx, pc->recorded ? "  " : "",
               pc->recorded ? pc->recorded : "");
    }
    printf("  total: %zu collections, %s documents, %s\n", ctx->ncolls,
           mg_format_count(docs, a, sizeof(a)), mg_format_bytes(bytes, b, sizeof(b)));

    bool header = false;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        if (!pc->name->table_renamed && !pc->name->schema_renamed)
            continue;
        if (!header)
            printf("\nrenamed (docs/naming.md):\n");
        header = true;
        printf("  %s.%s -> %s.%s\n", pc->db, pc->coll, pc->name->schema, pc->name->table);
    }
    header = false;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        for (size_t k = 0; k < pc->nindexes; k++) {
            mg_schema_index_plan_t *ip = &pc->indexes[k];
            if (ip->status == MG_SCHEMA_INDEX_PRIMARY)
                continue;
            if (!header)
                printf("\nindexes (built after the bulk load):\n");
            header = true;
            printf("  %s.%s %s: %s", pc->db, pc->coll, ip->mongo_name,
                   mg_schema_index_status_name(ip->status));
            if (ip->note != NULL)
                printf(" (%s)", ip->note);
            printf("\n");
            if (ip->suggestion != NULL)
                printf("      instead: %s\n", ip->suggestion);
        }
    }
    header = false;
    mg_buf_init(&warn, 1 << 20);
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        mg_buf_reset(&warn);
        if (!mg_schema_census_warnings(pc->census, &warn, NULL, &e) || warn.len == 0)
            continue;
        if (!header)
            printf("\nwarnings:\n");
        header = true;
        char *save = NULL;
        for (char *line = strtok_r(warn.data, "\n", &save); line != NULL;
             line = strtok_r(NULL, "\n", &save))
            printf("  %s.%s: %s\n", pc->db, pc->coll, line);
    }
    mg_buf_cleanup(&warn);
    if (ctx->src->set_name[0] == '\0') {
        if (!header)
            printf("\nwarnings:\n");
        printf("  source: not a replica set member; `migrate sync` needs change streams, which "
               "need a replica set\n");
    }
    if (ctx->nskipped > 0) {
        printf("\nskipped:\n");
        for (size_t i = 0; i < ctx->nskipped; i++)
            printf("  %s: %s\n", ctx->skipped[i].ns, ctx->skipped[i].reason);
    }
    if (ctx->nstale > 0) {
        printf("\nrecorded earlier but not planned now:\n");
        for (size_t i = 0; i < ctx->nstale; i++)
            printf("  %s\n", ctx->stale[i]);
    }
    if (ddl != NULL)
        printf("\nDDL (not executed):\n%s", ddl->data);
    printf("\n%s\n", outcome);
}

/* init_check checks the options that go together or have a shape. */
static bool
init_check(const void *vo, mg_error_t *error)
{
    const init_opts_t *o = vo;

    if (o->reset && !o->yes && !o->dry_run)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "--reset drops the tables and state of the earlier init; add --yes to "
                            "confirm");
    if (!check_patterns(&o->include, "include", error) ||
        !check_patterns(&o->exclude, "exclude", error) ||
        !mg_schema_key_choice_check((const char *const *)o->key_type.items, o->key_type.count,
                                    error))
        return false;
    if (o->target_schema != NULL) {
        char check[MG_SCHEMA_IDENT_MAX + 1];
        if (mg_schema_ident_sanitize(o->target_schema, check))
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "invalid value for option \"target_schema\": \"%s\" is not a "
                                "plain lower-case identifier (try \"%s\")",
                                o->target_schema, check);
    }
    return true;
}

/* check_privileges checks what the source user may do with the planned collections. */
static bool
check_privileges(init_ctx_t *ctx, mg_error_t *error)
{
    mg_migrator_ns_t *ns = calloc(ctx->ncolls + 1, sizeof(*ns));
    bool ok;

    if (ns == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; i < ctx->ncolls; i++)
        ns[i] = (mg_migrator_ns_t){ctx->colls[i].db, ctx->colls[i].coll};
    ok = mg_migrator__check_privileges(ctx->src, ns, ctx->ncolls, error);
    free(ns);
    return ok;
}

/* plan takes the census of every collection, names the tables and plans the indexes. */
static bool
plan(init_ctx_t *ctx, mg_error_t *error)
{
    if (!list_namespaces(ctx, error) || !check_privileges(ctx, error))
        return false;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        if (!take_census(ctx, pc, error))
            return false;
        MG_LOG_EVENT(MG_LOG_INFO, "init", "init.census",
                     MG_LOG_FIELDS(MG_LOG_STR("collection", pc->coll), MG_LOG_STR("db", pc->db),
                                   MG_LOG_INT("documents", mg_schema_census_count(pc->census)),
                                   MG_LOG_STR("key_type", mg_schema_key_type_name(pc->key)),
                                   MG_LOG_UINT("done", i + 1), MG_LOG_UINT("of", ctx->ncolls)),
                     "census of %s.%s done (%zu of %zu)", pc->db, pc->coll, i + 1, ctx->ncolls);
    }
    ctx->naming = mg_schema_naming_new(ctx->o->target_schema);
    if (ctx->naming == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; i < ctx->ncolls; i++)
        if (!mg_schema_naming_add(ctx->naming, ctx->colls[i].db, ctx->colls[i].coll, error))
            return false;
    if (!mg_schema_naming_reserve(ctx->naming, ctx->o->state_schema, error) ||
        !mg_schema_naming_resolve(ctx->naming, error))
        return false;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        mg_buf_t json;
        pc->name = mg_schema_naming_find(ctx->naming, pc->db, pc->coll);
        mg_buf_init(&json, 16 * 1024 * 1024);
        if (!mg_schema_census_to_json(pc->census, &json, error)) {
            mg_buf_cleanup(&json);
            return false;
        }
        pc->census_json = json.data; /* steal */
        if (pc->census_json == NULL && (pc->census_json = strdup("{}")) == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        if (!plan_indexes(ctx, pc, error) ||
            !mg_schema_naming_add_indexes(ctx->naming, pc->db, pc->coll, pc->indexes, pc->nindexes,
                                          error))
            return false;
    }
    /* index names unique in each schema */
    return mg_schema_naming_resolve_indexes(ctx->naming, error);
}

/*
 * init_target compares with an earlier init (a re-run changes nothing),
 * or prints the DDL (--dry-run), or applies it; *outcome says which.
 */
static int
init_target(init_ctx_t *ctx, mg_buf_t *ddl, const char **outcome, mg_error_t *error)
{
    const init_opts_t *o = ctx->o;

    if (!check_target(ctx, error) || !check_app_role(ctx, error))
        return mg_exit_code_for_error(error);
    if (ctx->state_exists && !o->reset) {
        if (!compare_with_state(ctx, error))
            return mg_exit_code_for_error(error);
        if (ctx->plan_matches && o->app_role != NULL && !o->dry_run && !grant_app_role(ctx, error))
            return mg_exit_code_for_error(error);
        *outcome = ctx->plan_matches
                       ? "already initialised: the target matches this plan; nothing to do"
                       : "already initialised, and this plan differs from the recorded one "
                         "(see above); nothing was changed. To start again: migrate init "
                         "--reset --yes (drops the migrated tables)";
        return ctx->plan_matches ? MG_EXIT_OK : MG_EXIT_STATE;
    }
    if (!ctx->state_exists && !check_unrelated_tables(ctx, error))
        return mg_exit_code_for_error(error);
    if (o->dry_run) {
        if ((o->reset && ctx->state_exists && !mg_state_drop_ddl(ctx->st, ddl, error)) ||
            !build_ddl(ctx, true, ddl, error))
            return mg_exit_code_for_error(error);
        *outcome = "dry run: nothing was changed";
        return MG_EXIT_OK;
    }
    if (!apply(ctx, error))
        return mg_exit_code_for_error(error);
    *outcome = "initialised; next: migrate sync";
    MG_LOG_EVENT(MG_LOG_NOTICE, "init", "init.done",
                 MG_LOG_FIELDS(MG_LOG_UINT("collections", ctx->ncolls),
                               MG_LOG_STR("state_schema", o->state_schema)),
                 "target initialised");
    return MG_EXIT_OK;
}

static int
init_main(mg_cmd_ctx_t *cmd, mg_error_t *error)
{
    init_ctx_t ctx;
    mg_buf_t ddl;
    const char *outcome = NULL;
    int rc;

    memset(&ctx, 0, sizeof(ctx));
    mg_buf_init(&ddl, SQL_CAP);
    ctx.o = cmd->opts;
    ctx.src = &mg_migrator__res(cmd)->src;
    ctx.st = mg_migrator__res(cmd)->st;
    ctx.pg = mg_state_conn(ctx.st);
    ctx.source_from = mg_config_source_describe(cmd->config, "source");
    rc = plan(&ctx, error) ? init_target(&ctx, &ddl, &outcome, error)
                           : (int)mg_exit_code_for_error(error);
    if (outcome != NULL && ctx.o->json)
        print_json(&ctx, outcome, ddl.len > 0 ? &ddl : NULL);
    else if (outcome != NULL)
        print_text(&ctx, outcome, ddl.len > 0 ? &ddl : NULL);
    mg_buf_cleanup(&ddl);
    ctx_cleanup(&ctx);
    return rc;
}

const mg_cmd_t mg_migrator_cmd_init = {
    .name = "init",
    .summary = "census the source, create the target tables and state schema, print the plan",
    .usage = "--source URI --target URI [options]",
    .description = "Take a census of the MongoDB source, create one JSONB table per collection "
                   "and\nthe state schema on the PostgreSQL target, and print the plan "
                   "(docs/init.md).",
    .main = init_main,
    .options = init_options,
    .noptions = N_INIT_OPTIONS,
    .opts_size = sizeof(init_opts_t),
    .needs = MG_CMD_NEEDS_SOURCE | MG_CMD_NEEDS_TARGET,
    .check = init_check,
};
