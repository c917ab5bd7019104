/*
 * validate/src/validate_run.c - `migrate validate`: checksums of every
 * collection (or of the documents changed since the last check) on both
 * sides, the differences named and recorded in the state schema, reports.
 *
 * Steps: options -> target, state, collections -> the run row -> per
 * collection: mg_validate_check_collection (--full) or mg_validate_check_ids
 * over _migrate.changed_docs up to the checkpoint plus the open mismatches
 * (--changed) -> ONE transaction: results, mismatches (first seen,
 * persisted), resolved mismatches, the covered changed_docs rows deleted,
 * the run row -> terminal summary, --report-json, --report-html. The rule
 * for the exit code is in docs/validate.md.
 */
#include "validate_internal.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>

#include <errno.h>
#include <signal.h>
#include <time.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#define REPORT_CAP (512 * 1024 * 1024)

/* One collection of the run. */
typedef struct {
    char *db;
    char *coll;
    char *schema;
    char *table;
    mg_schema_key_type_t key;
    char **ids; /* --changed: key texts to re-check, each once */
    size_t nids;
    size_t capids;
    size_t *slots; /* a hash set over ids: index + 1, 0 = free (nslots a power of two) */
    size_t nslots;
    bson_t **filters; /* the copy's partitions, then the rest (source scan split) */
    size_t nfilters;
    mg_validate_result_t result;
    bool checked;
    bool failed;
    char error[MG_ERROR_MESSAGE_SIZE];
} val_coll_t;

typedef struct {
    const mg_validate_settings_t *o;
    mg_state_t *st; /* borrowed */
    mg_schema_fidelity_t fidelity;
    val_coll_t *colls;
    size_t ncolls;
    size_t last_coll; /* find_coll's last hit */
    int64_t run_id;
    char started_at[40];
    char finished_at[40];
    bool have_ckpt;
    uint32_t ckpt_t, ckpt_i;
    int64_t persistent;
    int64_t mismatches;
    int64_t docs;
    bool any_failed;
    mg_error_t first_failure;
    bool checksums; /* false: shadow reads only */
    mg_validate_shadow_result_t *shadow;
    size_t nshadow;
    bool shadow_ran;
    int64_t shadow_mismatches;
    bool interrupted; /* a stop request ended a single run between collections */
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
        free(c->slots);
        for (size_t k = 0; k < c->nfilters; k++)
            bson_destroy(c->filters[k]);
        free(c->filters);
        mg_validate_result_cleanup(&c->result);
    }
    free(ctx->colls);
    mg_validate_shadow_results_free(ctx->shadow, ctx->nshadow);
}

/* selected tells whether db.coll is one to check; hits records which patterns matched. */
static bool
selected(const mg_strlist_t *patterns, const char *db, const char *coll, bool *hits)
{
    char ns[1024];
    bool any = false;

    if (patterns == NULL || patterns->count == 0)
        return true;
    snprintf(ns, sizeof(ns), "%s.%s", db, coll);
    for (size_t i = 0; i < patterns->count; i++)
        if (fnmatch(patterns->items[i], ns, 0) == 0) {
            hits[i] = true;
            any = true;
        }
    return any;
}

