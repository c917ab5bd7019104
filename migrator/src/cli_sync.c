/*
 * migrator/src/cli_sync.c - `migrate sync`: its options; record T0 and
 * plan partitions (copy_plan.c), run the copy (copy_run.c), report where
 * the time went, then follow the change stream (cdc/). `--worker` only
 * copies partitions of an existing plan, for scale-out from other
 * processes or hosts (docs/sync.md).
 */
#include "migrator_internal.h"

#include "mg/cdc_reverse.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
    char *source;
    char *target;
    char *state_schema;
    int64_t workers;
    int64_t partition_docs;
    int64_t partition_bytes;
    int64_t batch_docs;
    int64_t doc_cap;
    int64_t progress_ms;
    bool skip_invalid;
    bool worker_only;
    bool json;
    bool follow;
    bool reverse;
    bool copy_only;
    int64_t max_lag_ms;
    int64_t batch_events;
    int64_t batch_bytes;
    int64_t batch_delay_ms;
    int on_drop;
    int on_rename;
    int64_t metrics_port;
    mg_strlist_t resync;
} sync_opts_t;

static const char *const on_drop_choices[] = {"stop", "truncate", "keep", NULL};
static const char *const on_rename_choices[] = {"stop", "follow", NULL};

static const mg_config_option_t sync_options[] = {
    MG_MIGRATOR_OPTION_SOURCE(sync_opts_t, source),
    MG_MIGRATOR_OPTION_TARGET(sync_opts_t, target),
    MG_MIGRATOR_OPTION_STATE_SCHEMA(sync_opts_t, state_schema),
    {.name = "workers",
     .type = MG_CONFIG_INT,
     .offset = offsetof(sync_opts_t, workers),
     .min = 1,
     .max = 256,
     .short_flag = 'j',
     .metavar = "N",
     .help = "parallel copy workers, each with its own connections [default: number of cores]"},
    {.name = "partition_docs",
     .type = MG_CONFIG_INT,
     .offset = offsetof(sync_opts_t, partition_docs),
     .default_value = "500000",
     .min = 1,
     .max = 1000000000,
     .metavar = "N",
     .help = "documents per partition, at most"},
    {.name = "partition_size",
     .type = MG_CONFIG_SIZE,
     .offset = offsetof(sync_opts_t, partition_bytes),
     .default_value = "256MB",
     .min = 1024,
     .max = 1LL << 40,
     .metavar = "SIZE",
     .help = "BSON bytes per partition, at most"},
    {.name = "batch_docs",
     .type = MG_CONFIG_INT,
     .offset = offsetof(sync_opts_t, batch_docs),
     .default_value = "10000",
     .min = 1,
     .max = 1000000,
     .metavar = "N",
     .help = "cursor batch size when reading the source"},
    {.name = "doc_cap",
     .type = MG_CONFIG_SIZE,
     .offset = offsetof(sync_opts_t, doc_cap),
     .default_value = "128MB",
     .min = 1024 * 1024,
     .max = 1LL << 31,
     .metavar = "SIZE",
     .help = "largest rendered document; a larger one is invalid"},
    {.name = "progress_interval",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(sync_opts_t, progress_ms),
     .default_value = "5s",
     .min = 100,
     .max = 3600000,
     .metavar = "DURATION",
     .help = "how often progress is reported (a terminal redraws twice a second)"},
    {.name = "skip_invalid",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(sync_opts_t, skip_invalid),
     .default_value = "false",
     .help = "record documents that cannot be written in _migrate.invalid_docs and go on"},
    {.name = "worker",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(sync_opts_t, worker_only),
     .default_value = "false",
     .help = "only copy partitions of the plan another `migrate sync` made (scale-out)"},
    MG_MIGRATOR_OPTION_JSON(sync_opts_t, json, "print the final report as one JSON object"),
    {.name = "follow",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(sync_opts_t, follow),
     .default_value = "false",
     .help = "keep applying the change stream until stopped (else: until the lag is low)"},
    {.name = "reverse",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(sync_opts_t, reverse),
     .default_value = "false",
     .help = "after the cutover: apply PostgreSQL's changes to MongoDB from the reverse capture "
             "(docs/cdc.md \"The way back\"); with --follow until stopped, else until caught up"},
    {.name = "copy_only",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(sync_opts_t, copy_only),
     .default_value = "false",
     .help = "stop after the copy and the index build"},
    {.name = "max_lag",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(sync_opts_t, max_lag_ms),
     .default_value = "1s",
     .min = 0,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "without --follow, stop once the change stream's lag is at most this"},
    {.name = "batch_events",
     .type = MG_CONFIG_INT,
     .offset = offsetof(sync_opts_t, batch_events),
     .default_value = "5000",
     .min = 1,
     .max = 1000000,
     .metavar = "N",
     .help = "documents per apply transaction (a source transaction is never split)"},
    {.name = "batch_size",
     .type = MG_CONFIG_SIZE,
     .offset = offsetof(sync_opts_t, batch_bytes),
     .default_value = "32MB",
     .min = 1024,
     .max = 1LL << 32,
     .metavar = "SIZE",
     .help = "rendered JSON per apply transaction"},
    {.name = "batch_delay",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(sync_opts_t, batch_delay_ms),
     .default_value = "200ms",
     .min = 1,
     .max = 60000,
     .metavar = "DURATION",
     .help = "longest time a change waits in a batch"},
    {.name = "on_drop",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(sync_opts_t, on_drop),
     .default_value = "stop",
     .choices = on_drop_choices,
     .metavar = "POLICY",
     .help = "a collection dropped on the source: stop it with an error, empty its table, or "
             "keep it"},
    {.name = "on_rename",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(sync_opts_t, on_rename),
     .default_value = "stop",
     .choices = on_rename_choices,
     .metavar = "POLICY",
     .help = "a collection renamed on the source: stop it with an error, or follow the new name"},
    {.name = "metrics_port",
     .type = MG_CONFIG_INT,
     .offset = offsetof(sync_opts_t, metrics_port),
     .default_value = "0",
     .min = 0,
     .max = 65535,
     .metavar = "PORT",
     .help = "serve /metrics and /progress on 127.0.0.1:PORT while following (0: off)"},
    {.name = "resync",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(sync_opts_t, resync),
     .metavar = "DB.COLL",
     .help = "copy these collections again (patterns; '*' for all)"},
};
#define N_SYNC_OPTIONS (sizeof(sync_options) / sizeof(sync_options[0]))

