/*
 * migrator/src/cli_validate.c - `migrate validate`: checksums of every
 * collection (or of the documents changed since the last check) on both
 * sides, the differences named and recorded in the state schema, reports.
 *
 * Steps: options -> target, state, collections -> the run row -> per
 * collection: mg_cutover_check_collection (--full) or mg_cutover_check_ids
 * over _migrate.changed_docs up to the checkpoint plus the open mismatches
 * (--changed) -> ONE transaction: results, mismatches (first seen,
 * persisted), resolved mismatches, the covered changed_docs rows deleted,
 * the run row -> terminal summary, --report-json, --report-html. The rule
 * for the exit code is in docs/validate.md.
 */
#include "migrator_internal.h"
#include "mg/cutover.h"

#include <errno.h>
#include <signal.h>
#include <time.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#define REPORT_CAP (512 * 1024 * 1024)

typedef struct {
    char *source;
    char *target;
    char *state_schema;
    mg_strlist_t collections;
    bool full;
    bool changed;
    int64_t segments;
    int64_t max_named;
    int64_t max_fields;
    int64_t batch_docs;
    int64_t drilldown_bytes;
    int64_t source_threads;
    int fail_on;
    char *report_json;
    char *report_html;
    bool json;
    char *shadow;
    bool shadow_from_profiler;
    int64_t shadow_repeat;
    int64_t profiler_max;
    int64_t every_ms;
    int64_t max_runs;
} validate_opts_t;

static const char *const fail_on_choices[] = {"persistent", "any", NULL};

static const mg_config_option_t validate_options[] = {
    {.name = "source",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, source),
     .required = true,
     .metavar = "URI",
     .help = "MongoDB connection string of the source"},
    {.name = "target",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, target),
     .required = true,
     .metavar = "URI",
     .help = "PostgreSQL connection string of the target (URI or key=value)"},
    {.name = "state_schema",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, state_schema),
     .default_value = MG_MIGRATOR_STATE_SCHEMA,
     .metavar = "NAME",
     .help = "schema holding the tool's state on the target"},
    {.name = "collections",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(validate_opts_t, collections),
     .metavar = "DB.COLL",
     .help = "collections to check: db.coll or db.* (default: all migrated)"},
    {.name = "full",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(validate_opts_t, full),
     .default_value = "false",
     .help =
         "checksum every document (what runs when neither --changed nor --shadow alone is given)"},
    {.name = "changed",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(validate_opts_t, changed),
     .default_value = "false",
     .help = "re-check only documents changed up to the change-stream checkpoint, and open "
             "mismatches"},
    {.name = "segments",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, segments),
     .default_value = "1024",
     .min = 1,
     .max = 16777216,
     .metavar = "N",
     .help = "checksum segments (hash buckets of _id) per collection"},
    {.name = "max_named",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, max_named),
     .default_value = "1000",
     .min = 1,
     .max = 10000000,
     .metavar = "N",
     .help = "differing _ids named per collection (all are counted)"},
    {.name = "max_fields",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, max_fields),
     .default_value = "20",
     .min = 1,
     .max = 100000,
     .metavar = "N",
     .help = "differing fields named per _id"},
    {.name = "batch_docs",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, batch_docs),
     .default_value = "2000",
     .min = 1,
     .max = 1000000,
     .metavar = "N",
     .help = "source cursor batch size"},
    {.name = "drilldown_memory",
     .type = MG_CONFIG_SIZE,
     .offset = offsetof(validate_opts_t, drilldown_bytes),
     .default_value = "256MB",
     .min = 1024 * 1024,
     .max = INT64_C(1) << 40,
     .metavar = "SIZE",
     .help = "memory for the documents of mismatching segments"},
    {.name = "source_threads",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, source_threads),
     .default_value = "2",
     .min = 1,
     .max = 64,
     .metavar = "N",
     .help = "source reader threads per collection (over the copy's partitions)"},
    {.name = "every",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(validate_opts_t, every_ms),
     .default_value = "0",
     .min = 0,
     .max = INT64_C(86400000),
     .metavar = "DURATION",
     .help = "with --changed: run again after this pause, until SIGINT/SIGTERM (while sync "
             "--follow runs)"},
    {.name = "max_runs",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, max_runs),
     .default_value = "0",
     .min = 0,
     .max = INT64_C(1000000000),
     .metavar = "N",
     .help = "with --every: stop after N runs (0: until stopped)"},
    {.name = "fail_on",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(validate_opts_t, fail_on),
     .default_value = "persistent",
     .choices = fail_on_choices,
     .metavar = "WHEN",
     .help = "exit 5 on a mismatch that persisted across runs, or on any mismatch"},
    {.name = "report_json",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, report_json),
     .metavar = "FILE",
     .help = "write the report as JSON to FILE"},
    {.name = "report_html",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, report_html),
     .metavar = "FILE",
     .help = "write the report as one self-contained HTML file"},
    {.name = "json",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(validate_opts_t, json),
     .default_value = "false",
     .help = "print the report as JSON on stdout instead of the summary"},
    {.name = "shadow",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, shadow),
     .metavar = "QUERIES.jsonl",
     .help = "run these finds on both sides and compare (docs/shadow-reads.md); alone, without "
             "--full or --changed, no checksums run"},
    {.name = "shadow_from_profiler",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(validate_opts_t, shadow_from_profiler),
     .default_value = "false",
     .help = "shadow-read the find commands recorded in the source's system.profile"},
    {.name = "shadow_repeat",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, shadow_repeat),
     .default_value = "5",
     .min = 1,
     .max = 1000,
     .metavar = "N",
     .help = "runs per side and shadow query (latency samples)"},
    {.name = "profiler_max",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, profiler_max),
     .default_value = "1000",
     .min = 1,
     .max = 1000000,
     .metavar = "N",
     .help = "newest system.profile finds read per database"},
};
#define N_VALIDATE_OPTIONS (sizeof(validate_options) / sizeof(validate_options[0]))