/* load reads the fidelity, the collections to check and the checkpoint a run covers. */
static bool
load(val_ctx_t *ctx, mg_error_t *error)
{
    const mg_strlist_t *patterns = ctx->o->collections;
    size_t npatterns = patterns != NULL ? patterns->count : 0;
    bool *hits = calloc(npatterns + 1, sizeof(bool));
    mg_state_migration_t mig;
    mg_state_colls_t colls = {0};
    mg_state_checkpoint_t cp = {0};
    bool ok = false;

    if (hits == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    if (!mg_state_migration_get(ctx->st, &mig, error) ||
        !mg_state_collections_load(ctx->st, false, &colls, error))
        goto done;
    ctx->fidelity = mig.fidelity;
    ctx->colls = calloc(colls.n + 1, sizeof(val_coll_t));
    if (ctx->colls == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    for (size_t r = 0; r < colls.n; r++) {
        mg_state_coll_t *sc = &colls.items[r];
        if (!selected(patterns, sc->db, sc->coll, hits))
            continue;
        val_coll_t *c = &ctx->colls[ctx->ncolls++];
        c->db = sc->db; /* take the strings over */
        c->coll = sc->coll;
        c->schema = sc->schema;
        c->table = sc->table;
        sc->db = sc->coll = sc->schema = sc->table = NULL;
        c->key = sc->key;
    }
    for (size_t i = 0; i < npatterns; i++) {
        if (!hits[i]) {
            mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                         "collection pattern \"%s\" matches no migrated collection",
                         patterns->items[i]);
            goto done;
        }
    }
    /* the change-stream checkpoint bounds which changed_docs rows a run covers */
    if (!mg_state_checkpoint_get(ctx->st, 0, &cp, error))
        goto done;
    ctx->have_ckpt = cp.applied;
    ctx->ckpt_t = cp.t;
    ctx->ckpt_i = cp.i;
    ok = true;
done:
    mg_state_checkpoint_cleanup(&cp);
    mg_state_colls_cleanup(&colls);
    free(hits);
    return ok;
}

/* id_slot returns the slot of id in c's hash set: where it is, or the free one to put it in. */
static size_t
id_slot(const val_coll_t *c, const char *id, size_t len)
{
    size_t mask = c->nslots - 1;
    size_t k = (size_t)mg_validate_hash64(id, len, 7) & mask;

    while (c->slots[k] != 0 && strcmp(c->ids[c->slots[k] - 1], id) != 0)
        k = (k + 1) & mask;
    return k;
}

/* grow_slots doubles c's hash set (at least 64 slots) and places every id again. */
static bool
grow_slots(val_coll_t *c, mg_error_t *error)
{
    size_t n = c->nslots ? c->nslots * 2 : 64;
    size_t *grown = calloc(n, sizeof(*grown));

    if (grown == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    free(c->slots);
    c->slots = grown;
    c->nslots = n;
    for (size_t k = 0; k < c->nids; k++)
        c->slots[id_slot(c, c->ids[k], strlen(c->ids[k]))] = k + 1;
    return true;
}

/*
 * push_id adds id to the documents of c to re-check unless it is there
 * already: a hash set, so collecting n ids costs O(n) (the list of
 * changed documents and the open mismatches overlap, and a million ids
 * must not cost a million squared comparisons inside the cutover's freeze).
 */
static bool
push_id(val_coll_t *c, const char *id, mg_error_t *error)
{
    size_t len = strlen(id), k;

    if ((c->nids + 1) * 2 > c->nslots && !grow_slots(c, error))
        return false;
    k = id_slot(c, id, len);
    if (c->slots[k] != 0)
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
    c->slots[k] = c->nids;
    return true;
}

/* find_coll finds db.coll among the run's collections; the rows come grouped, so the last
 * hit is tried first. */
static val_coll_t *
find_coll(val_ctx_t *ctx, const char *db, const char *coll)
{
    size_t last = ctx->last_coll;

    if (last < ctx->ncolls && strcmp(ctx->colls[last].coll, coll) == 0 &&
        strcmp(ctx->colls[last].db, db) == 0)
        return &ctx->colls[last];
    for (size_t i = 0; i < ctx->ncolls; i++)
        if (strcmp(ctx->colls[i].db, db) == 0 && strcmp(ctx->colls[i].coll, coll) == 0) {
            ctx->last_coll = i;
            return &ctx->colls[i];
        }
    return NULL;
}

/* add_changed is an mg_state_doc_fn: one document to re-check. */
static bool
add_changed(void *vctx, const char *db, const char *coll, const char *doc_id, mg_error_t *error)
{
    val_coll_t *c = find_coll(vctx, db, coll);

    return c == NULL || push_id(c, doc_id, error);
}

/* load_changed collects, per collection, the changed documents and the open mismatches. */
static bool
load_changed(val_ctx_t *ctx, mg_error_t *error)
{
    if (ctx->have_ckpt &&
        !mg_state_changed_list(ctx->st, ctx->ckpt_t, ctx->ckpt_i, add_changed, ctx, error))
        return false;
    return mg_state_mismatches_open(ctx->st, add_changed, ctx, error);
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
bool
mg_validate__scan_filters(const mg_state_blobs_t *blobs, const char *ns, bson_t ***filters,
                          size_t *nfilters, mg_error_t *error)
{
    bson_t aliases = BSON_INITIALIZER;
    int naliases = 0;
    bool ok = true;

    *filters = NULL;
    *nfilters = 0;
    if (blobs->n == 0)
        return true;
    *filters = calloc(blobs->n + 1, sizeof(bson_t *));
    if (*filters == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t r = 0; ok && r < blobs->n; r++) {
        bson_t *f = bson_new_from_data(blobs->data[r], blobs->len[r]);
        bson_iter_t it, cond;
        if (f == NULL) {
            ok = mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                              "partition %zu of %s: the stored filter is not BSON", r, ns);
            break;
        }
        (*filters)[(*nfilters)++] = f;
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
    if (ok && naliases > 0) {
        /* documents of a type the plan did not see (inserted later) */
        bson_t *rest = bson_new();
        bson_t idc, notc;
        bson_append_document_begin(rest, "_id", 3, &idc);
        bson_append_document_begin(&idc, "$not", 4, &notc);
        bson_append_array(&notc, "$type", 5, &aliases);
        bson_append_document_end(&idc, &notc);
        bson_append_document_end(rest, &idc);
        (*filters)[(*nfilters)++] = rest;
    }
    bson_destroy(&aliases);
    return ok;
}

static bool
load_filters(val_ctx_t *ctx, val_coll_t *c, mg_error_t *error)
{
    mg_state_blobs_t blobs;
    char ns[600];
    bool ok;

    if (!mg_state_partition_filters(ctx->st, c->db, c->coll, &blobs, error))
        return false;
    snprintf(ns, sizeof(ns), "%s.%s", c->db, c->coll);
    ok = mg_validate__scan_filters(&blobs, ns, &c->filters, &c->nfilters, error);
    mg_state_blobs_cleanup(&blobs);
    return ok;
}

static bool
start_run(val_ctx_t *ctx, mg_error_t *error)
{
    char opts[256];

    snprintf(opts, sizeof(opts), "{\"segments\": %lld, \"fail_on\": \"%s\"}",
             (long long)ctx->o->segments, ctx->o->fail_on_any ? "any" : "persistent");
    return mg_state_validation_start(ctx->st, run_mode(ctx), ctx->have_ckpt, ctx->ckpt_t,
                                     ctx->ckpt_i, opts, &ctx->run_id, ctx->started_at, error);
}

/* fields_json renders a mismatch's field diffs as a JSON array. */
static char *
fields_json(const mg_validate_mismatch_t *m)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    char *out;

    if (g == NULL)
        return NULL;
    mg_validate__fields_json(g, m);
    out = mg_json_dup(g);
    yajl_gen_free(g);
    return out;
}

/* coll_status is "failed", "mismatch" or "clean". */
static const char *
coll_status(const val_coll_t *c)
{
    const mg_validate_result_t *r = &c->result;

    return c->failed ? "failed" : (r->missing + r->extra + r->different > 0 ? "mismatch" : "clean");
}

/* record_mismatches records the named differences; counts those that persisted. */
static bool
record_mismatches(val_ctx_t *ctx, val_coll_t *c, mg_error_t *error)
{
    mg_validate_result_t *r = &c->result;

    for (size_t i = 0; i < r->nmismatches; i++) {
        mg_validate_mismatch_t *m = &r->mismatches[i];
        char *fields = fields_json(m);
        mg_state_mismatch_t sm = {
            c->db, c->coll, m->id_json, m->doc_id, mg_validate_mismatch_kind_name(m->kind), fields};
        bool ok;
        if (fields == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        ok = mg_state_mismatch_record(ctx->st, ctx->run_id, &sm, &m->persisted, m->first_seen_at,
                                      error);
        free(fields);
        if (!ok)
            return false;
        if (m->persisted)
            ctx->persistent++;
    }
    return true;
}

static bool
record_coll(val_ctx_t *ctx, val_coll_t *c, mg_error_t *error)
{
    const mg_validate_result_t *r = &c->result;
    mg_state_validation_result_t sr = {
        .db = c->db,
        .coll = c->coll,
        .status = coll_status(c),
        .source_docs = r->source_docs,
        .target_docs = r->target_docs,
        .segments = r->segments,
        .segments_mismatched = r->segments_mismatched,
        .missing = r->missing,
        .extra = r->extra,
        .different = r->different,
        .elapsed_s = r->elapsed_s,
        .error = c->failed ? c->error : NULL,
    };

    if (!mg_state_validation_result_add(ctx->st, ctx->run_id, &sr, error))
        return false;
    if (c->failed)
        return true;
    if (!record_mismatches(ctx, c, error))
        return false;
    ctx->mismatches += r->missing + r->extra + r->different;
    ctx->docs += r->source_docs;
    /* resolve what this run covered and found equal */
    if (!ctx->o->changed && !r->truncated &&
        !mg_state_mismatches_resolve(ctx->st, ctx->run_id, c->db, c->coll, NULL, 0, error))
        return false;
    if (ctx->o->changed && c->nids > 0 &&
        !mg_state_mismatches_resolve(ctx->st, ctx->run_id, c->db, c->coll,
                                     (const char *const *)c->ids, c->nids, error))
        return false;
    /* the changed documents up to the checkpoint read before the check are covered */
    return !ctx->have_ckpt ||
           mg_state_changed_forget(ctx->st, c->db, c->coll, ctx->ckpt_t, ctx->ckpt_i, error);
}

/* outcome_of sums up the run for the status and exit code rules. */
static mg_validate__outcome_t
outcome_of(const val_ctx_t *ctx)
{
    return (mg_validate__outcome_t){ctx->any_failed, ctx->persistent, ctx->mismatches,
                                    ctx->shadow_mismatches};
}

const char *
mg_validate__status(const mg_validate__outcome_t *o)
{
    if (o->failed)
        return "failed";
    if (o->persistent > 0)
        return "persistent_mismatch";
    if (o->mismatches > 0 || o->shadow_mismatches > 0)
        return "mismatch";
    return "clean";
}

int
mg_validate__exit_code(const mg_validate__outcome_t *o, bool fail_on_any)
{
    if (o->persistent > 0 || (fail_on_any && (o->mismatches > 0 || o->shadow_mismatches > 0)))
        return MG_EXIT_MISMATCH;
    return MG_EXIT_OK;
}

static const char *
run_status(const val_ctx_t *ctx)
{
    mg_validate__outcome_t o = outcome_of(ctx);

    return mg_validate__status(&o);
}

/* diff_ids_json renders the _ids of a shadow mismatch as a JSON array into out. */
static bool
diff_ids_json(const mg_validate_shadow_result_t *r, mg_buf_t *out, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    bool ok;

    if (g == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    yajl_gen_array_open(g);
    for (size_t k = 0; k < r->ndiff_ids; k++)
        mg_json_str(g, r->diff_ids[k]);
    yajl_gen_array_close(g);
    ok = mg_json_take(g, out, error);
    yajl_gen_free(g);
    return ok;
}

/* record_shadow inserts the shadow-read results of the run. */
static bool
record_shadow(val_ctx_t *ctx, mg_error_t *error)
{
    for (size_t i = 0; i < ctx->nshadow; i++) {
        const mg_validate_shadow_result_t *r = &ctx->shadow[i];
        mg_buf_t ids;
        bool ok;
        mg_buf_init(&ids, 16 * 1024 * 1024);
        ok = diff_ids_json(r, &ids, error);
        if (ok) {
            mg_state_shadow_t row = {
                .seq = (int)i + 1,
                .name = r->name,
                .ns = r->ns,
                .status = mg_validate_shadow_status_name(r->status),
                .reason = r->reason,
                .query_json = r->query,
                .sql = r->sql,
                .mongo_count = r->mongo_count,
                .pg_count = r->pg_count,
                .diff_ids_json = ids.data,
                .mongo_p50_ms = r->mongo_p50_ms,
                .mongo_p95_ms = r->mongo_p95_ms,
                .pg_p50_ms = r->pg_p50_ms,
                .pg_p95_ms = r->pg_p95_ms,
            };
            ok = mg_state_validation_shadow_add(ctx->st, ctx->run_id, &row, error);
        }
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
    char data[256];
    bool ok;

    if (!mg_state_begin(ctx->st, error))
        return false;
    ok = true;
    for (size_t i = 0; ok && i < ctx->ncolls; i++)
        if (ctx->colls[i].checked)
            ok = record_coll(ctx, &ctx->colls[i], error);
    ok = ok && record_shadow(ctx, error) &&
         mg_state_validation_finish(ctx->st, ctx->run_id, run_status(ctx), ctx->docs,
                                    ctx->mismatches, ctx->persistent, ctx->finished_at, error);
    snprintf(data, sizeof(data),
             "{\"run_id\": %lld, \"status\": \"%s\", \"mismatches\": %lld, \"persistent\": "
             "%lld}",
             (long long)ctx->run_id, run_status(ctx), (long long)ctx->mismatches,
             (long long)ctx->persistent);
    ok = ok && mg_state_event_add(ctx->st, "validate", data, error) &&
         mg_state_commit(ctx->st, error);
    if (!ok)
        mg_state_rollback(ctx->st);
    return ok;
}

/* ---- output ---- */

static void
build_report(const val_ctx_t *ctx, double elapsed, mg_validate_report_t *rep,
             mg_validate_report_coll_t *rc)
{
    for (size_t i = 0; i < ctx->ncolls; i++) {
        const val_coll_t *c = &ctx->colls[i];
        const mg_validate_result_t *r = &c->result;
        rc[i] = (mg_validate_report_coll_t){
            .db = c->db,
            .coll = c->coll,
            .schema = c->schema,
            .table = c->table,
            .status = coll_status(c),
            .error = c->failed ? c->error : NULL,
            .result = c->failed ? NULL : r,
        };
    }
    *rep = (mg_validate_report_t){
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

static void
print_summary(const val_ctx_t *ctx, double elapsed, FILE *out)
{
    fprintf(out,
            "validate run %lld (%s): %zu collection(s), %lld documents, %lld mismatch(es), "
            "%lld persisted, %.2f s: %s\n",
            (long long)ctx->run_id, run_mode(ctx), ctx->checksums ? ctx->ncolls : 0,
            (long long)ctx->docs, (long long)ctx->mismatches, (long long)ctx->persistent, elapsed,
            run_status(ctx));
    if (ctx->shadow_ran) {
        size_t c[4] = {0};
        for (size_t i = 0; i < ctx->nshadow; i++)
            c[ctx->shadow[i].status]++;
        fprintf(out,
                "shadow reads: %zu queries, %zu match, %zu mismatch, %zu not translated, %zu "
                "error\n",
                ctx->nshadow, c[0], c[1], c[2], c[3]);
        for (size_t i = 0; i < ctx->nshadow; i++) {
            const mg_validate_shadow_result_t *r = &ctx->shadow[i];
            fprintf(out,
                    "  %-24s %-15s mongo %lld docs p50 %.2f ms  pg %lld docs p50 %.2f ms%s%s\n",
                    r->name, mg_validate_shadow_status_name(r->status), (long long)r->mongo_count,
                    r->mongo_p50_ms, (long long)r->pg_count, r->pg_p50_ms, r->reason ? "  " : "",
                    r->reason ? r->reason : "");
        }
    }
    for (size_t i = 0; ctx->checksums && i < ctx->ncolls; i++) {
        const val_coll_t *c = &ctx->colls[i];
        const mg_validate_result_t *r = &c->result;
        char ns[512];
        snprintf(ns, sizeof(ns), "%s.%s", c->db, c->coll);
        if (c->failed) {
            fprintf(out, "  %-32s failed: %s\n", ns, c->error);
            continue;
        }
        fprintf(out,
                "  %-32s source %lld  target %lld  segments %u/%u  missing %lld  extra %lld  "
                "different %lld  %.2f s\n",
                ns, (long long)r->source_docs, (long long)r->target_docs, r->segments_mismatched,
                r->segments, (long long)r->missing, (long long)r->extra, (long long)r->different,
                r->elapsed_s);
        for (size_t k = 0; k < r->nmismatches; k++) {
            const mg_validate_mismatch_t *m = &r->mismatches[k];
            fprintf(out, "    %-9s _id %s%s\n", mg_validate_mismatch_kind_name(m->kind), m->id_json,
                    m->persisted ? "  (persisted)" : "");
            for (size_t d = 0; d < m->ndiffs; d++) {
                const mg_validate_field_diff_t *fd = &m->diffs[d];
                fprintf(out, "        %s: source %s (%s), target %s (%s)\n", fd->path,
                        fd->source_value ? fd->source_value : "absent", fd->source_type,
                        fd->target_value ? fd->target_value : "absent", fd->target_type);
            }
            if (m->more_diffs)
                fprintf(out, "        (more fields differ)\n");
        }
        if (r->truncated)
            fprintf(out, "    (more differences than named)\n");
    }
}

/* read_queries reads the shadow query file (a bad path is a usage error). */
static bool
read_queries(const char *path, mg_buf_t *out, mg_error_t *error)
{
    mg_error_t e;

    if (mg_file_read(path, out, &e))
        return true;
    return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                        "could not open shadow query file \"%s\": %s", path,
                        e.domain == MG_ERROR_DOMAIN_SYSTEM ? strerror(e.code) : e.message);
}

/* run_shadow runs the shadow reads of --shadow and --shadow-from-profiler. */
static bool
run_shadow(val_ctx_t *ctx, mg_error_t *error)
{
    mg_validate_shadow_ns_t *ns = calloc(ctx->ncolls + 1, sizeof(*ns));
    mg_buf_t lines;
    bool ok;

    if (ns == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; i < ctx->ncolls; i++)
        ns[i] = (mg_validate_shadow_ns_t){ctx->colls[i].db, ctx->colls[i].coll,
                                          ctx->colls[i].schema, ctx->colls[i].table};
    mg_validate_shadow_options_t so = {
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
        ok = read_queries(ctx->o->shadow, &lines, error);
    if (ok && ctx->o->shadow_from_profiler)
        ok = mg_buf_append_str(&lines, "\n", error) &&
             mg_validate_shadow_profiler_lines(&so, (size_t)ctx->o->profiler_max, &lines, error);
    if (ok)
        ok = mg_validate_shadow_run_lines(&so, lines.data != NULL ? lines.data : "", &ctx->shadow,
                                          &ctx->nshadow, error);
    if (ok) {
        ctx->shadow_ran = true;
        for (size_t i = 0; i < ctx->nshadow; i++)
            if (ctx->shadow[i].status == MG_VALIDATE_SHADOW_MISMATCH)
                ctx->shadow_mismatches++;
    }
    mg_buf_cleanup(&lines);
    free(ns);
    return ok;
}

/* check_all checks every collection (or, changed, the documents to re-check). */
static bool
check_all(val_ctx_t *ctx, mg_error_t *error)
{
    const mg_validate_settings_t *o = ctx->o;
    mg_validate_check_options_t co;

    mg_validate_check_options_init(&co);
    co.source_uri = o->source;
    co.target = o->target;
    co.fidelity = ctx->fidelity;
    co.segments = (uint32_t)o->segments;
    co.max_named = (size_t)o->max_named;
    co.max_diffs = (size_t)o->max_fields;
    co.batch_docs = o->batch_docs;
    co.drilldown_bytes = o->drilldown_bytes;
    co.source_threads = (int)o->source_threads;
    for (size_t i = 0; i < ctx->ncolls; i++) {
        val_coll_t *c = &ctx->colls[i];
        mg_validate_coll_t cc = {c->db, c->coll, c->schema, c->table, c->key};
        mg_error_t e;
        bool ok;
        /* a single run stops between collections; rounds stop between runs */
        if (o->every_ms <= 0 && o->stop != NULL && atomic_load(o->stop) > 0) {
            ctx->interrupted = true;
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                                "interrupted by a signal before %s.%s: the run is marked failed",
                                c->db, c->coll);
        }
        mg_error_clear(&e);
        /* a changed key that is a digest cannot be read back: check it all */
        bool whole =
            !o->changed ||
            (c->nids > 0 && mg_schema_key_any_digest(c->key, (const char *const *)c->ids, c->nids));
        if (whole && !load_filters(ctx, c, error))
            return false;
        co.source_filters = (const bson_t *const *)c->filters;
        co.nsource_filters = c->nfilters;
        if (o->changed && c->nids == 0)
            ok = true; /* nothing changed in this collection: nothing to read */
        else if (!whole)
            ok = mg_validate_check_ids(&co, &cc, (const char *const *)c->ids, c->nids, &c->result,
                                       &e);
        else
            ok = mg_validate_check_collection(&co, &cc, &c->result, &e);
        c->checked = true;
        if (!ok) {
            c->failed = true;
            snprintf(c->error, sizeof(c->error), "%s", e.message);
            mg_log_error(MG_LOG_ERROR, "validate", &e);
            if (!ctx->any_failed)
                ctx->first_failure = e;
            ctx->any_failed = true;
            continue;
        }
        const mg_validate_result_t *r = &c->result;
        MG_LOG_EVENT(MG_LOG_INFO, "validate", "validate.collection",
                     MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll),
                                   MG_LOG_INT("source_docs", r->source_docs),
                                   MG_LOG_INT("target_docs", r->target_docs),
                                   MG_LOG_INT("missing", r->missing), MG_LOG_INT("extra", r->extra),
                                   MG_LOG_INT("different", r->different),
                                   MG_LOG_DOUBLE("elapsed_s", r->elapsed_s)),
                     "checked %s.%s", c->db, c->coll);
    }
    return true;
}

/* write_reports writes --report-json, --report-html and the JSON on out (json). */
static bool
write_reports(const val_ctx_t *ctx, double elapsed, mg_error_t *error)
{
    const mg_validate_settings_t *o = ctx->o;
    mg_validate_report_t rep;
    mg_validate_report_coll_t *rcs = calloc(ctx->ncolls + 1, sizeof(*rcs));
    mg_buf_t out;
    bool ok = true;

    if (rcs == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    mg_buf_init(&out, REPORT_CAP);
    build_report(ctx, elapsed, &rep, rcs);
    if (o->report_json != NULL || (o->json && o->out != NULL)) {
        ok = mg_validate_report_json(&rep, &out, error) && mg_buf_append_str(&out, "\n", error);
        if (ok && o->report_json != NULL)
            ok = mg_file_write_atomic(o->report_json, out.data, out.len, NULL, error);
        if (ok && o->json && o->out != NULL)
            fwrite(out.data, 1, out.len, o->out);
    }
    if (ok && o->report_html != NULL) {
        mg_buf_reset(&out);
        ok = mg_validate_report_html(&rep, &out, error) &&
             mg_file_write_atomic(o->report_html, out.data, out.len, NULL, error);
    }
    mg_buf_cleanup(&out);
    free(rcs);
    return ok;
}

/* mark_failed marks the run failed with the error (best effort: the run row is not left running).
 */
static void
mark_failed(val_ctx_t *ctx, const mg_error_t *why)
{
    PGconn *pg = mg_state_conn(ctx->st);
    mg_error_t ignored;

    if (ctx->run_id <= 0 || pg == NULL || PQstatus(pg) != CONNECTION_OK)
        return;
    mg_state_rollback(ctx->st);
    mg_state_validation_fail(ctx->st, ctx->run_id, why->message, &ignored);
}

/*
 * check_scope refuses a checksum run while the source has a collection the
 * migration's scope takes in that the plan lacks (created after init and
 * not followed): its documents would never be compared.
 */
static bool
check_scope(const val_ctx_t *ctx, mg_error_t *error)
{
    mongoc_client_t *client = mg_mongo_client_new(ctx->o->source, "migrate-validate",
                                                  MG_MONGO_SERVER_SELECTION_MS, error);
    mg_strlist_t missing = {0};
    char names[1024];
    bool known = false, ok;

    if (client == NULL)
        return false;
    ok =
        mg_validate_scope_unmigrated(client, ctx->st, ctx->o->collections, &missing, &known, error);
    mongoc_client_destroy(client);
    if (ok && !known)
        MG_LOG(MG_LOG_WARNING, "validate",
               "the state schema does not record the migration's include and exclude patterns "
               "(an older migrate init): source collections created after init cannot be found");
    if (ok && mg_validate_scope_describe(&missing, names, sizeof(names)))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                          "refused: %zu source collection(s) in the migration's scope are not "
                          "migrated: %s (created after init?); nothing was checked: let migrate "
                          "sync --follow take them in, or exclude them",
                          missing.count, names);
    mg_validate_strlist_cleanup(&missing);
    return ok;
}

/*
 * run_once runs one validation (checksums and/or shadow reads), records it
 * and writes the reports; returns the exit code of the run.
 */
static int
run_once(const mg_validate_settings_t *o, mg_error_t *error)
{
    val_ctx_t ctx;
    int rc = MG_EXIT_OK;
    double t0 = mg_now_s();

    memset(&ctx, 0, sizeof(ctx));
    ctx.o = o;
    ctx.st = o->state;
    ctx.checksums = o->full || o->changed || (o->shadow == NULL && !o->shadow_from_profiler);
    if (!load(&ctx, error) || (ctx.checksums && !check_scope(&ctx, error)) ||
        (o->changed && !load_changed(&ctx, error)) || !start_run(&ctx, error) ||
        (ctx.checksums && !check_all(&ctx, error)) ||
        ((o->shadow != NULL || o->shadow_from_profiler) && !run_shadow(&ctx, error)) ||
        !record(&ctx, error) || !write_reports(&ctx, mg_now_s() - t0, error)) {
        mark_failed(&ctx, error);
        rc = ctx.interrupted ? MG_EXIT_INTERRUPTED : (int)mg_exit_code_for_error(error);
        goto done;
    }
    if (!o->json && o->out != NULL)
        print_summary(&ctx, mg_now_s() - t0, o->out);
    MG_LOG_EVENT(MG_LOG_NOTICE, "validate", "validate.done",
                 MG_LOG_FIELDS(MG_LOG_INT("run_id", ctx.run_id),
                               MG_LOG_STR("status", run_status(&ctx)),
                               MG_LOG_INT("mismatches", ctx.mismatches),
                               MG_LOG_INT("persistent", ctx.persistent)),
                 "validation run %lld: %s", (long long)ctx.run_id, run_status(&ctx));
    if (ctx.any_failed) {
        *error = ctx.first_failure;
        rc = mg_exit_code_for_error(error);
    } else {
        mg_validate__outcome_t oc = outcome_of(&ctx);
        rc = mg_validate__exit_code(&oc, o->fail_on_any);
    }
done:
    ctx_cleanup(&ctx);
    return rc;
}

void
mg_validate_settings_init(mg_validate_settings_t *s)
{
    memset(s, 0, sizeof(*s));
    s->segments = 1024;
    s->max_named = 1000;
    s->max_fields = 20;
    s->batch_docs = 2000;
    s->drilldown_bytes = 256 * 1024 * 1024;
    s->source_threads = 2;
    s->shadow_repeat = 5;
    s->profiler_max = 1000;
}

/* stopped tells whether a stop was requested. */
static bool
stopped(const mg_validate_settings_t *s)
{
    return s->stop != NULL && atomic_load(s->stop) > 0;
}

/*
 * fresh_connection gives the next round a working target connection: one
 * that went away between rounds (a restart, a failover) is replaced by a
 * new one, as each round used to connect afresh.
 */
static bool
fresh_connection(const mg_validate_settings_t *s, mg_error_t *error)
{
    PGconn *pg = mg_state_conn(s->state);
    mg_error_t e;

    /* a session cut by a failover shows only when used */
    if (pg != NULL && PQstatus(pg) == CONNECTION_OK &&
        (mg_pg_exec(pg, "SELECT 1", &e) || !mg_pg_lost(pg, &e)))
        return true;
    if (pg != NULL)
        PQfinish(pg);
    pg = mg_pg_connect(s->target, error);
    mg_state_set_conn(s->state, pg);
    return pg != NULL;
}

int
mg_validate_run(const mg_validate_settings_t *s, mg_error_t *error)
{
    int rc;

    if (s->every_ms <= 0)
        return run_once(s, error);
    /* --changed --every: re-check what the change stream applied, until stopped */
    for (int64_t n = 1;; n++) {
        if (n > 1 && !fresh_connection(s, error))
            return mg_exit_code_for_error(error);
        rc = run_once(s, error);
        if (stopped(s) || (s->max_runs > 0 && n >= s->max_runs) ||
            (rc != MG_EXIT_OK && rc != MG_EXIT_MISMATCH))
            return rc;
        for (int64_t waited = 0; waited < s->every_ms && !stopped(s); waited += 100) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (stopped(s))
            return rc;
    }
}