/* prepare records T0, retries failed partitions, plans, and sets the phase: one transaction. */
static bool
prepare(mg_mongo_t *src, mg_state_t *st, const sync_opts_t *o, mg_error_t *error)
{
    uint32_t t, i;

    if (!mg_state_begin(st, error))
        return false;
    /* a new run retries partitions that failed before (maybe with --skip-invalid now); a
     * collection failed by its copy (a partition is pending again) is copied again, one the
     * change stream stopped stays failed: only --resync revives it */
    if (mg_migrator__copy_record_t0(src, st, &t, &i, error) &&
        mg_state_partitions_retry_failed(st, error) &&
        mg_migrator__copy_plan(src, st, o->partition_docs, o->partition_bytes, 4 * o->workers,
                               error) &&
        mg_state_collections_copy_start(st, error) &&
        mg_state_phase_advance(st, "copying", "initialized", "copying", error) &&
        mg_state_commit(st, error))
        return true;
    mg_state_rollback(st);
    return false;
}

static int64_t
peak_rss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)ru.ru_maxrss;
}

static void
print_json_report(const mg_copy_result_t *r, const char *outcome)
{
    int64_t docs = 0, bytes = 0;

    for (size_t k = 0; k < r->nworkers; k++) {
        docs += r->timing[k].docs;
        bytes += r->timing[k].bytes;
    }
    printf("{\"outcome\":\"%s\",\"seconds\":%.3f,\"docs\":%lld,\"bytes\":%lld,"
           "\"docs_per_s\":%.1f,\"peak_rss_kb\":%lld,\"indexes_built\":%zu,"
           "\"indexes_failed\":%zu,\"partitions_failed\":%lld,\"workers\":[",
           outcome, r->seconds, (long long)docs, (long long)bytes,
           r->seconds > 0 ? (double)docs / r->seconds : 0.0, (long long)peak_rss_kb(),
           r->indexes_built, r->indexes_failed, (long long)r->failed_partitions);
    for (size_t k = 0; k < r->nworkers; k++) {
        const mg_copy_timing_t *t = &r->timing[k];
        printf("%s{\"worker\":%zu,\"partitions\":%lld,\"docs\":%lld,\"bytes\":%lld,"
               "\"seconds\":%.3f,\"mongo_s\":%.3f,\"render_s\":%.3f,\"postgres_s\":%.3f,"
               "\"skipped_docs\":%lld,\"failed_partitions\":%lld}",
               k ? "," : "", k, (long long)t->partitions, (long long)t->docs, (long long)t->bytes,
               t->total_s, t->mongo_s, t->render_s, t->pg_s, (long long)t->skipped_docs,
               (long long)t->failed);
    }
    printf("]}\n");
}

