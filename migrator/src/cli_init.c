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
    {.name = "source",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(init_opts_t, source),
     .required = true,
     .metavar = "URI",
     .help = "MongoDB connection string of the source"},
    {.name = "target",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(init_opts_t, target),
     .required = true,
     .metavar = "URI",
     .help = "PostgreSQL connection string of the target (URI or key=value)"},
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
    {.name = "state_schema",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(init_opts_t, state_schema),
     .default_value = MG_MIGRATOR_STATE_SCHEMA,
     .metavar = "NAME",
     .help = "schema holding the tool's state on the target"},
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
    {.name = "json",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(init_opts_t, json),
     .default_value = "false",
     .help = "print the plan as one JSON object"},
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
    init_opts_t *o;
    mg_source_t src;
    PGconn *pg;
    char pg_version[32];
    mg_schema_naming_t *naming;
    plan_coll_t *colls;
    size_t ncolls;
    skipped_t *skipped;
    size_t nskipped;
    bool state_exists;
    int state_version;
    bool plan_matches; /* re-run: everything planned is recorded the same way */
    char **stale;      /* re-run: recorded collections no longer planned */
    size_t nstale;
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
    if (ctx->pg != NULL)
        PQfinish(ctx->pg);
    mg_migrator__source_close(&ctx->src);
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
    mongoc_database_t *d = mongoc_client_get_database(ctx->src.client, db);
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
    if (!mg_migrator__source_command(&ctx->src, "admin", cmd, &reply, error))
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