/* One collection of the run. */
typedef struct {
    char *db;
    char *coll;
    char *schema;
    char *table;
    mg_schema_key_type_t key;
    char **ids; /* --changed: key texts to re-check */
    size_t nids;
    size_t capids;
    bson_t **filters; /* the copy's partitions, then the rest (source scan split) */
    size_t nfilters;
    mg_cutover_result_t result;
    bool checked;
    bool failed;
    char error[MG_ERROR_MESSAGE_SIZE];
} val_coll_t;

typedef struct {
    validate_opts_t *o;
    PGconn *pg;
    char *qs; /* quoted state schema */
    mg_schema_fidelity_t fidelity;
    val_coll_t *colls;
    size_t ncolls;
    int64_t run_id;
    char started_at[40];
    char finished_at[40];
    bool have_ckpt;
    char ckpt_ts[24];
    char ckpt_inc[24];
    int64_t persistent;
    int64_t mismatches;
    int64_t docs;
    bool any_failed;
    mg_error_t first_failure;
    bool checksums; /* false: shadow reads only */
    mg_cutover_shadow_result_t *shadow;
    size_t nshadow;
    bool shadow_ran;
    int64_t shadow_mismatches;
} val_ctx_t;

static void
ctx_cleanup(val_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->ncolls; i++) {
        val_coll_t *c = &ctx->colls[i];
        free(c->db);
        free(c->coll);
        free(c->schema);
        free(c->table);
        for (size_t k = 0; k < c->nids; k++)
            free(c->ids[k]);
        free(c->ids);
        for (size_t k = 0; k < c->nfilters; k++)
            bson_destroy(c->filters[k]);
        free(c->filters);
        mg_cutover_result_cleanup(&c->result);
    }
    free(ctx->colls);
    free(ctx->qs);
    mg_cutover_shadow_results_free(ctx->shadow, ctx->nshadow);
    if (ctx->pg != NULL)
        PQfinish(ctx->pg);
}

/* sql builds a statement with every "@" replaced by the quoted state schema. */
static bool
sql(const val_ctx_t *ctx, const char *tmpl, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_reset(out);
    for (const char *p = tmpl; *p; p++) {
        bool ok =
            *p == '@' ? mg_buf_append_str(out, ctx->qs, error) : mg_buf_append(out, p, 1, error);
        if (!ok)
            return false;
    }
    return true;
}

static PGresult *
query(val_ctx_t *ctx, const char *tmpl, int n, const char *const *params, mg_error_t *error)
{
    mg_buf_t s;
    PGresult *res = NULL;

    mg_buf_init(&s, 64 * 1024);
    if (sql(ctx, tmpl, &s, error))
        res = mg_migrator__target_query(ctx->pg, s.data, n, params, error);
    mg_buf_cleanup(&s);
    return res;
}

static bool
exec_q(val_ctx_t *ctx, const char *tmpl, int n, const char *const *params, mg_error_t *error)
{
    PGresult *res = query(ctx, tmpl, n, params, error);

    PQclear(res);
    return res != NULL;
}

static bool
selected(const validate_opts_t *o, const char *db, const char *coll)
{
    char ns[1024];

    if (o->collections.count == 0)
        return true;
    snprintf(ns, sizeof(ns), "%s.%s", db, coll);
    for (size_t i = 0; i < o->collections.count; i++)
        if (fnmatch(o->collections.items[i], ns, 0) == 0)
            return true;
    return false;
}