static void
print_report(const sync_opts_t *o, const mg_copy_result_t *r, mg_copy_coll_t *colls, size_t ncolls,
             const char *outcome)
{
    int64_t docs = 0, bytes = 0;
    char a[32], b[32], rss[32];

    if (o->json) {
        print_json_report(r, outcome);
        return;
    }
    for (size_t k = 0; k < r->nworkers; k++) {
        docs += r->timing[k].docs;
        bytes += r->timing[k].bytes;
    }
    printf("copied %s documents (%s of BSON) in %.1f s: %.0f docs/s, %.1f MB/s; peak RSS %s\n",
           mg_format_count(docs, a, sizeof(a)), mg_format_bytes(bytes, b, sizeof(b)), r->seconds,
           r->seconds > 0 ? (double)docs / r->seconds : 0.0,
           r->seconds > 0 ? (double)bytes / r->seconds / 1048576.0 : 0.0,
           mg_format_bytes(peak_rss_kb() * 1024, rss, sizeof(rss)));
    printf("\nwhere the time went (share of each worker's wall time):\n");
    printf("  %-8s %10s %10s %8s %8s %9s %8s\n", "WORKER", "PARTITIONS", "DOCS", "MONGODB",
           "RENDER", "POSTGRES", "OTHER");
    for (size_t k = 0; k < r->nworkers; k++) {
        const mg_copy_timing_t *t = &r->timing[k];
        double tot = t->total_s > 0 ? t->total_s : 1;
        double other = tot - t->mongo_s - t->render_s - t->pg_s;
        printf("  %-8zu %10lld %10s %7.0f%% %7.0f%% %8.0f%% %7.0f%%\n", k, (long long)t->partitions,
               mg_format_count(t->docs, a, sizeof(a)), 100 * t->mongo_s / tot,
               100 * t->render_s / tot, 100 * t->pg_s / tot, 100 * (other > 0 ? other : 0) / tot);
    }
    printf("  (MONGODB: waiting for the source's cursor; POSTGRES: sending COPY data and "
           "committing)\n");
    if (ncolls > 0)
        printf("\n");
    for (size_t i = 0; i < ncolls; i++)
        printf("  %s.%s: %s documents, %lld/%lld partitions\n", colls[i].db, colls[i].coll,
               mg_format_count(atomic_load(&colls[i].docs_done), a, sizeof(a)),
               (long long)atomic_load(&colls[i].parts_done), (long long)colls[i].parts_total);
    if (r->indexes_built + r->indexes_failed > 0)
        printf("\nindexes: %zu built, %zu failed\n", r->indexes_built, r->indexes_failed);
    printf("\n%s\n", outcome);
}

/* run_follow runs the change-stream phase (cdc/) and reports its outcome. */
static int
run_follow(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const sync_opts_t *o = ctx->opts;
    mg_cdc_follow_settings_t fs = {
        .source_uri = o->source,
        .target = o->target,
        .state_schema = o->state_schema,
        .follow = o->follow,
        .max_lag_ms = o->max_lag_ms,
        .batch_events = o->batch_events,
        .batch_bytes = o->batch_bytes,
        .batch_delay_ms = o->batch_delay_ms,
        .on_drop = (mg_cdc_drop_policy_t)o->on_drop,
        .on_rename = (mg_cdc_rename_policy_t)o->on_rename,
        .skip_invalid = o->skip_invalid,
        .metrics_port = o->metrics_port,
        .stop = &ctx->stop,
    };
    mg_cdc_follow_t *f = mg_cdc_follow_new(&fs, error);
    int rc = f != NULL ? mg_cdc_follow_run(f, error) : (int)mg_exit_code_for_error(error);

    mg_cdc_follow_destroy(f);
    if (rc != MG_EXIT_OK) {
        if (!o->json) /* --json: stdout holds only the copy report */
            printf("change stream stopped: %s\n", error->message);
        return rc;
    }
    if (!o->json)
        printf("%s\n", mg_cmd_stopping(ctx)
                           ? "stopped: the last batch was committed; run migrate sync --follow to "
                             "go on"
                           : "caught up with the change stream; next: migrate validate, then "
                             "migrate cutover");
    return rc;
}