typedef struct {
    plan_coll_t *pc;
    bool seen;
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
    mg_schema_census_set_stats(s->pc->census, count, size, storage);
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
    stats_ctx_t stats = {pc, false};
    bool ok = false;

    pc->census = mg_schema_census_new(pc->db, pc->coll);
    if (pc->census == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");

    /* 1. size and count: $collStats, else the estimated count */
    pipe =
        BCON_NEW("pipeline", "[", "{", "$collStats", "{", "storageStats", "{", "}", "}", "}", "]");
    mg_error_t soft;
    if (!mg_migrator__source_aggregate(&ctx->src, pc->db, pc->coll, pipe, on_collstats, &stats,
                                       &soft) ||
        !stats.seen) {
        c = mongoc_client_get_collection(ctx->src.client, pc->db, pc->coll);
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
    if (!mg_migrator__source_aggregate(&ctx->src, pc->db, pc->coll, pipe, on_id_type, pc, error))
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
        if (!mg_migrator__source_aggregate(&ctx->src, pc->db, pc->coll, pipe, on_count, &n, error))
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
    if (!mg_migrator__source_aggregate(&ctx->src, pc->db, pc->coll, pipe, on_sample, pc, error))
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
    mongoc_collection_t *c = mongoc_client_get_collection(ctx->src.client, pc->db, pc->coll);
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
 * check_target verifies the server version, probes the state schema and,
 * for a first init, that no target schema holds tables already.
 */
static bool
check_target(init_ctx_t *ctx, mg_error_t *error)
{
    int v = PQserverVersion(ctx->pg);

    snprintf(ctx->pg_version, sizeof(ctx->pg_version), "%d.%d", v / 10000, v % 10000);
    if (v < 120000)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "target runs PostgreSQL %s; version 12 or later is needed",
                            ctx->pg_version);
    if (!mg_migrator__state_probe(ctx->pg, ctx->o->state_schema, &ctx->state_exists,
                                  &ctx->state_version, error))
        return false;
    if (ctx->state_exists && ctx->state_version == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "target schema \"%s\" exists but was not created by migrate; choose "
                            "another with --state-schema",
                            ctx->o->state_schema);
    if (ctx->state_version > MG_MIGRATOR_STATE_VERSION)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "state schema \"%s\" has version %d, newer than this migrate "
                            "understands (%d); upgrade migrate",
                            ctx->o->state_schema, ctx->state_version, MG_MIGRATOR_STATE_VERSION);
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
        PGresult *res = mg_migrator__target_query(
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
static bool
compare_with_state(init_ctx_t *ctx, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    bool ok = false;

    mg_buf_init(&sql, 4096);
    if (!mg_buf_append_str(&sql, "SELECT db, coll, schema_name, table_name, key_type FROM ",
                           error) ||
        !mg_schema_quote_ident(ctx->o->state_schema, &sql, error) ||
        !mg_buf_append_str(&sql, ".collections ORDER BY db, coll", error))
        goto done;
    res = mg_migrator__target_query(ctx->pg, sql.data, 0, NULL, error);
    if (res == NULL)
        goto done;
    ctx->plan_matches = true;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        pc->recorded = "new: not in the recorded plan";
        ctx->plan_matches = false;
        for (int r = 0; r < PQntuples(res); r++) {
            if (strcmp(PQgetvalue(res, r, 0), pc->db) != 0 ||
                strcmp(PQgetvalue(res, r, 1), pc->coll) != 0)
                continue;
            if (strcmp(PQgetvalue(res, r, 2), pc->name->schema) == 0 &&
                strcmp(PQgetvalue(res, r, 3), pc->name->table) == 0 &&
                strcmp(PQgetvalue(res, r, 4), mg_schema_key_type_name(pc->key)) == 0) {
                pc->recorded = "exists";
                ctx->plan_matches = ctx->plan_matches || true;
            } else {
                snprintf(pc->recorded_buf, sizeof(pc->recorded_buf),
                         "differs: recorded as %s.%s with key %s", PQgetvalue(res, r, 2),
                         PQgetvalue(res, r, 3), PQgetvalue(res, r, 4));
                pc->recorded = pc->recorded_buf;
            }
            break;
        }
    }
    /* recompute: matches only when every planned collection exists as recorded */
    ctx->plan_matches = true;
    for (size_t i = 0; i < ctx->ncolls; i++)
        if (strcmp(ctx->colls[i].recorded, "exists") != 0)
            ctx->plan_matches = false;
    for (int r = 0; r < PQntuples(res); r++) {
        bool planned = false;
        for (size_t i = 0; i < ctx->ncolls && !planned; i++)
            planned = strcmp(PQgetvalue(res, r, 0), ctx->colls[i].db) == 0 &&
                      strcmp(PQgetvalue(res, r, 1), ctx->colls[i].coll) == 0;
        if (planned)
            continue;
        char **grown = realloc(ctx->stale, (ctx->nstale + 1) * sizeof(char *));
        if (grown == NULL) {
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto done;
        }
        ctx->stale = grown;
        size_t n = strlen(PQgetvalue(res, r, 0)) + strlen(PQgetvalue(res, r, 1)) + 2;
        ctx->stale[ctx->nstale] = malloc(n);
        if (ctx->stale[ctx->nstale] == NULL) {
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto done;
        }
        snprintf(ctx->stale[ctx->nstale], n, "%s.%s", PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
        ctx->nstale++;
        ctx->plan_matches = false;
    }
    ok = true;
done:
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
}

/* build_ddl appends every statement of the plan, in execution order. */
static bool
build_ddl(init_ctx_t *ctx, bool include_state, mg_buf_t *out, mg_error_t *error)
{
    if (include_state && !mg_migrator__state_ddl(ctx->o->state_schema, out, error))
        return false;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        const char *schema = ctx->colls[i].name->schema;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(ctx->colls[j].name->schema, schema) == 0;
        if (seen)
            continue;
        if (!mg_buf_append_str(out, "CREATE SCHEMA IF NOT EXISTS ", error) ||
            !mg_schema_quote_ident(schema, out, error) || !mg_buf_append_str(out, ";\n", error))
            return false;
    }
    for (size_t i = 0; i < ctx->ncolls; i++) {
        if (!mg_schema_table_ddl_named(ctx->colls[i].name, ctx->colls[i].key, out, error) ||
            !mg_buf_append_str(out, ";\n", error))
            return false;
    }
    return true;
}

/* reset_ddl appends the statements that undo an earlier init. */
static bool
reset_ddl(init_ctx_t *ctx, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res;
    bool ok = true;

    mg_buf_init(&sql, 4096);
    ok = mg_buf_append_str(&sql, "SELECT DISTINCT schema_name, table_name FROM ", error) &&
         mg_schema_quote_ident(ctx->o->state_schema, &sql, error) &&
         mg_buf_append_str(&sql, ".collections", error);
    res = ok ? mg_migrator__target_query(ctx->pg, sql.data, 0, NULL, error) : NULL;
    mg_buf_cleanup(&sql);
    if (res == NULL)
        return false;
    for (int r = 0; ok && r < PQntuples(res); r++)
        ok = mg_buf_append_str(out, "DROP TABLE IF EXISTS ", error) &&
             mg_schema_quote_ident(PQgetvalue(res, r, 0), out, error) &&
             mg_buf_append_str(out, ".", error) &&
             mg_schema_quote_ident(PQgetvalue(res, r, 1), out, error) &&
             mg_buf_append_str(out, ";\n", error);
    PQclear(res);
    return ok && mg_buf_append_str(out, "DROP SCHEMA ", error) &&
           mg_schema_quote_ident(ctx->o->state_schema, out, error) &&
           mg_buf_append_str(out, " CASCADE;\n", error);
}

static bool
record_plan(init_ctx_t *ctx, mg_error_t *error)
{
    mg_buf_t sql;
    bool ok = false;
    char count[32], size[32];
    const char *fidelity = fidelity_choices[ctx->o->fidelity];
    mg_buf_t opts;

    mg_buf_init(&sql, 4096);
    mg_buf_init(&opts, 1 << 20);
    /* the options that shape the data, for later commands and for humans */
    if (!mg_buf_printf(&opts, error,
                       "{\"census\":\"%s\",\"sample_size\":%lld,\"include_count\":%zu,"
                       "\"exclude_count\":%zu}",
                       census_choices[ctx->o->census_mode], (long long)ctx->o->sample_size,
                       ctx->o->include.count, ctx->o->exclude.count))
        goto done;
    {
        const char *params[7] = {MG_VERSION_STRING, ctx->src.uri_shown,    ctx->src.version,
                                 ctx->src.set_name, ctx->o->target_schema, fidelity,
                                 opts.data};
        if (!mg_buf_append_str(&sql, "INSERT INTO ", error) ||
            !mg_schema_quote_ident(ctx->o->state_schema, &sql, error) ||
            !mg_buf_append_str(&sql,
                               ".migration (tool_version, source_uri, source_version, "
                               "source_set_name, target_schema, type_fidelity, options) "
                               "VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6, $7::jsonb)",
                               error))
            goto done;
        PGresult *res = mg_migrator__target_query(ctx->pg, sql.data, 7, params, error);
        if (res == NULL)
            goto done;
        PQclear(res);
    }
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        snprintf(count, sizeof(count), "%lld", (long long)mg_schema_census_count(pc->census));
        snprintf(size, sizeof(size), "%lld", (long long)mg_schema_census_size_bytes(pc->census));
        const char *p1[7] = {
            pc->db, pc->coll, pc->name->schema, pc->name->table, mg_schema_key_type_name(pc->key),
            count,  size};
        mg_buf_reset(&sql);
        if (!mg_buf_append_str(&sql, "INSERT INTO ", error) ||
            !mg_schema_quote_ident(ctx->o->state_schema, &sql, error) ||
            !mg_buf_append_str(&sql,
                               ".collections (db, coll, schema_name, table_name, key_type, "
                               "doc_count, size_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                               error))
            goto done;
        PGresult *res = mg_migrator__target_query(ctx->pg, sql.data, 7, p1, error);
        if (res == NULL)
            goto done;
        PQclear(res);

        const char *p2[3] = {pc->db, pc->coll, pc->census_json};
        mg_buf_reset(&sql);
        if (!mg_buf_append_str(&sql, "INSERT INTO ", error) ||
            !mg_schema_quote_ident(ctx->o->state_schema, &sql, error) ||
            !mg_buf_append_str(&sql, ".census (db, coll, report) VALUES ($1, $2, $3::jsonb)",
                               error))
            goto done;
        res = mg_migrator__target_query(ctx->pg, sql.data, 3, p2, error);
        if (res == NULL)
            goto done;
        PQclear(res);

        for (size_t k = 0; k < pc->nindexes; k++) {
            mg_schema_index_plan_t *ip = &pc->indexes[k];
            const char *build = ip->status == MG_SCHEMA_INDEX_PRIMARY          ? "built"
                                : ip->status == MG_SCHEMA_INDEX_NOT_TRANSLATED ? "skipped"
                                                                               : "pending";
            const char *p3[11] = {pc->db,
                                  pc->coll,
                                  ip->mongo_name,
                                  ip->pg_name,
                                  ip->key_json,
                                  ip->unique ? "true" : "false",
                                  mg_schema_index_status_name(ip->status),
                                  build,
                                  ip->sql,
                                  ip->note,
                                  ip->suggestion};
            mg_buf_reset(&sql);
            if (!mg_buf_append_str(&sql, "INSERT INTO ", error) ||
                !mg_schema_quote_ident(ctx->o->state_schema, &sql, error) ||
                !mg_buf_append_str(&sql,
                                   ".indexes (db, coll, mongo_name, pg_name, key_spec, "
                                   "is_unique, translation, build_status, sql, note, suggestion) "
                                   "VALUES ($1, $2, $3, $4, $5::jsonb, $6::boolean, $7, $8, $9, "
                                   "$10, $11)",
                                   error))
                goto done;
            res = mg_migrator__target_query(ctx->pg, sql.data, 11, p3, error);
            if (res == NULL)
                goto done;
            PQclear(res);
        }
    }
    ok = true;
done:
    mg_buf_cleanup(&sql);
    mg_buf_cleanup(&opts);
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
    if (!mg_migrator__target_exec(ctx->pg, "BEGIN", error))
        goto done;
    if (ctx->o->reset && ctx->state_exists && !reset_ddl(ctx, &ddl, error))
        goto rollback;
    if (!build_ddl(ctx, true, &ddl, error))
        goto rollback;
    /* one multi-statement string: simple query protocol, one transaction */
    if (!mg_migrator__target_exec(ctx->pg, ddl.data, error))
        goto rollback;
    if (!record_plan(ctx, error))
        goto rollback;
    snprintf(event, sizeof(event), "{\"collections\":%zu,\"reset\":%s}", ctx->ncolls,
             ctx->o->reset ? "true" : "false");
    if (!mg_migrator__state_event(ctx->pg, ctx->o->state_schema, "init", event, error))
        goto rollback;
    if (!mg_migrator__target_exec(ctx->pg, "COMMIT", error))
        goto rollback;
    ok = true;
    goto done;
rollback : {
    PGresult *r = PQexec(ctx->pg, "ROLLBACK");
    PQclear(r);
}
done:
    mg_buf_cleanup(&ddl);
    return ok;
}

/* ---- output ---- */

static void
gs(yajl_gen g, const char *s)
{
    if (s == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void
gkv(yajl_gen g, const char *k, const char *v)
{
    gs(g, k);
    gs(g, v);
}

static void
print_json(init_ctx_t *ctx, const char *outcome, const mg_buf_t *ddl)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;

    yajl_gen_map_open(g);
    gkv(g, "outcome", outcome);
    gkv(g, "source", ctx->src.uri_shown);
    gkv(g, "source_version", ctx->src.version);
    gkv(g, "source_set_name", ctx->src.set_name[0] ? ctx->src.set_name : NULL);
    gkv(g, "target_version", ctx->pg_version);
    gkv(g, "state_schema", ctx->o->state_schema);
    gkv(g, "type_fidelity", fidelity_choices[ctx->o->fidelity]);
    gs(g, "collections");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < ctx->ncolls; i++) {
        plan_coll_t *pc = &ctx->colls[i];
        yajl_gen_map_open(g);
        gkv(g, "db", pc->db);
        gkv(g, "collection", pc->coll);
        gkv(g, "schema", pc->name->schema);
        gkv(g, "table", pc->name->table);
        gs(g, "renamed");
        yajl_gen_bool(g, pc->name->table_renamed || pc->name->schema_renamed);
        gkv(g, "key_type", mg_schema_key_type_name(pc->key));
        gkv(g, "key_sql_type", mg_schema_key_type_sql(pc->key));
        gs(g, "documents");
        yajl_gen_integer(g, mg_schema_census_count(pc->census));
        gs(g, "size_bytes");
        yajl_gen_integer(g, mg_schema_census_size_bytes(pc->census));
        if (pc->recorded != NULL)
            gkv(g, "recorded", pc->recorded);
        gs(g, "census");
        /* already JSON: embed it as is */
        yajl_gen_number(g, pc->census_json, strlen(pc->census_json));
        gs(g, "indexes");
        yajl_gen_array_open(g);
        for (size_t k = 0; k < pc->nindexes; k++) {
            mg_schema_index_plan_t *ip = &pc->indexes[k];
            yajl_gen_map_open(g);
            gkv(g, "name", ip->mongo_name);
            gkv(g, "pg_name", ip->pg_name);
            gkv(g, "translation", mg_schema_index_status_name(ip->status));
            gkv(g, "sql", ip->statement); /* _migrate.indexes.sql: ip->sql, which builds it */
            gkv(g, "note", ip->note);
            gkv(g, "suggestion", ip->suggestion);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    gs(g, "skipped");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < ctx->nskipped; i++) {
        yajl_gen_map_open(g);
        gkv(g, "namespace", ctx->skipped[i].ns);
        gkv(g, "reason", ctx->skipped[i].reason);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    gs(g, "no_longer_planned");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < ctx->nstale; i++)
        gs(g, ctx->stale[i]);
    yajl_gen_array_close(g);
    if (ddl != NULL)
        gkv(g, "ddl", ddl->data);
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

    printf("source  %s (%s%s%s, MongoDB %s)\n", ctx->src.uri_shown,
           ctx->src.set_name[0] ? "replica set \"" : "not a replica set", ctx->src.set_name,
           ctx->src.set_name[0] ? "\"" : "", ctx->src.version);
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
               mg_migrator__human_count(mg_schema_census_count(pc->census), a, sizeof(a)),
               mg_migrator__human_bytes(mg_schema_census_size_bytes(pc->census), b, sizeof(b)),
               mg_schema_key_type_name(pc->key), idx, pc->recorded ? "  " : "",
               pc->recorded ? pc->recorded : "");
    }
    printf("  total: %zu collections, %s documents, %s\n", ctx->ncolls,
           mg_migrator__human_count(docs, a, sizeof(a)),
           mg_migrator__human_bytes(bytes, b, sizeof(b)));

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
    if (ctx->src.set_name[0] == '\0') {
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

static void
print_usage(FILE *stream)
{
    fprintf(stream, "usage: migrate init --source URI --target URI [options]\n\n"
                    "Take a census of the MongoDB source, create one JSONB table per "
                    "collection and\nthe state schema on the PostgreSQL target, and print the "
                    "plan (docs/init.md).\n\noptions:\n");
    mg_config_print_help(init_options, N_INIT_OPTIONS, "MIGRATE_", stream);
    fprintf(stream, "  %-34s %s\n", "   --config FILE",
            "read options from a JSON file [env "
            "MIGRATE_CONFIG]");
}

int
mg_migrator_cmd_init(const mg_cli_command_t *command, int argc, char **argv)
{
    init_opts_t o;
    init_ctx_t ctx;
    mg_config_t *config = NULL;
    mg_error_t error;
    mg_buf_t ddl;
    int first = 0, rc = MG_EXIT_FAILURE;
    const char *outcome = NULL;
    bool print_ddl = false;

    memset(&o, 0, sizeof(o));
    memset(&ctx, 0, sizeof(ctx));
    mg_error_clear(&error);
    mg_buf_init(&ddl, SQL_CAP);
    ctx.o = &o;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return MG_EXIT_OK;
        }
    }
    config = mg_config_new(init_options, N_INIT_OPTIONS, &o, "MIGRATE_");
    if (config == NULL) {
        fprintf(stderr, "migrate init: out of memory\n");
        return MG_EXIT_FAILURE;
    }
    if (!mg_config_load(config, argc, argv, NULL, &first, &error))
        goto fail;
    if (first < argc) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "unexpected argument \"%s\"", argv[first]);
        goto fail;
    }
    if (o.reset && !o.yes && !o.dry_run) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "--reset drops the tables and state of the earlier init; add --yes to "
                     "confirm");
        goto fail;
    }
    if (!check_patterns(&o.include, "include", &error) ||
        !check_patterns(&o.exclude, "exclude", &error) ||
        !mg_schema_key_choice_check((const char *const *)o.key_type.items, o.key_type.count,
                                    &error))
        goto fail;
    if (o.target_schema != NULL) {
        char check[MG_SCHEMA_IDENT_MAX + 1];
        if (mg_schema_ident_sanitize(o.target_schema, check)) {
            mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                         "invalid value for option \"target_schema\": \"%s\" is not a plain "
                         "lower-case identifier (try \"%s\")",
                         o.target_schema, check);
            goto fail;
        }
    }

    /* source */
    if (!mg_migrator__source_open(o.source, &ctx.src, &error))
        goto fail;
    MG_LOG_EVENT(MG_LOG_INFO, "init", NULL,
                 MG_LOG_FIELDS(MG_LOG_STR("source_version", ctx.src.version),
                               MG_LOG_STR("set_name", ctx.src.set_name)),
                 "connected to source %s", o.source);
    if (!list_namespaces(&ctx, &error))
        goto fail;
    for (size_t i = 0; i < ctx.ncolls; i++) {
        plan_coll_t *pc = &ctx.colls[i];
        if (!take_census(&ctx, pc, &error))
            goto fail;
        MG_LOG_EVENT(MG_LOG_INFO, "init", "init.census",
                     MG_LOG_FIELDS(MG_LOG_STR("collection", pc->coll), MG_LOG_STR("db", pc->db),
                                   MG_LOG_INT("documents", mg_schema_census_count(pc->census)),
                                   MG_LOG_STR("key_type", mg_schema_key_type_name(pc->key)),
                                   MG_LOG_UINT("done", i + 1), MG_LOG_UINT("of", ctx.ncolls)),
                     "census of %s.%s done (%zu of %zu)", pc->db, pc->coll, i + 1, ctx.ncolls);
    }

    /* names, census reports, index plans */
    ctx.naming = mg_schema_naming_new(o.target_schema);
    if (ctx.naming == NULL) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < ctx.ncolls; i++)
        if (!mg_schema_naming_add(ctx.naming, ctx.colls[i].db, ctx.colls[i].coll, &error))
            goto fail;
    if (!mg_schema_naming_reserve(ctx.naming, o.state_schema, &error) ||
        !mg_schema_naming_resolve(ctx.naming, &error))
        goto fail;
    for (size_t i = 0; i < ctx.ncolls; i++) {
        plan_coll_t *pc = &ctx.colls[i];
        mg_buf_t json;
        pc->name = mg_schema_naming_find(ctx.naming, pc->db, pc->coll);
        mg_buf_init(&json, 16 * 1024 * 1024);
        if (!mg_schema_census_to_json(pc->census, &json, &error)) {
            mg_buf_cleanup(&json);
            goto fail;
        }
        pc->census_json = json.data; /* steal */
        if (pc->census_json == NULL && (pc->census_json = strdup("{}")) == NULL)
            goto fail;
        if (!plan_indexes(&ctx, pc, &error) ||
            !mg_schema_naming_add_indexes(ctx.naming, pc->db, pc->coll, pc->indexes, pc->nindexes,
                                          &error))
            goto fail;
    }
    if (!mg_schema_naming_resolve_indexes(ctx.naming, &error)) /* unique in each schema */
        goto fail;

    /* target */
    ctx.pg = mg_migrator__target_connect(o.target, &error);
    if (ctx.pg == NULL)
        goto fail;
    if (!check_target(&ctx, &error))
        goto fail;

    if (ctx.state_exists && !o.reset) {
        /* re-run: report, change nothing */
        if (!compare_with_state(&ctx, &error))
            goto fail;
        outcome = ctx.plan_matches
                      ? "already initialised: the target matches this plan; nothing to do"
                      : "already initialised, and this plan differs from the recorded one "
                        "(see above); nothing was changed. To start again: migrate init "
                        "--reset --yes (drops the migrated tables)";
        rc = ctx.plan_matches ? MG_EXIT_OK : MG_EXIT_STATE;
    } else {
        if (!ctx.state_exists && !check_unrelated_tables(&ctx, &error))
            goto fail;
        if (o.dry_run) {
            if (o.reset && ctx.state_exists && !reset_ddl(&ctx, &ddl, &error))
                goto fail;
            if (!build_ddl(&ctx, true, &ddl, &error))
                goto fail;
            print_ddl = true;
            outcome = "dry run: nothing was changed";
        } else {
            if (!apply(&ctx, &error))
                goto fail;
            outcome = "initialised; next: migrate sync";
            MG_LOG_EVENT(MG_LOG_NOTICE, "init", "init.done",
                         MG_LOG_FIELDS(MG_LOG_UINT("collections", ctx.ncolls),
                                       MG_LOG_STR("state_schema", o.state_schema)),
                         "target initialised");
        }
        rc = MG_EXIT_OK;
    }
    if (o.json)
        print_json(&ctx, outcome, print_ddl ? &ddl : NULL);
    else
        print_text(&ctx, outcome, print_ddl ? &ddl : NULL);
    goto done;

fail:
    if (!mg_error_is_set(&error))
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    mg_log_error(MG_LOG_ERROR, "init", &error);
    fprintf(stderr, "migrate init: %s\n", error.message);
    rc = mg_exit_code_for_error(&error);
done:
    mg_buf_cleanup(&ddl);
    ctx_cleanup(&ctx);
    mg_config_destroy(config);
    (void)command;
    return rc;
}