/* load reads the fidelity, the collections and (--changed) the documents to re-check. */
static bool
load(val_ctx_t *ctx, mg_error_t *error)
{
    PGresult *res;
    bool *hits = calloc(ctx->o->collections.count + 1, sizeof(bool));

    if (hits == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    res = query(ctx, "SELECT type_fidelity FROM @.migration WHERE id = 1", 0, NULL, error);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) != 1) {
        PQclear(res);
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                     "state schema \"%s\" has no migration row: run migrate init first",
                     ctx->o->state_schema);
        goto fail;
    }
    mg_schema_fidelity_parse(PQgetvalue(res, 0, 0), &ctx->fidelity);
    PQclear(res);

    res = query(ctx,
                "SELECT db, coll, schema_name, table_name, key_type FROM @.collections "
                "ORDER BY db, coll",
                0, NULL, error);
    if (res == NULL)
        goto fail;
    ctx->colls = calloc((size_t)PQntuples(res) + 1, sizeof(val_coll_t));
    if (ctx->colls == NULL) {
        PQclear(res);
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto fail;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        const char *db = PQgetvalue(res, r, 0), *coll = PQgetvalue(res, r, 1);
        if (!selected(ctx->o, db, coll))
            continue;
        for (size_t i = 0; i < ctx->o->collections.count; i++) {
            char ns[1024];
            snprintf(ns, sizeof(ns), "%s.%s", db, coll);
            if (fnmatch(ctx->o->collections.items[i], ns, 0) == 0)
                hits[i] = true;
        }
        val_coll_t *c = &ctx->colls[ctx->ncolls++];
        c->db = strdup(db);
        c->coll = strdup(coll);
        c->schema = strdup(PQgetvalue(res, r, 2));
        c->table = strdup(PQgetvalue(res, r, 3));
        mg_schema_key_type_parse(PQgetvalue(res, r, 4), &c->key);
        if (c->db == NULL || c->coll == NULL || c->schema == NULL || c->table == NULL) {
            PQclear(res);
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto fail;
        }
    }
    PQclear(res);
    for (size_t i = 0; i < ctx->o->collections.count; i++) {
        if (!hits[i]) {
            mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                         "collection pattern \"%s\" matches no migrated collection",
                         ctx->o->collections.items[i]);
            goto fail;
        }
    }

    /* the change-stream checkpoint bounds which changed_docs rows a run covers */
    res = query(ctx,
                "SELECT cluster_time_ts, cluster_time_inc FROM @.checkpoint WHERE id = 1 AND "
                "cluster_time_ts IS NOT NULL",
                0, NULL, error);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) == 1) {
        ctx->have_ckpt = true;
        snprintf(ctx->ckpt_ts, sizeof(ctx->ckpt_ts), "%s", PQgetvalue(res, 0, 0));
        snprintf(ctx->ckpt_inc, sizeof(ctx->ckpt_inc), "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    free(hits);
    return true;
fail:
    free(hits);
    return false;
}

static bool
push_id(val_coll_t *c, const char *id, mg_error_t *error)
{
    for (size_t k = 0; k < c->nids; k++)
        if (strcmp(c->ids[k], id) == 0)
            return true;
    if (c->nids == c->capids) {
        size_t cap = c->capids ? c->capids * 2 : 64;
        char **grown = realloc(c->ids, cap * sizeof(*grown));
        if (grown == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        c->ids = grown;
        c->capids = cap;
    }
    if ((c->ids[c->nids] = strdup(id)) == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    c->nids++;
    return true;
}

static val_coll_t *
find_coll(val_ctx_t *ctx, const char *db, const char *coll)
{
    for (size_t i = 0; i < ctx->ncolls; i++)
        if (strcmp(ctx->colls[i].db, db) == 0 && strcmp(ctx->colls[i].coll, coll) == 0)
            return &ctx->colls[i];
    return NULL;
}

/* load_changed collects, per collection, the changed documents and the open mismatches. */
static bool
load_changed(val_ctx_t *ctx, mg_error_t *error)
{
    PGresult *res;

    if (ctx->have_ckpt) {
        const char *p[2] = {ctx->ckpt_ts, ctx->ckpt_inc};
        res = query(ctx,
                    "SELECT DISTINCT db, coll, doc_id FROM @.changed_docs WHERE (cluster_time_ts, "
                    "cluster_time_inc) <= ($1::bigint, $2::bigint) ORDER BY db, coll, doc_id",
                    2, p, error);
        if (res == NULL)
            return false;
        for (int r = 0; r < PQntuples(res); r++) {
            val_coll_t *c = find_coll(ctx, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
            if (c != NULL && !push_id(c, PQgetvalue(res, r, 2), error)) {
                PQclear(res);
                return false;
            }
        }
        PQclear(res);
    }
    res = query(ctx,
                "SELECT db, coll, doc_id FROM @.validation_mismatches WHERE resolved_at IS NULL "
                "ORDER BY db, coll, doc_id",
                0, NULL, error);
    if (res == NULL)
        return false;
    for (int r = 0; r < PQntuples(res); r++) {
        val_coll_t *c = find_coll(ctx, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
        if (c != NULL && !push_id(c, PQgetvalue(res, r, 2), error)) {
            PQclear(res);
            return false;
        }
    }
    PQclear(res);
    return true;
}

static const char *
run_mode(const val_ctx_t *ctx)
{
    return !ctx->checksums ? "shadow" : (ctx->o->changed ? "changed" : "full");
}

/* add_alias records a $type alias once. */
static void
add_alias(bson_t *aliases, const char *alias, int *n)
{
    bson_iter_t it;
    char key[16];

    if (bson_iter_init(&it, aliases))
        while (bson_iter_next(&it))
            if (BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), alias) == 0)
                return;
    snprintf(key, sizeof(key), "%d", (*n)++);
    BSON_APPEND_UTF8(aliases, key, alias);
}

/*
 * load_filters splits the source scan of c like the copy did: one filter
 * per partition of _migrate.partitions (each names its _id types), then
 * {_id: {$not: {$type: [every type named]}}} for documents of a type the
 * plan did not see (inserted later). No partitions: one scan of {}.
 */
static bool
load_filters(val_ctx_t *ctx, val_coll_t *c, mg_error_t *error)
{
    const char *p[2] = {c->db, c->coll};
    PGresult *res = query(ctx,
                          "SELECT encode(filter, 'base64') FROM @.partitions WHERE db = $1 AND "
                          "coll = $2 ORDER BY seq",
                          2, p, error);
    bson_t aliases = BSON_INITIALIZER;
    int naliases = 0;
    bool ok = res != NULL;

    if (!ok)
        return false;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return true;
    }
    c->filters = calloc((size_t)PQntuples(res) + 1, sizeof(bson_t *));
    if (c->filters == NULL) {
        PQclear(res);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    for (int r = 0; ok && r < PQntuples(res); r++) {
        const char *b64 = PQgetvalue(res, r, 0);
        size_t cap = strlen(b64), n = 0;
        uint8_t *raw = malloc(cap + 1);
        unsigned acc = 0;
        int bits = 0;
        for (const char *q = b64; raw != NULL && *q; q++) {
            const char *alphabet =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            const char *pos = strchr(alphabet, *q);
            if (*q == '=' || *q == '\n' || pos == NULL)
                continue;
            acc = (acc << 6) | (unsigned)(pos - alphabet);
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                raw[n++] = (uint8_t)(acc >> bits);
            }
        }
        bson_t *f = raw != NULL ? bson_new_from_data(raw, n) : NULL;
        free(raw);
        if (f == NULL) {
            ok = mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                              "partition %d of %s.%s: the stored filter is not BSON", r, c->db,
                              c->coll);
            break;
        }
        c->filters[c->nfilters++] = f;
        bson_iter_t it, cond;
        if (bson_iter_init_find(&it, f, "_id") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
            bson_iter_recurse(&it, &cond) && bson_iter_find(&cond, "$type")) {
            if (BSON_ITER_HOLDS_UTF8(&cond)) {
                add_alias(&aliases, bson_iter_utf8(&cond, NULL), &naliases);
            } else if (BSON_ITER_HOLDS_ARRAY(&cond)) {
                bson_iter_t a;
                bson_iter_recurse(&cond, &a);
                while (bson_iter_next(&a))
                    if (BSON_ITER_HOLDS_UTF8(&a))
                        add_alias(&aliases, bson_iter_utf8(&a, NULL), &naliases);
            }
        }
    }
    PQclear(res);
    if (ok && naliases > 0) {
        bson_t *rest = bson_new();
        bson_t idc, notc;
        bson_append_document_begin(rest, "_id", 3, &idc);
        bson_append_document_begin(&idc, "$not", 4, &notc);
        bson_append_array(&notc, "$type", 5, &aliases);
        bson_append_document_end(&idc, &notc);
        bson_append_document_end(rest, &idc);
        c->filters[c->nfilters++] = rest;
    }
    bson_destroy(&aliases);
    return ok;
}

static bool
start_run(val_ctx_t *ctx, mg_error_t *error)
{
    const char *p[4] = {run_mode(ctx), ctx->have_ckpt ? ctx->ckpt_ts : NULL,
                        ctx->have_ckpt ? ctx->ckpt_inc : NULL, NULL};
    char opts[256];
    PGresult *res;

    snprintf(opts, sizeof(opts), "{\"segments\": %lld, \"fail_on\": \"%s\"}",
             (long long)ctx->o->segments, fail_on_choices[ctx->o->fail_on]);
    p[3] = opts;
    res = query(ctx,
                "INSERT INTO @.validation_runs (mode, checkpoint_ts, checkpoint_inc, options) "
                "VALUES ($1, $2::bigint, $3::bigint, $4::jsonb) RETURNING id, "
                "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                4, p, error);
    if (res == NULL)
        return false;
    ctx->run_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(ctx->started_at, sizeof(ctx->started_at), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return true;
}

/* fields_json renders a mismatch's field diffs as a JSON array. */
static char *
fields_json(const mg_cutover_mismatch_t *m)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *text;
    size_t len;
    char *out;

    if (g == NULL)
        return NULL;
    yajl_gen_array_open(g);
    for (size_t i = 0; i < m->ndiffs; i++) {
        const mg_cutover_field_diff_t *d = &m->diffs[i];
        const char *kv[5][2] = {{"path", d->path},
                                {"source", d->source_value},
                                {"source_type", d->source_type},
                                {"target", d->target_value},
                                {"target_type", d->target_type}};
        yajl_gen_map_open(g);
        for (int k = 0; k < 5; k++) {
            yajl_gen_string(g, (const unsigned char *)kv[k][0], strlen(kv[k][0]));
            if (kv[k][1] == NULL)
                yajl_gen_null(g);
            else
                yajl_gen_string(g, (const unsigned char *)kv[k][1], strlen(kv[k][1]));
        }
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_get_buf(g, &text, &len);
    out = strndup((const char *)text, len);
    yajl_gen_free(g);
    return out;
}

/* text_array renders strings as a PostgreSQL text[] literal. */
static bool
text_array(char *const *items, size_t n, mg_buf_t *out, mg_error_t *error)
{
    bool ok = mg_buf_append_str(out, "{", error);

    for (size_t i = 0; ok && i < n; i++) {
        ok = mg_buf_append_str(out, i ? ",\"" : "\"", error);
        for (const char *p = items[i]; ok && *p; p++) {
            if (*p == '"' || *p == '\\')
                ok = mg_buf_append(out, "\\", 1, error);
            ok = ok && mg_buf_append(out, p, 1, error);
        }
        ok = ok && mg_buf_append_str(out, "\"", error);
    }
    return ok && mg_buf_append_str(out, "}", error);
}

static bool
record_coll(val_ctx_t *ctx, val_coll_t *c, mg_error_t *error)
{
    const mg_cutover_result_t *r = &c->result;
    char run[24], sd[24], td[24], seg[24], segm[24], mi[24], ex[24], di[24], el[32];
    const char *status =
        c->failed ? "failed" : (r->missing + r->extra + r->different > 0 ? "mismatch" : "clean");

    snprintf(run, sizeof(run), "%lld", (long long)ctx->run_id);
    snprintf(sd, sizeof(sd), "%lld", (long long)r->source_docs);
    snprintf(td, sizeof(td), "%lld", (long long)r->target_docs);
    snprintf(seg, sizeof(seg), "%u", r->segments);
    snprintf(segm, sizeof(segm), "%u", r->segments_mismatched);
    snprintf(mi, sizeof(mi), "%lld", (long long)r->missing);
    snprintf(ex, sizeof(ex), "%lld", (long long)r->extra);
    snprintf(di, sizeof(di), "%lld", (long long)r->different);
    snprintf(el, sizeof(el), "%.6f", r->elapsed_s);
    const char *p[13] = {run,
                         c->db,
                         c->coll,
                         status,
                         sd,
                         td,
                         seg,
                         segm,
                         mi,
                         ex,
                         di,
                         el,
                         c->failed ? c->error : NULL};
    if (!exec_q(ctx,
                "INSERT INTO @.validation_results (run_id, db, coll, status, source_docs, "
                "target_docs, segments, segments_mismatched, missing, extra, different, "
                "elapsed_s, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                "$13)",
                13, p, error))
        return false;
    if (c->failed)
        return true;

    for (size_t i = 0; i < r->nmismatches; i++) {
        mg_cutover_mismatch_t *m = &r->mismatches[i];
        char *fields = fields_json(m);
        const char *q[7] = {
            c->db,  c->coll, m->id_json, m->doc_id, mg_cutover_mismatch_kind_name(m->kind),
            fields, run};
        PGresult *res;
        if (fields == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        res = query(
            ctx,
            "INSERT INTO @.validation_mismatches AS v (db, coll, id_json, doc_id, kind, fields, "
            "first_seen_run, last_seen_run) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $7) "
            "ON CONFLICT (db, coll, id_json) DO UPDATE SET doc_id = EXCLUDED.doc_id, "
            "kind = EXCLUDED.kind, fields = EXCLUDED.fields, "
            "persisted = v.resolved_at IS NULL, "
            "seen_runs = CASE WHEN v.resolved_at IS NULL THEN v.seen_runs + 1 ELSE 1 END, "
            "first_seen_run = CASE WHEN v.resolved_at IS NULL THEN v.first_seen_run "
            "ELSE EXCLUDED.first_seen_run END, "
            "first_seen_at = CASE WHEN v.resolved_at IS NULL THEN v.first_seen_at ELSE now() END, "
            "last_seen_run = EXCLUDED.last_seen_run, last_seen_at = now(), "
            "resolved_run = NULL, resolved_at = NULL "
            "RETURNING persisted, to_char(first_seen_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            7, q, error);
        free(fields);
        if (res == NULL)
            return false;
        m->persisted = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        snprintf(m->first_seen_at, sizeof(m->first_seen_at), "%s", PQgetvalue(res, 0, 1));
        PQclear(res);
        if (m->persisted)
            ctx->persistent++;
    }
    ctx->mismatches += r->missing + r->extra + r->different;
    ctx->docs += r->source_docs;

    /* resolve what this run covered and found equal */
    if (!ctx->o->changed) {
        if (!r->truncated) {
            const char *q[3] = {c->db, c->coll, run};
            if (!exec_q(ctx,
                        "UPDATE @.validation_mismatches SET resolved_run = $3, resolved_at = "
                        "now(), persisted = false WHERE db = $1 AND coll = $2 AND resolved_at "
                        "IS NULL AND last_seen_run <> $3",
                        3, q, error))
                return false;
        }
    } else if (c->nids > 0) {
        mg_buf_t arr;
        bool ok;
        mg_buf_init(&arr, 1024u * 1024u * 1024u);
        ok = text_array(c->ids, c->nids, &arr, error);
        if (ok) {
            const char *q[4] = {c->db, c->coll, run, arr.data};
            ok = exec_q(ctx,
                        "UPDATE @.validation_mismatches SET resolved_run = $3, resolved_at = "
                        "now(), persisted = false WHERE db = $1 AND coll = $2 AND resolved_at "
                        "IS NULL AND last_seen_run <> $3 AND doc_id = ANY ($4::text[])",
                        4, q, error);
        }
        mg_buf_cleanup(&arr);
        if (!ok)
            return false;
    }
    /* the changed documents up to the checkpoint read before the check are covered */
    if (ctx->have_ckpt) {
        const char *q[4] = {c->db, c->coll, ctx->ckpt_ts, ctx->ckpt_inc};
        if (!exec_q(ctx,
                    "DELETE FROM @.changed_docs WHERE db = $1 AND coll = $2 AND "
                    "(cluster_time_ts, cluster_time_inc) <= ($3::bigint, $4::bigint)",
                    4, q, error))
            return false;
    }
    return true;
}

static const char *
run_status(const val_ctx_t *ctx)
{
    if (ctx->any_failed)
        return "failed";
    if (ctx->persistent > 0)
        return "persistent_mismatch";
    if (ctx->mismatches > 0 || ctx->shadow_mismatches > 0)
        return "mismatch";
    return "clean";
}

/* record_shadow inserts the shadow-read results of the run. */
static bool
record_shadow(val_ctx_t *ctx, mg_error_t *error)
{
    char run[24];

    snprintf(run, sizeof(run), "%lld", (long long)ctx->run_id);
    for (size_t i = 0; i < ctx->nshadow; i++) {
        const mg_cutover_shadow_result_t *r = &ctx->shadow[i];
        char seq[24], mc[24], pc[24], l[4][32];
        mg_buf_t ids;
        bool ok = true;
        snprintf(seq, sizeof(seq), "%zu", i + 1);
        snprintf(mc, sizeof(mc), "%lld", (long long)r->mongo_count);
        snprintf(pc, sizeof(pc), "%lld", (long long)r->pg_count);
        snprintf(l[0], sizeof(l[0]), "%.4f", r->mongo_p50_ms);
        snprintf(l[1], sizeof(l[1]), "%.4f", r->mongo_p95_ms);
        snprintf(l[2], sizeof(l[2]), "%.4f", r->pg_p50_ms);
        snprintf(l[3], sizeof(l[3]), "%.4f", r->pg_p95_ms);
        mg_buf_init(&ids, 16 * 1024 * 1024);
        ok = mg_buf_append_str(&ids, "[", error);
        for (size_t k = 0; ok && k < r->ndiff_ids; k++) {
            yajl_gen g = yajl_gen_alloc(NULL);
            const unsigned char *t;
            size_t tl;
            yajl_gen_string(g, (const unsigned char *)r->diff_ids[k], strlen(r->diff_ids[k]));
            yajl_gen_get_buf(g, &t, &tl);
            ok = (k == 0 || mg_buf_append_str(&ids, ",", error)) &&
                 mg_buf_append(&ids, t, tl, error);
            yajl_gen_free(g);
        }
        ok = ok && mg_buf_append_str(&ids, "]", error);
        const char *p[15] = {
            run,       seq,      r->name, r->ns, mg_cutover_shadow_status_name(r->status),
            r->reason, r->query, r->sql,  mc,    pc,
            ids.data,  l[0],     l[1],    l[2],  l[3]};
        ok = ok && exec_q(ctx,
                          "INSERT INTO @.validation_shadow (run_id, seq, name, ns, status, reason, "
                          "query, sql, mongo_count, pg_count, diff_ids, mongo_p50_ms, "
                          "mongo_p95_ms, pg_p50_ms, pg_p95_ms) VALUES ($1, $2, $3, $4, $5, $6, "
                          "$7::jsonb, $8, $9, $10, $11::jsonb, $12, $13, $14, $15)",
                          15, p, error);
        mg_buf_cleanup(&ids);
        if (!ok)
            return false;
    }
    return true;
}

/* record writes every result in one transaction. */
static bool
record(val_ctx_t *ctx, mg_error_t *error)
{
    char run[24], docs[24], mism[24], pers[24], data[256];
    bool ok;

    if (!mg_migrator__target_exec(ctx->pg, "BEGIN", error))
        return false;
    ok = true;
    for (size_t i = 0; ok && i < ctx->ncolls; i++)
        if (ctx->colls[i].checked)
            ok = record_coll(ctx, &ctx->colls[i], error);
    ok = ok && record_shadow(ctx, error);
    snprintf(run, sizeof(run), "%lld", (long long)ctx->run_id);
    snprintf(docs, sizeof(docs), "%lld", (long long)ctx->docs);
    snprintf(mism, sizeof(mism), "%lld", (long long)ctx->mismatches);
    snprintf(pers, sizeof(pers), "%lld", (long long)ctx->persistent);
    const char *p[5] = {run, run_status(ctx), docs, mism, pers};
    PGresult *res =
        ok ? query(ctx,
                   "UPDATE @.validation_runs SET status = $2, finished_at = now(), documents = "
                   "$3, mismatches = $4, persistent = $5 WHERE id = $1 RETURNING "
                   "to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                   5, p, error)
           : NULL;
    if (res != NULL) {
        snprintf(ctx->finished_at, sizeof(ctx->finished_at), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
    } else {
        ok = false;
    }
    snprintf(data, sizeof(data),
             "{\"run_id\": %lld, \"status\": \"%s\", \"mismatches\": %lld, \"persistent\": "
             "%lld}",
             (long long)ctx->run_id, run_status(ctx), (long long)ctx->mismatches,
             (long long)ctx->persistent);
    ok = ok && mg_migrator__state_event(ctx->pg, ctx->o->state_schema, "validate", data, error);
    ok = ok && mg_migrator__target_exec(ctx->pg, "COMMIT", error);
    if (!ok)
        PQclear(PQexec(ctx->pg, "ROLLBACK"));
    return ok;
}

/* ---- output ---- */

static void
build_report(const val_ctx_t *ctx, double elapsed, mg_cutover_report_t *rep,
             mg_cutover_report_coll_t *rc)
{
    for (size_t i = 0; i < ctx->ncolls; i++) {
        const val_coll_t *c = &ctx->colls[i];
        const mg_cutover_result_t *r = &c->result;
        rc[i] = (mg_cutover_report_coll_t){
            .db = c->db,
            .coll = c->coll,
            .schema = c->schema,
            .table = c->table,
            .status = c->failed ? "failed"
                                : (r->missing + r->extra + r->different > 0 ? "mismatch" : "clean"),
            .error = c->failed ? c->error : NULL,
            .result = c->failed ? NULL : r,
        };
    }
    *rep = (mg_cutover_report_t){
        .run_id = ctx->run_id,
        .mode = run_mode(ctx),
        .started_at = ctx->started_at,
        .finished_at = ctx->finished_at,
        .status = run_status(ctx),
        .elapsed_s = elapsed,
        .persistent = ctx->persistent,
        .colls = rc,
        .ncolls = ctx->checksums ? ctx->ncolls : 0,
        .shadow = ctx->shadow,
        .has_shadow = ctx->shadow_ran,
        .nshadow = ctx->nshadow,
    };
}

static bool
write_file(const char *path, const mg_buf_t *buf, mg_error_t *error)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return mg_error_set_errno(error, errno, "could not open \"%s\"", tmp);
    if (fwrite(buf->data, 1, buf->len, f) != buf->len || fflush(f) != 0) {
        int e = errno;
        fclose(f);
        return mg_error_set_errno(error, e, "could not write \"%s\"", tmp);
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return mg_error_set_errno(error, errno, "could not write \"%s\"", path);
    return true;
}

static void
print_summary(const val_ctx_t *ctx, double elapsed)
{
    printf("validate run %lld (%s): %zu collection(s), %lld documents, %lld mismatch(es), "
           "%lld persisted, %.2f s: %s\n",
           (long long)ctx->run_id, run_mode(ctx), ctx->checksums ? ctx->ncolls : 0,
           (long long)ctx->docs, (long long)ctx->mismatches, (long long)ctx->persistent, elapsed,
           run_status(ctx));
    if (ctx->shadow_ran) {
        size_t c[4] = {0};
        for (size_t i = 0; i < ctx->nshadow; i++)
            c[ctx->shadow[i].status]++;
        printf("shadow reads: %zu queries, %zu match, %zu mismatch, %zu not translated, %zu "
               "error\n",
               ctx->nshadow, c[0], c[1], c[2], c[3]);
        for (size_t i = 0; i < ctx->nshadow; i++) {
            const mg_cutover_shadow_result_t *r = &ctx->shadow[i];
            printf("  %-24s %-15s mongo %lld docs p50 %.2f ms  pg %lld docs p50 %.2f ms%s%s\n",
                   r->name, mg_cutover_shadow_status_name(r->status), (long long)r->mongo_count,
                   r->mongo_p50_ms, (long long)r->pg_count, r->pg_p50_ms, r->reason ? "  " : "",
                   r->reason ? r->reason : "");
        }
    }
    for (size_t i = 0; ctx->checksums && i < ctx->ncolls; i++) {
        const val_coll_t *c = &ctx->colls[i];
        const mg_cutover_result_t *r = &c->result;
        char ns[512];
        snprintf(ns, sizeof(ns), "%s.%s", c->db, c->coll);
        if (c->failed) {
            printf("  %-32s failed: %s\n", ns, c->error);
            continue;
        }
        printf("  %-32s source %lld  target %lld  segments %u/%u  missing %lld  extra %lld  "
               "different %lld  %.2f s\n",
               ns, (long long)r->source_docs, (long long)r->target_docs, r->segments_mismatched,
               r->segments, (long long)r->missing, (long long)r->extra, (long long)r->different,
               r->elapsed_s);
        for (size_t k = 0; k < r->nmismatches; k++) {
            const mg_cutover_mismatch_t *m = &r->mismatches[k];
            printf("    %-9s _id %s%s\n", mg_cutover_mismatch_kind_name(m->kind), m->id_json,
                   m->persisted ? "  (persisted)" : "");
            for (size_t d = 0; d < m->ndiffs; d++) {
                const mg_cutover_field_diff_t *fd = &m->diffs[d];
                printf("        %s: source %s (%s), target %s (%s)\n", fd->path,
                       fd->source_value ? fd->source_value : "absent", fd->source_type,
                       fd->target_value ? fd->target_value : "absent", fd->target_type);
            }
            if (m->more_diffs)
                printf("        (more fields differ)\n");
        }
        if (r->truncated)
            printf("    (more differences than named)\n");
    }
}

/* read_file reads path whole into out. */
static bool
read_file(const char *path, mg_buf_t *out, mg_error_t *error)
{
    FILE *f = fopen(path, "r");
    char chunk[65536];
    size_t n;

    if (f == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                            "could not open shadow query file \"%s\": %s", path, strerror(errno));
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (!mg_buf_append(out, chunk, n, error)) {
            fclose(f);
            return false;
        }
    }
    fclose(f);
    return mg_buf_append(out, "", 0, error);
}

/* run_shadow runs the shadow reads of --shadow and --shadow-from-profiler. */
static bool
run_shadow(val_ctx_t *ctx, mg_error_t *error)
{
    mg_cutover_shadow_ns_t *ns = calloc(ctx->ncolls + 1, sizeof(*ns));
    mg_buf_t lines;
    bool ok;

    if (ns == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; i < ctx->ncolls; i++)
        ns[i] = (mg_cutover_shadow_ns_t){ctx->colls[i].db, ctx->colls[i].coll, ctx->colls[i].schema,
                                         ctx->colls[i].table};
    mg_cutover_shadow_options_t so = {
        .source_uri = ctx->o->source,
        .target = ctx->o->target,
        .fidelity = ctx->fidelity,
        .namespaces = ns,
        .nnamespaces = ctx->ncolls,
        .repeat = (int)ctx->o->shadow_repeat,
    };
    mg_buf_init(&lines, 256 * 1024 * 1024);
    ok = mg_buf_append(&lines, "", 0, error);
    if (ok && ctx->o->shadow != NULL)
        ok = read_file(ctx->o->shadow, &lines, error);
    if (ok && ctx->o->shadow_from_profiler)
        ok = mg_buf_append_str(&lines, "\n", error) &&
             mg_cutover_shadow_profiler_lines(&so, (size_t)ctx->o->profiler_max, &lines, error);
    if (ok)
        ok = mg_cutover_shadow_run_lines(&so, lines.data != NULL ? lines.data : "", &ctx->shadow,
                                         &ctx->nshadow, error);
    if (ok) {
        ctx->shadow_ran = true;
        for (size_t i = 0; i < ctx->nshadow; i++)
            if (ctx->shadow[i].status == MG_CUTOVER_SHADOW_MISMATCH)
                ctx->shadow_mismatches++;
    }
    mg_buf_cleanup(&lines);
    free(ns);
    return ok;
}

static void
print_usage(FILE *stream)
{
    fprintf(stream,
            "usage: migrate validate --source URI --target URI [--full | --changed] [options]\n\n"
            "Checksum every migrated collection on both sides, name every differing _id\n"
            "(missing, extra, different, with the differing fields) and record the results\n"
            "in the state schema (docs/validate.md). Exit 5 when a mismatch persisted across\n"
            "runs.\n\noptions:\n");
    mg_config_print_help(validate_options, N_VALIDATE_OPTIONS, "MIGRATE_", stream);
    fprintf(stream, "  %-34s %s\n", "   --config FILE",
            "read options from a JSON file [env MIGRATE_CONFIG]");
}

/*
 * validate_once runs one validation (checksums and/or shadow reads),
 * records it and writes the reports; returns the exit code of the run.
 */
static int
validate_once(const validate_opts_t *op)
{
    validate_opts_t o = *op; /* borrowed strings: owned by the config */
    val_ctx_t ctx;
    mg_error_t error;
    mg_buf_t out;
    int rc = MG_EXIT_FAILURE;
    bool exists = false;
    int version = 0;
    double t0 = mg_migrator__now_s();

    memset(&ctx, 0, sizeof(ctx));
    mg_error_clear(&error);
    mg_buf_init(&out, REPORT_CAP);
    ctx.o = &o;
    ctx.pg = mg_migrator__target_connect(o.target, &error);
    if (ctx.pg == NULL)
        goto fail;
    if (!mg_migrator__state_probe(ctx.pg, o.state_schema, &exists, &version, &error))
        goto fail;
    if (!exists || version == 0) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                     "no state schema \"%s\" on the target: run migrate init and migrate sync "
                     "first",
                     o.state_schema);
        rc = MG_EXIT_STATE;
        goto fail_rc;
    }
    if (version > MG_MIGRATOR_STATE_VERSION) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "state schema \"%s\" has version %d, newer than this build understands "
                     "(%d)",
                     o.state_schema, version, MG_MIGRATOR_STATE_VERSION);
        rc = MG_EXIT_STATE;
        goto fail_rc;
    }
    {
        mg_buf_t q;
        mg_buf_init(&q, 1024);
        if (!mg_schema_quote_ident(o.state_schema, &q, &error)) {
            mg_buf_cleanup(&q);
            goto fail;
        }
        ctx.qs = q.data; /* steal */
    }
    if (!load(&ctx, &error))
        goto fail;
    ctx.checksums = o.full || o.changed || (o.shadow == NULL && !o.shadow_from_profiler);
    if (o.changed && !load_changed(&ctx, &error))
        goto fail;
    if (!start_run(&ctx, &error))
        goto fail;

    mg_cutover_check_options_t co;
    mg_cutover_check_options_init(&co);
    co.source_uri = o.source;
    co.target = o.target;
    co.fidelity = ctx.fidelity;
    co.segments = (uint32_t)o.segments;
    co.max_named = (size_t)o.max_named;
    co.max_diffs = (size_t)o.max_fields;
    co.batch_docs = o.batch_docs;
    co.drilldown_bytes = o.drilldown_bytes;
    co.source_threads = (int)o.source_threads;
    for (size_t i = 0; ctx.checksums && i < ctx.ncolls; i++) {
        val_coll_t *c = &ctx.colls[i];
        mg_cutover_coll_t cc = {c->db, c->coll, c->schema, c->table, c->key};
        mg_error_t e;
        bool ok;
        mg_error_clear(&e);
        co.source_filters = NULL;
        co.nsource_filters = 0;
        if (!o.changed && !load_filters(&ctx, c, &error))
            goto fail;
        co.source_filters = (const bson_t *const *)c->filters;
        co.nsource_filters = c->nfilters;
        if (o.changed && c->nids == 0)
            ok = true; /* nothing changed in this collection: nothing to read */
        else if (o.changed && !mg_schema_key_any_digest(c->key, (const char *const *)c->ids,
                                                        c->nids)) /* a digest: check it all */
            ok = mg_cutover_check_ids(&co, &cc, (const char *const *)c->ids, c->nids, &c->result,
                                      &e);
        else
            ok = mg_cutover_check_collection(&co, &cc, &c->result, &e);
        c->checked = true;
        if (!ok) {
            c->failed = true;
            snprintf(c->error, sizeof(c->error), "%s", e.message);
            mg_log_error(MG_LOG_ERROR, "validate", &e);
            if (!ctx.any_failed)
                ctx.first_failure = e;
            ctx.any_failed = true;
            continue;
        }
        const mg_cutover_result_t *r = &c->result;
        MG_LOG_EVENT(MG_LOG_INFO, "validate", "validate.collection",
                     MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll),
                                   MG_LOG_INT("source_docs", r->source_docs),
                                   MG_LOG_INT("target_docs", r->target_docs),
                                   MG_LOG_INT("missing", r->missing), MG_LOG_INT("extra", r->extra),
                                   MG_LOG_INT("different", r->different),
                                   MG_LOG_DOUBLE("elapsed_s", r->elapsed_s)),
                     "checked %s.%s", c->db, c->coll);
    }
    if ((o.shadow != NULL || o.shadow_from_profiler) && !run_shadow(&ctx, &error))
        goto fail;
    if (!record(&ctx, &error))
        goto fail;

    double elapsed = mg_migrator__now_s() - t0;
    mg_cutover_report_t rep;
    mg_cutover_report_coll_t *rcs = calloc(ctx.ncolls + 1, sizeof(*rcs));
    if (rcs == NULL)
        goto fail;
    build_report(&ctx, elapsed, &rep, rcs);
    bool ok = true;
    if (o.report_json != NULL || o.json) {
        ok = mg_cutover_report_json(&rep, &out, &error) && mg_buf_append_str(&out, "\n", &error);
        if (ok && o.report_json != NULL)
            ok = write_file(o.report_json, &out, &error);
        if (ok && o.json)
            fwrite(out.data, 1, out.len, stdout);
    }
    if (ok && o.report_html != NULL) {
        mg_buf_reset(&out);
        ok = mg_cutover_report_html(&rep, &out, &error) && write_file(o.report_html, &out, &error);
    }
    free(rcs);
    if (!ok)
        goto fail;
    if (!o.json)
        print_summary(&ctx, elapsed);
    MG_LOG_EVENT(MG_LOG_NOTICE, "validate", "validate.done",
                 MG_LOG_FIELDS(MG_LOG_INT("run_id", ctx.run_id),
                               MG_LOG_STR("status", run_status(&ctx)),
                               MG_LOG_INT("mismatches", ctx.mismatches),
                               MG_LOG_INT("persistent", ctx.persistent)),
                 "validation run %lld: %s", (long long)ctx.run_id, run_status(&ctx));
    if (ctx.any_failed) {
        fprintf(stderr, "migrate validate: %s\n", ctx.first_failure.message);
        rc = mg_exit_code_for_error(&ctx.first_failure);
    } else if (ctx.persistent > 0 ||
               (o.fail_on == 1 && (ctx.mismatches > 0 || ctx.shadow_mismatches > 0))) {
        rc = MG_EXIT_MISMATCH;
    } else {
        rc = MG_EXIT_OK;
    }
    goto done;