/*
 * start resyncs what --resync names, checks there is a plan (--worker) or
 * makes it, and loads the collections with their progress.
 */
static bool
start(mg_cmd_ctx_t *ctx, mg_copy_coll_t **colls, size_t *ncolls, mg_schema_fidelity_t *fidelity,
      mg_error_t *error)
{
    const sync_opts_t *o = ctx->opts;
    mg_migrator_res_t *res = mg_migrator__res(ctx);
    mg_state_migration_t mig;
    int64_t pending = 0, done = 0;
    size_t n = 0;

    if (o->resync.count > 0 && !o->worker_only) {
        if (!mg_state_resync(res->st, &o->resync, &n, error))
            return false;
        MG_LOG_EVENT(MG_LOG_NOTICE, "sync", "sync.resync",
                     MG_LOG_FIELDS(MG_LOG_UINT("collections", n)),
                     "%zu collections will be copied again", n);
    }
    if (o->worker_only) {
        if (!mg_state_partitions_count(res->st, "pending", &pending, error) ||
            !mg_state_partitions_count(res->st, "done", &done, error))
            return false;
        if (pending + done <= 0)
            return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                                "--worker: there is no copy plan yet; start `migrate sync` "
                                "(without --worker) first");
    } else if (!prepare(&res->src, res->st, o, error)) {
        return false;
    }
    if (!mg_state_migration_get(res->st, &mig, error))
        return false;
    *fidelity = mig.fidelity;
    return mg_migrator__copy_load_collections(res->st, colls, ncolls, error);
}

/* run_reverse runs the reverse sync (cdc/cdc_reverse.c) and reports its outcome. */
static int
run_reverse(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const sync_opts_t *o = ctx->opts;
    mg_cdc_reverse_settings_t rs = {
        .source_uri = o->source,
        .target = o->target,
        .state_schema = o->state_schema,
        .follow = o->follow,
        .batch_changes = o->batch_events,
        .batch_bytes = o->batch_bytes,
        .batch_delay_ms = o->batch_delay_ms,
        .stop = &ctx->stop,
    };
    mg_cdc_reverse_t *r = mg_cdc_reverse_new(&rs, error);
    int rc = r != NULL ? mg_cdc_reverse_run(r, error) : (int)mg_exit_code_for_error(error);
    mg_cdc_reverse_stats_t st = {0};
    char lsn[32];

    if (r != NULL)
        mg_cdc_reverse_stats(r, &st);
    mg_cdc_reverse_destroy(r);
    if (rc == MG_EXIT_OK || rc == MG_EXIT_INTERRUPTED)
        printf("reverse sync %s: %" PRId64 " transactions (%" PRId64
               " changes) applied to MongoDB, position %s\n",
               rc == MG_EXIT_OK ? "caught up" : "stopped", st.txns, st.changes,
               mg_cdc_lsn_text(st.lsn, lsn, sizeof(lsn)));
    return rc;
}

/*
 * after_cutover tells whether a cutover flipped the application to
 * PostgreSQL: then nothing is copied (a re-copy would overwrite rows the
 * application owns) and the follower only reports what the source took
 * after it (docs/cdc.md, "After the cutover").
 */
static bool
after_cutover(mg_cmd_ctx_t *ctx, bool *flipped, mg_error_t *error)
{
    const sync_opts_t *o = ctx->opts;
    mg_state_fence_t fc;

    if (!mg_state_follow_fence(mg_migrator__res(ctx)->st, NULL, &fc, error))
        return false;
    *flipped = fc.flipped;
    if (fc.flipped && (o->resync.count > 0 || o->worker_only || o->copy_only))
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                            "refused: the cutover flipped the application to PostgreSQL (at %s "
                            "UTC); its tables are the application's now and %s would write them",
                            fc.flipped_at, o->resync.count > 0 ? "--resync" : "a copy");
    return true;
}