fail:
    if (!mg_error_is_set(&error))
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    rc = mg_exit_code_for_error(&error);
fail_rc:
    mg_log_error(MG_LOG_ERROR, "validate", &error);
    fprintf(stderr, "migrate validate: %s\n", error.message);
    if (ctx.run_id > 0 && ctx.pg != NULL && PQstatus(ctx.pg) == CONNECTION_OK) {
        /* best effort: the run row says it failed instead of staying "running" */
        char run[24];
        mg_error_t ignored;
        snprintf(run, sizeof(run), "%lld", (long long)ctx.run_id);
        const char *p[2] = {run, error.message};
        if (PQtransactionStatus(ctx.pg) != PQTRANS_IDLE)
            PQclear(PQexec(ctx.pg, "ROLLBACK"));
        exec_q(&ctx,
               "UPDATE @.validation_runs SET status = 'failed', finished_at = now(), options = "
               "options || jsonb_build_object('error', $2::text) WHERE id = $1",
               2, p, &ignored);
    }
done:
    mg_buf_cleanup(&out);
    ctx_cleanup(&ctx);
    return rc;
}

static volatile sig_atomic_t stop_requested;

static void
on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int
mg_migrator_cmd_validate(const mg_cli_command_t *command, int argc, char **argv)
{
    validate_opts_t o;
    mg_config_t *config = NULL;
    mg_error_t error;
    int first = 0, rc = MG_EXIT_FAILURE;

    memset(&o, 0, sizeof(o));
    mg_error_clear(&error);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return MG_EXIT_OK;
        }
    }
    config = mg_config_new(validate_options, N_VALIDATE_OPTIONS, &o, "MIGRATE_");
    if (config == NULL) {
        fprintf(stderr, "migrate validate: out of memory\n");
        return MG_EXIT_FAILURE;
    }
    if (!mg_config_load(config, argc, argv, NULL, &first, &error))
        goto fail;
    if (first < argc) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "unexpected argument \"%s\"", argv[first]);
        goto fail;
    }
    if (o.full && o.changed) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "--full and --changed exclude each other");
        goto fail;
    }

    if (o.every_ms > 0 && !o.changed) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "--every repeats --changed runs; add --changed");
        goto fail;
    }
    if (o.every_ms == 0) {
        rc = validate_once(&o);
        goto done;
    }
    /* --changed --every: re-check what the change stream applied, until stopped */
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    stop_requested = 0;
    for (int64_t n = 1;; n++) {
        rc = validate_once(&o);
        if (stop_requested || (o.max_runs > 0 && n >= o.max_runs) ||
            (rc != MG_EXIT_OK && rc != MG_EXIT_MISMATCH))
            break;
        for (int64_t waited = 0; waited < o.every_ms && !stop_requested; waited += 100) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (stop_requested)
            break;
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    goto done;

fail:
    if (!mg_error_is_set(&error))
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    rc = mg_exit_code_for_error(&error);
    mg_log_error(MG_LOG_ERROR, "validate", &error);
    fprintf(stderr, "migrate validate: %s\n", error.message);
done:
    mg_config_destroy(config);
    (void)command;
    return rc;
}