static int
sync_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    sync_opts_t *o = ctx->opts;
    mg_copy_coll_t *colls = NULL;
    mg_copy_result_t r;
    size_t ncolls = 0;
    char worker_name[80], host[64];
    mg_copy_settings_t settings = {
        .source_uri = o->source,
        .target = o->target,
        .state_schema = o->state_schema,
        .worker_name = worker_name,
        .batch_docs = o->batch_docs,
        .flush_bytes = 1024 * 1024,
        .doc_cap_bytes = o->doc_cap,
        .skip_invalid = o->skip_invalid,
        .worker_only = o->worker_only,
        .stop = &ctx->stop,
    };
    int rc;
    bool flipped;

    memset(&r, 0, sizeof(r));
    /* the way back runs after the cutover by design: no fence applies to it */
    if (o->reverse)
        return run_reverse(ctx, error);
    if (!after_cutover(ctx, &flipped, error))
        return mg_exit_code_for_error(error);
    if (flipped) /* nothing to copy: the follower reports what came after, and exits */
        return run_follow(ctx, error);
    if (mg_config_source(ctx->config, "workers") == MG_CONFIG_SOURCE_UNSET) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->workers = n > 0 ? n : 1;
    }
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    snprintf(worker_name, sizeof(worker_name), "%s:%d", host, (int)getpid());
    /* a stop asked for while connecting: leave before planning anything */
    if (mg_cmd_stopping(ctx) || !start(ctx, &colls, &ncolls, &settings.fidelity, error)) {
        mg_migrator__copy_free_collections(colls, ncolls);
        if (!mg_cmd_stopping(ctx))
            return mg_exit_code_for_error(error);
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                     "interrupted by a signal before the copy; run the same command again");
        return MG_EXIT_INTERRUPTED;
    }
    rc = mg_migrator__copy_run(mg_migrator__res(ctx)->st, &settings, o->workers,
                               (double)o->progress_ms / 1000.0, colls, ncolls, &r, error);
    if (rc == MG_EXIT_INTERRUPTED)
        print_report(o, &r, colls, ncolls,
                     "interrupted at a partition boundary; run the same command again to "
                     "resume (done partitions are kept)");
    else if (rc != MG_EXIT_OK && r.worker_failed)
        print_report(o, &r, colls, ncolls,
                     "stopped by an error; fix it and run migrate sync again to resume");
    else if (rc == MG_EXIT_OK && (r.failed_partitions > 0 || r.indexes_failed > 0)) {
        print_report(o, &r, colls, ncolls,
                     "copy finished with failures: see `migrate status` (failed partitions "
                     "name the _id); fix and run migrate sync again, or use --skip-invalid");
        rc = MG_EXIT_FAILURE;
        /* the other collections still follow the change stream */
        if (!o->copy_only && !o->worker_only && !mg_cmd_stopping(ctx)) {
            int frc = run_follow(ctx, error);
            if (frc != MG_EXIT_OK)
                rc = frc;
        }
    } else if (rc == MG_EXIT_OK) {
        print_report(o, &r, colls, ncolls,
                     o->worker_only ? "worker done: no partition left to copy"
                     : o->copy_only ? "copy complete (--copy-only: the change stream was not "
                                      "applied)"
                                    : "copy complete; applying the change stream from T0");
        if (!o->worker_only && !o->copy_only)
            rc = run_follow(ctx, error);
    }
    mg_migrator__copy_result_cleanup(&r);
    mg_migrator__copy_free_collections(colls, ncolls);
    return rc;
}

const mg_cmd_t mg_migrator_cmd_sync = {
    .name = "sync",
    .summary = "copy every collection in parallel (resumable), then build the indexes",
    .usage = "--source URI --target URI [options]",
    .description = "Copy every planned collection in parallel, resumably, then build the "
                   "planned indexes\n(docs/sync.md). Run `migrate init` first.",
    .main = sync_main,
    .options = sync_options,
    .noptions = N_SYNC_OPTIONS,
    .opts_size = sizeof(sync_opts_t),
    .needs = MG_CMD_NEEDS_SOURCE | MG_CMD_NEEDS_STATE | MG_CMD_SIGNALS,
};
