/*
 * migrator/src/cli_sync.c - `migrate sync`: record T0, plan partitions,
 * copy them with N workers (threads, each with its own MongoDB and
 * PostgreSQL connections), build the planned indexes, and report where the
 * time went. `--worker` only copies partitions of an existing plan, for
 * scale-out from other processes or hosts (docs/sync.md).
 */
#include "migrator_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SQL_CAP (1024 * 1024)

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
    {.name = "source",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(sync_opts_t, source),
     .required = true,
     .metavar = "URI",
     .help = "MongoDB connection string of the source"},
    {.name = "target",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(sync_opts_t, target),
     .required = true,
     .metavar = "URI",
     .help = "PostgreSQL connection string of the target"},
    {.name = "state_schema",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(sync_opts_t, state_schema),
     .default_value = MG_STATE_SCHEMA_DEFAULT,
     .metavar = "NAME",
     .help = "schema holding the tool's state on the target"},
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
    {.name = "json",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(sync_opts_t, json),
     .default_value = "false",
     .help = "print the final report as one JSON object"},
    {.name = "follow",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(sync_opts_t, follow),
     .default_value = "false",
     .help = "keep applying the change stream until stopped (else: until the lag is low)"},
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

static atomic_int stop_requested;

static void
on_signal(int sig)
{
    int v = atomic_load(&stop_requested);

    (void)sig;
    atomic_store(&stop_requested, v < 2 ? v + 1 : 2);
}

typedef struct {
    const mg_copy_settings_t *settings;
    int index;
    mg_copy_coll_t *colls;
    size_t ncolls;
    mg_copy_timing_t timing;
    mg_error_t error;
    bool ok;
    atomic_int finished;
} worker_arg_t;

static void *
worker_main(void *varg)
{
    worker_arg_t *a = varg;
    sigset_t all;

    /* signals go to the main thread, which turns them into stop requests */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    mg_error_clear(&a->error);
    a->ok = mg_migrator__copy_worker_run(a->settings, a->index, a->colls, a->ncolls, &a->timing,
                                         &a->error);
    if (!a->ok) {
        mg_log_error(MG_LOG_ERROR, "copy", &a->error);
        /* one failed worker stops the run: the others finish their partition */
        int zero = 0;
        atomic_compare_exchange_strong(&stop_requested, &zero, 1);
    }
    atomic_store(&a->finished, 1);
    return NULL;
}

/* MAX_COPY_ROUNDS bounds how often the copy restarts for partitions that a
 * failover made pending again after every worker finished. */
#define MAX_COPY_ROUNDS 5

static void
add_timing(mg_copy_timing_t *acc, const mg_copy_timing_t *t)
{
    acc->mongo_s += t->mongo_s;
    acc->render_s += t->render_s;
    acc->pg_s += t->pg_s;
    acc->total_s += t->total_s;
    acc->docs += t->docs;
    acc->bytes += t->bytes;
    acc->partitions += t->partitions;
    acc->failed += t->failed;
    acc->skipped_docs += t->skipped_docs;
}

/* ---- progress ---- */

typedef struct {
    double started;
    int64_t docs_at_start;
    int64_t bytes_at_start;
    int lines_drawn;
    bool tty;
} progress_t;

static void
fmt_eta(double seconds, char *buf, size_t bufsz)
{
    if (seconds < 0 || seconds > 99 * 3600) {
        snprintf(buf, bufsz, "--:--");
        return;
    }
    int s = (int)seconds;
    if (s >= 3600)
        snprintf(buf, bufsz, "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
    else
        snprintf(buf, bufsz, "%d:%02d", s / 60, s % 60);
}

static void
bar(char *buf, size_t width, double frac)
{
    size_t fill = (size_t)(frac * (double)width);

    if (frac > 1)
        fill = width;
    for (size_t i = 0; i < width; i++)
        buf[i] = i < fill ? '#' : '.';
    buf[width] = '\0';
}

static void
report_progress(progress_t *pr, mg_copy_coll_t *colls, size_t ncolls, bool final)
{
    int64_t docs = 0, bytes = 0, total = 0;
    double now = mg_now_s(), elapsed = now - pr->started;
    char a[32], b[32], eta[32], line[256], bars[41];

    for (size_t i = 0; i < ncolls; i++) {
        docs += atomic_load(&colls[i].docs_done);
        bytes += atomic_load(&colls[i].bytes_done);
        total += colls[i].est_docs;
    }
    double rate = elapsed > 0 ? (double)(docs - pr->docs_at_start) / elapsed : 0;
    double mbs = elapsed > 0 ? (double)(bytes - pr->bytes_at_start) / elapsed / 1048576.0 : 0;
    double eta_s = rate > 0 ? (double)(total - docs) / rate : -1;
    if (total < docs)
        total = docs;

    if (pr->tty) {
        if (pr->lines_drawn > 0)
            fprintf(stderr, "\033[%dA", pr->lines_drawn);
        int drawn = 0;
        for (size_t i = 0; i < ncolls && drawn < 12; i++) {
            mg_copy_coll_t *c = &colls[i];
            int64_t cd = atomic_load(&c->docs_done);
            int64_t ct = c->est_docs > cd ? c->est_docs : cd;
            char ns[40];
            snprintf(ns, sizeof(ns), "%s.%s", c->db, c->coll);
            bar(bars, 24, ct > 0 ? (double)cd / (double)ct : 1.0);
            snprintf(line, sizeof(line), "%-32.32s [%s] %3d%% %9s docs %10s  %lld/%lld parts", ns,
                     bars, ct > 0 ? (int)(100.0 * (double)cd / (double)ct) : 100,
                     mg_format_count(cd, a, sizeof(a)),
                     mg_format_bytes(atomic_load(&c->bytes_done), b, sizeof(b)),
                     (long long)atomic_load(&c->parts_done), (long long)c->parts_total);
            fprintf(stderr, "\033[K%s\n", line);
            drawn++;
        }
        fmt_eta(eta_s, eta, sizeof(eta));
        bar(bars, 40, total > 0 ? (double)docs / (double)total : 1.0);
        fprintf(stderr, "\033[Ktotal [%s] %3d%% %s docs  %s  %.0f docs/s  %.1f MB/s  ETA %s\n",
                bars, total > 0 ? (int)(100.0 * (double)docs / (double)total) : 100,
                mg_format_count(docs, a, sizeof(a)), mg_format_bytes(bytes, b, sizeof(b)), rate,
                mbs, eta);
        pr->lines_drawn = drawn + 1;
        return;
    }
    for (size_t i = 0; i < ncolls; i++) {
        mg_copy_coll_t *c = &colls[i];
        int64_t cd = atomic_load(&c->docs_done);
        if (!final && (cd == 0 || atomic_load(&c->parts_done) == c->parts_total))
            continue; /* only collections in progress between the final report */
        MG_LOG_EVENT(MG_LOG_INFO, "copy", "sync.progress",
                     MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll),
                                   MG_LOG_INT("docs", cd), MG_LOG_INT("docs_total", c->est_docs),
                                   MG_LOG_INT("bytes", atomic_load(&c->bytes_done)),
                                   MG_LOG_INT("partitions_done", atomic_load(&c->parts_done)),
                                   MG_LOG_INT("partitions", c->parts_total)),
                     "copying %s.%s: %lld of ~%lld documents", c->db, c->coll, (long long)cd,
                     (long long)c->est_docs);
    }
    MG_LOG_EVENT(MG_LOG_INFO, "copy", "sync.progress",
                 MG_LOG_FIELDS(MG_LOG_INT("docs", docs), MG_LOG_INT("docs_total", total),
                               MG_LOG_INT("bytes", bytes), MG_LOG_DOUBLE("docs_per_s", rate),
                               MG_LOG_DOUBLE("mb_per_s", mbs), MG_LOG_DOUBLE("eta_s", eta_s)),
                 "copy: %lld of ~%lld documents, %.0f docs/s", (long long)docs, (long long)total,
                 rate);
}

/* save_progress writes this process's live counters for `migrate status`. */
static void
save_progress(PGconn *pg, const char *state_schema, const char *name, mg_copy_coll_t *colls,
              size_t ncolls, int64_t docs0, int64_t bytes0)
{
    mg_buf_t sql;
    mg_error_t e;
    char d[32], b[32];
    int64_t docs = 0, bytes = 0;
    PGresult *res;

    for (size_t i = 0; i < ncolls; i++) {
        docs += atomic_load(&colls[i].docs_done);
        bytes += atomic_load(&colls[i].bytes_done);
    }
    snprintf(d, sizeof(d), "%lld", (long long)(docs - docs0));
    snprintf(b, sizeof(b), "%lld", (long long)(bytes - bytes0));
    const char *params[3] = {name, d, b};
    mg_buf_init(&sql, 4096);
    if (mg_buf_append_str(&sql, "INSERT INTO ", &e) &&
        mg_schema_quote_ident(state_schema, &sql, &e) &&
        mg_buf_append_str(&sql,
                          ".copy_progress (worker, docs, bytes) VALUES ($1, $2, $3) ON CONFLICT "
                          "(worker) DO UPDATE SET docs = EXCLUDED.docs, bytes = EXCLUDED.bytes, "
                          "updated_at = now()",
                          &e)) {
        res = mg_pg_query(pg, sql.data, 3, params, &e);
        PQclear(res);
    }
    mg_buf_cleanup(&sql);
}

/* ---- setup and index build ---- */

static bool
exec_fmt(PGconn *pg, const char *state_schema, const char *before, const char *after,
         mg_error_t *error)
{
    mg_buf_t sql;
    bool ok;

    mg_buf_init(&sql, SQL_CAP);
    ok = mg_buf_append_str(&sql, before, error) &&
         mg_schema_quote_ident(state_schema, &sql, error) &&
         mg_buf_append_str(&sql, after, error) && mg_pg_exec(pg, sql.data, error);
    mg_buf_cleanup(&sql);
    return ok;
}

/* prepare records T0, retries failed partitions, plans, and sets the phase. */
static bool
prepare(mg_mongo_t *src, PGconn *pg, const sync_opts_t *o, mg_error_t *error)
{
    uint32_t t, i;
    const char *ss = o->state_schema;

    if (!mg_pg_exec(pg, "BEGIN", error))
        return false;
    if (!mg_migrator__copy_record_t0(src, pg, ss, &t, &i, error))
        goto rollback;
    /* a new run retries partitions that failed before (maybe with --skip-invalid now) */
    if (!exec_fmt(pg, ss, "UPDATE ",
                  ".partitions SET status = 'pending', error = NULL WHERE status = 'failed'",
                  error))
        goto rollback;
    if (!mg_migrator__copy_plan(src, pg, ss, o->partition_docs, o->partition_bytes, 4 * o->workers,
                                error))
        goto rollback;
    /* A collection failed by its copy (a partition is pending again) is
     * copied again; one the change stream stopped (its partitions are all
     * done) stays failed: following it again from the current checkpoint
     * would skip the changes it missed, so only --resync revives it. */
    mg_buf_t sql;
    bool revived;
    mg_buf_init(&sql, SQL_CAP);
    revived = mg_buf_append_str(&sql, "UPDATE ", error) && mg_schema_quote_ident(ss, &sql, error) &&
              mg_buf_append_str(&sql,
                                ".collections c SET status = 'copying', error = NULL, "
                                "updated_at = now() WHERE c.status = 'planned' OR (c.status = "
                                "'failed' AND EXISTS (SELECT 1 FROM ",
                                error) &&
              mg_schema_quote_ident(ss, &sql, error) &&
              mg_buf_append_str(&sql,
                                ".partitions p WHERE p.db = c.db AND p.coll = c.coll AND "
                                "p.status = 'pending'))",
                                error) &&
              mg_pg_exec(pg, sql.data, error);
    mg_buf_cleanup(&sql);
    if (!revived || !exec_fmt(pg, ss, "UPDATE ",
                              ".migration SET phase = 'copying', updated_at = now() WHERE phase IN "
                              "('initialized', 'copying')",
                              error))
        goto rollback;
    if (!mg_pg_exec(pg, "COMMIT", error))
        goto rollback;
    return true;
rollback : {
    PGresult *r = PQexec(pg, "ROLLBACK");
    PQclear(r);
}
    return false;
}

typedef struct {
    char *db, *coll, *name, *sql;
} index_job_t;

typedef struct {
    const sync_opts_t *o;
    index_job_t *jobs;
    size_t njobs;
    atomic_size_t next;
    atomic_size_t done;
    atomic_size_t failed;
} index_pool_t;

static void
index_mark(PGconn *pg, const char *ss, const index_job_t *j, const char *status, const char *note)
{
    mg_buf_t sql;
    mg_error_t e;
    const char *params[5] = {j->db, j->coll, j->name, status, note};
    PGresult *res;

    mg_buf_init(&sql, 4096);
    if (mg_buf_append_str(&sql, "UPDATE ", &e) && mg_schema_quote_ident(ss, &sql, &e) &&
        mg_buf_append_str(&sql,
                          ".indexes SET build_status = $4, note = coalesce($5, note) WHERE db = "
                          "$1 AND coll = $2 AND mongo_name = $3",
                          &e)) {
        res = mg_pg_query(pg, sql.data, 5, params, &e);
        PQclear(res);
    }
    mg_buf_cleanup(&sql);
}

static void *
index_main(void *varg)
{
    index_pool_t *pool = varg;
    mg_error_t error;
    PGconn *pg;
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pg = mg_pg_connect(pool->o->target, &error);
    if (pg == NULL) {
        mg_log_error(MG_LOG_ERROR, "copy", &error);
        return NULL;
    }
    mg_pg_exec(pg, "SET maintenance_work_mem = '256MB'", &error);
    for (;;) {
        size_t k = atomic_fetch_add(&pool->next, 1);
        if (k >= pool->njobs || atomic_load(&stop_requested) > 0)
            break;
        index_job_t *j = &pool->jobs[k];
        double t = mg_now_s();
        bool built = mg_pg_exec(pg, j->sql, &error);
        /* a failover or restart mid-build: the build rolled back with its
         * transaction; IF NOT EXISTS makes the retry safe either way */
        while (!built && mg_pg_lost(pg, &error)) {
            char why[MG_ERROR_MESSAGE_SIZE];
            snprintf(why, sizeof(why), "%s (building index %s of %s.%s)", error.message, j->name,
                     j->db, j->coll);
            if (!mg_pg_reconnect(&pg, pool->o->target, "SET maintenance_work_mem = '256MB'", "copy",
                                 why, MG_PG_RECONNECT_BUDGET_S, &stop_requested, 1, &error))
                break;
            built = mg_pg_exec(pg, j->sql, &error);
        }
        if (pg == NULL) {
            atomic_fetch_add(&pool->failed, 1);
            mg_log_error(MG_LOG_ERROR, "copy", &error);
            return NULL;
        }
        if (built) {
            index_mark(pg, pool->o->state_schema, j, "built", NULL);
            size_t d = atomic_fetch_add(&pool->done, 1) + 1;
            MG_LOG_EVENT(MG_LOG_INFO, "copy", "sync.index",
                         MG_LOG_FIELDS(MG_LOG_STR("db", j->db), MG_LOG_STR("collection", j->coll),
                                       MG_LOG_STR("index", j->name),
                                       MG_LOG_DOUBLE("seconds", mg_now_s() - t),
                                       MG_LOG_UINT("done", d), MG_LOG_UINT("of", pool->njobs)),
                         "built index %s of %s.%s (%zu of %zu)", j->name, j->db, j->coll, d,
                         pool->njobs);
        } else {
            atomic_fetch_add(&pool->failed, 1);
            mg_log_error(MG_LOG_ERROR, "copy", &error);
            index_mark(pg, pool->o->state_schema, j, "failed", error.message);
        }
    }
    PQfinish(pg);
    return NULL;
}

/* build_indexes builds every pending index of fully copied collections. */
static bool
build_indexes(PGconn *pg, const sync_opts_t *o, size_t *built, size_t *failed, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    index_pool_t pool;
    pthread_t *threads = NULL;
    size_t nthreads = 0;
    bool ok = false;

    memset(&pool, 0, sizeof(pool));
    pool.o = o;
    mg_buf_init(&sql, 4096);
    if (!mg_buf_append_str(&sql, "SELECT i.db, i.coll, i.mongo_name, i.sql FROM ", error) ||
        !mg_schema_quote_ident(o->state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".indexes i WHERE i.build_status IN ('pending', 'failed') AND "
                           "i.sql IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ",
                           error) ||
        !mg_schema_quote_ident(o->state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = i.db AND p.coll = i.coll AND "
                           "p.status <> 'done') ORDER BY i.db, i.coll, i.mongo_name",
                           error))
        goto done;
    res = mg_pg_query(pg, sql.data, 0, NULL, error);
    if (res == NULL)
        goto done;
    pool.njobs = (size_t)PQntuples(res);
    pool.jobs = calloc(pool.njobs + 1, sizeof(index_job_t));
    if (pool.jobs == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < pool.njobs; k++) {
        pool.jobs[k].db = PQgetvalue(res, (int)k, 0);
        pool.jobs[k].coll = PQgetvalue(res, (int)k, 1);
        pool.jobs[k].name = PQgetvalue(res, (int)k, 2);
        pool.jobs[k].sql = PQgetvalue(res, (int)k, 3);
    }
    if (pool.njobs > 0) {
        MG_LOG_EVENT(MG_LOG_INFO, "copy", "sync.index",
                     MG_LOG_FIELDS(MG_LOG_UINT("indexes", pool.njobs)), "building %zu indexes",
                     pool.njobs);
        nthreads = (size_t)o->workers < pool.njobs ? (size_t)o->workers : pool.njobs;
        threads = calloc(nthreads, sizeof(pthread_t));
        if (threads == NULL) {
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto done;
        }
        for (size_t k = 0; k < nthreads; k++)
            pthread_create(&threads[k], NULL, index_main, &pool);
        for (size_t k = 0; k < nthreads; k++)
            pthread_join(threads[k], NULL);
    }
    *built = atomic_load(&pool.done);
    *failed = atomic_load(&pool.failed) +
              (pool.njobs - atomic_load(&pool.done) - atomic_load(&pool.failed));
    ok = true;
done:
    free(threads);
    free(pool.jobs);
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
}

/* finish_collections marks collections whose partitions are all done as copied. */
static bool
finish_collections(PGconn *pg, const char *ss, mg_error_t *error)
{
    mg_buf_t sql;
    bool ok;

    mg_buf_init(&sql, 8192);
    ok = mg_buf_append_str(&sql, "UPDATE ", error) && mg_schema_quote_ident(ss, &sql, error) &&
         mg_buf_append_str(&sql, ".collections c SET status = CASE WHEN EXISTS (SELECT 1 FROM ",
                           error) &&
         mg_schema_quote_ident(ss, &sql, error) &&
         mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = c.db AND p.coll = c.coll AND p.status = "
                           "'failed') THEN 'failed' ELSE 'copied' END, error = (SELECT "
                           "string_agg(p.error, '; ') FROM ",
                           error) &&
         mg_schema_quote_ident(ss, &sql, error) &&
         mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = c.db AND p.coll = c.coll AND p.status = "
                           "'failed'), updated_at = now() WHERE c.status = 'copying' AND NOT "
                           "EXISTS (SELECT 1 FROM ",
                           error) &&
         mg_schema_quote_ident(ss, &sql, error) &&
         mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = c.db AND p.coll = c.coll AND "
                           "p.status = 'pending')",
                           error) &&
         mg_pg_exec(pg, sql.data, error);
    mg_buf_cleanup(&sql);
    return ok;
}

static int64_t
peak_rss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)ru.ru_maxrss;
}

static void
print_report(const sync_opts_t *o, worker_arg_t *args, size_t nworkers, mg_copy_coll_t *colls,
             size_t ncolls, double seconds, size_t built, size_t ifailed, int64_t failed_parts,
             const char *outcome)
{
    int64_t docs = 0, bytes = 0;
    char a[32], b[32];

    for (size_t k = 0; k < nworkers; k++) {
        docs += args[k].timing.docs;
        bytes += args[k].timing.bytes;
    }
    if (o->json) {
        printf("{\"outcome\":\"%s\",\"seconds\":%.3f,\"docs\":%lld,\"bytes\":%lld,"
               "\"docs_per_s\":%.1f,\"peak_rss_kb\":%lld,\"indexes_built\":%zu,"
               "\"indexes_failed\":%zu,\"partitions_failed\":%lld,\"workers\":[",
               outcome, seconds, (long long)docs, (long long)bytes,
               seconds > 0 ? (double)docs / seconds : 0.0, (long long)peak_rss_kb(), built, ifailed,
               (long long)failed_parts);
        for (size_t k = 0; k < nworkers; k++) {
            mg_copy_timing_t *t = &args[k].timing;
            printf("%s{\"worker\":%zu,\"partitions\":%lld,\"docs\":%lld,\"bytes\":%lld,"
                   "\"seconds\":%.3f,\"mongo_s\":%.3f,\"render_s\":%.3f,\"postgres_s\":%.3f,"
                   "\"skipped_docs\":%lld,\"failed_partitions\":%lld}",
                   k ? "," : "", k, (long long)t->partitions, (long long)t->docs,
                   (long long)t->bytes, t->total_s, t->mongo_s, t->render_s, t->pg_s,
                   (long long)t->skipped_docs, (long long)t->failed);
        }
        printf("]}\n");
        return;
    }
    char rss[32];
    printf("copied %s documents (%s of BSON) in %.1f s: %.0f docs/s, %.1f MB/s; peak RSS %s\n",
           mg_format_count(docs, a, sizeof(a)), mg_format_bytes(bytes, b, sizeof(b)), seconds,
           seconds > 0 ? (double)docs / seconds : 0.0,
           seconds > 0 ? (double)bytes / seconds / 1048576.0 : 0.0,
           mg_format_bytes(peak_rss_kb() * 1024, rss, sizeof(rss)));
    printf("\nwhere the time went (share of each worker's wall time):\n");
    printf("  %-8s %10s %10s %8s %8s %9s %8s\n", "WORKER", "PARTITIONS", "DOCS", "MONGODB",
           "RENDER", "POSTGRES", "OTHER");
    for (size_t k = 0; k < nworkers; k++) {
        mg_copy_timing_t *t = &args[k].timing;
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
    if (built + ifailed > 0)
        printf("\nindexes: %zu built, %zu failed\n", built, ifailed);
    printf("\n%s\n", outcome);
}

/* run_follow runs the change-stream phase and reports its outcome. */
static int
run_follow(const sync_opts_t *o, mg_error_t *error)
{
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
        .stop = &stop_requested,
    };
    int rc;

    mg_error_clear(error);
    rc = mg_cdc_follow_run(&fs, error);
    if (rc != MG_EXIT_OK) {
        mg_log_error(MG_LOG_ERROR, "cdc", error);
        fprintf(stderr, "migrate sync: %s\n", error->message);
        if (!o->json) /* --json: stdout holds only the copy report */
            printf("change stream stopped: %s\n", error->message);
        return rc;
    }
    if (!o->json)
        printf("%s\n", atomic_load(&stop_requested) > 0
                           ? "stopped: the last batch was committed; run migrate sync --follow to "
                             "go on"
                           : "caught up with the change stream; next: migrate validate, then "
                             "migrate cutover");
    return rc;
}

static void
print_usage(FILE *stream)
{
    fprintf(stream, "usage: migrate sync --source URI --target URI [options]\n\n"
                    "Copy every planned collection in parallel, resumably, then build the "
                    "planned indexes\n(docs/sync.md). Run `migrate init` first.\n\noptions:\n");
    mg_config_print_help(sync_options, N_SYNC_OPTIONS, "MIGRATE_", stream);
    fprintf(stream, "  %-34s %s\n", "   --config FILE",
            "read options from a JSON file [env MIGRATE_CONFIG]");
}

static int64_t
count_status(PGconn *pg, const char *ss, const char *status, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    int64_t n = -1;
    const char *params[1] = {status};

    mg_buf_init(&sql, 4096);
    if (mg_buf_append_str(&sql, "SELECT count(*) FROM ", error) &&
        mg_schema_quote_ident(ss, &sql, error) &&
        mg_buf_append_str(&sql, ".partitions WHERE status = $1", error) &&
        (res = mg_pg_query(pg, sql.data, 1, params, error)) != NULL)
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    mg_buf_cleanup(&sql);
    return n;
}

/*
 * after_copy marks finished collections, builds their indexes, counts failed
 * partitions and records the phase. Each step is idempotent, so after a
 * lost target the caller reconnects and runs it all again.
 */
static bool
after_copy(PGconn *pg, const sync_opts_t *o, size_t *built, size_t *ifailed, int64_t *failed_parts,
           mg_error_t *error)
{
    if (!finish_collections(pg, o->state_schema, error))
        return false;
    if (!build_indexes(pg, o, built, ifailed, error))
        return false;
    *failed_parts = count_status(pg, o->state_schema, "failed", error);
    if (*failed_parts < 0)
        return false;
    return *failed_parts > 0 || *ifailed > 0 ||
           exec_fmt(pg, o->state_schema, "UPDATE ",
                    ".migration SET phase = 'copied', updated_at = now() WHERE phase = "
                    "'copying'",
                    error);
}

int
mg_migrator_cmd_sync(const mg_cli_command_t *command, int argc, char **argv)
{
    sync_opts_t o;
    mg_config_t *config = NULL;
    mg_error_t error;
    mg_mongo_t src;
    PGconn *pg = NULL;
    mg_copy_coll_t *colls = NULL;
    size_t ncolls = 0;
    worker_arg_t *args = NULL;
    pthread_t *threads = NULL;
    mg_copy_timing_t *earlier = NULL;
    int rounds = 0;
    mg_copy_settings_t settings;
    int first = 0, rc = MG_EXIT_FAILURE;
    size_t built = 0, ifailed = 0;
    int64_t failed_parts = 0;
    struct sigaction sa, old_int, old_term;
    bool handlers = false;
    char worker_name[80], host[64];

    memset(&o, 0, sizeof(o));
    memset(&src, 0, sizeof(src));
    mg_error_clear(&error);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return MG_EXIT_OK;
        }
    }
    config = mg_config_new(sync_options, N_SYNC_OPTIONS, &o, "MIGRATE_");
    if (config == NULL)
        return MG_EXIT_FAILURE;
    if (!mg_config_load(config, argc, argv, NULL, &first, &error))
        goto fail;
    if (first < argc) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "unexpected argument \"%s\"", argv[first]);
        goto fail;
    }
    if (mg_config_source(config, "workers") == MG_CONFIG_SOURCE_UNSET) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.workers = n > 0 ? n : 1;
    }

    if (!mg_mongo_open(o.source, "migrate", &src, &error))
        goto fail;
    pg = mg_pg_connect(o.target, &error);
    if (pg == NULL)
        goto fail;
    {
        bool exists;
        int version;
        if (!mg_state_probe(pg, o.state_schema, &exists, &version, &error))
            goto fail;
        if (!exists || version == 0) {
            fprintf(stderr,
                    "migrate sync: the target has no state schema \"%s\": run migrate init "
                    "first\n",
                    o.state_schema);
            rc = MG_EXIT_STATE;
            goto done;
        }
        if (version != MG_STATE_VERSION) {
            fprintf(stderr,
                    "migrate sync: state schema \"%s\" has version %d; this migrate "
                    "understands %d\n",
                    o.state_schema, version, MG_STATE_VERSION);
            rc = MG_EXIT_STATE;
            goto done;
        }
    }
    if (o.resync.count > 0 && !o.worker_only) {
        size_t n = 0;
        if (!mg_migrator__resync(pg, o.state_schema, &o.resync, &n, &error))
            goto fail;
        MG_LOG_EVENT(MG_LOG_NOTICE, "sync", "sync.resync",
                     MG_LOG_FIELDS(MG_LOG_UINT("collections", n)),
                     "%zu collections will be copied again", n);
    }
    if (o.worker_only) {
        if (count_status(pg, o.state_schema, "pending", &error) +
                count_status(pg, o.state_schema, "done", &error) <=
            0) {
            if (mg_error_is_set(&error))
                goto fail;
            fprintf(stderr, "migrate sync --worker: there is no copy plan yet; start `migrate "
                            "sync` (without --worker) first\n");
            rc = MG_EXIT_STATE;
            goto done;
        }
    } else if (!prepare(&src, pg, &o, &error)) {
        goto fail;
    }
    if (!mg_migrator__copy_load_collections(pg, o.state_schema, &colls, &ncolls, &error))
        goto fail;

    /* workers */
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    snprintf(worker_name, sizeof(worker_name), "%s:%d", host, (int)getpid());
    atomic_store(&stop_requested, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    handlers = true;
    settings = (mg_copy_settings_t){
        .source_uri = o.source,
        .target = o.target,
        .state_schema = o.state_schema,
        .worker_name = worker_name,
        .batch_docs = o.batch_docs,
        .flush_bytes = 1024 * 1024,
        .doc_cap_bytes = o.doc_cap,
        .skip_invalid = o.skip_invalid,
        .stop = &stop_requested,
    };
    {
        PGresult *res =
            mg_pg_query(pg, "SELECT 1", 0, NULL, &error); /* keep the control connection warm */
        PQclear(res);
        mg_buf_t q;
        mg_buf_init(&q, 4096);
        if (mg_buf_append_str(&q, "SELECT type_fidelity FROM ", &error) &&
            mg_schema_quote_ident(o.state_schema, &q, &error) &&
            mg_buf_append_str(&q, ".migration WHERE id = 1", &error) &&
            (res = mg_pg_query(pg, q.data, 0, NULL, &error)) != NULL) {
            if (PQntuples(res) == 1)
                mg_schema_fidelity_parse(PQgetvalue(res, 0, 0), &settings.fidelity);
            PQclear(res);
        }
        mg_buf_cleanup(&q);
        if (mg_error_is_set(&error))
            goto fail;
    }
    args = calloc((size_t)o.workers, sizeof(*args));
    threads = calloc((size_t)o.workers, sizeof(*threads));
    earlier = calloc((size_t)o.workers, sizeof(*earlier));
    if (args == NULL || threads == NULL || earlier == NULL) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto fail;
    }
    progress_t pr = {.started = mg_now_s(),
                     .tty = isatty(STDERR_FILENO) && getenv("MIGRATE_NO_TTY") == NULL};
    for (size_t i = 0; i < ncolls; i++) {
        pr.docs_at_start += atomic_load(&colls[i].docs_done);
        pr.bytes_at_start += atomic_load(&colls[i].bytes_done);
    }
    MG_LOG_EVENT(MG_LOG_NOTICE, "copy", "sync.start",
                 MG_LOG_FIELDS(MG_LOG_INT("workers", o.workers), MG_LOG_UINT("collections", ncolls),
                               MG_LOG_BOOL("worker_only", o.worker_only)),
                 "copying with %lld workers", (long long)o.workers);
copy_round:
    for (int64_t k = 0; k < o.workers; k++) {
        args[k].settings = &settings;
        args[k].index = (int)k;
        args[k].colls = colls;
        args[k].ncolls = ncolls;
        atomic_init(&args[k].finished, 0);
        pthread_create(&threads[k], NULL, worker_main, &args[k]);
    }
    double last_report = mg_now_s(), last_save = last_report;
    for (;;) {
        bool all = true;
        for (int64_t k = 0; k < o.workers; k++)
            all = all && atomic_load(&args[k].finished);
        if (all)
            break;
        usleep(100 * 1000);
        double now = mg_now_s();
        double every = pr.tty ? 0.5 : (double)o.progress_ms / 1000.0;
        if (now - last_report >= every) {
            report_progress(&pr, colls, ncolls, false);
            last_report = now;
        }
        if (now - last_save >= 2.0) {
            /* the control connection only records progress while workers
             * copy; after a lost target it tries again on the next round */
            if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
                mg_error_t e;
                if (pg != NULL)
                    PQfinish(pg);
                pg = mg_pg_connect(o.target, &e);
            }
            if (pg != NULL)
                save_progress(pg, o.state_schema, worker_name, colls, ncolls, pr.docs_at_start,
                              pr.bytes_at_start);
            last_save = now;
        }
    }
    for (int64_t k = 0; k < o.workers; k++) {
        pthread_join(threads[k], NULL);
        add_timing(&earlier[k], &args[k].timing); /* the report covers every round */
        args[k].timing = earlier[k];
    }
    report_progress(&pr, colls, ncolls, true);
    double seconds = mg_now_s() - pr.started;

    bool worker_failed = false;
    for (int64_t k = 0; k < o.workers; k++) {
        if (!args[k].ok) {
            worker_failed = true;
            error = args[k].error;
        }
    }
    {
        mg_error_t e2;
        mg_buf_t q;
        mg_buf_init(&q, 1024);
        if (mg_buf_append_str(&q, "DELETE FROM ", &e2) &&
            mg_schema_quote_ident(o.state_schema, &q, &e2) &&
            mg_buf_append_str(&q, ".copy_progress WHERE worker = $1", &e2)) {
            const char *p1[1] = {worker_name};
            PGresult *res = mg_pg_query(pg, q.data, 1, p1, &e2);
            PQclear(res);
        }
        mg_buf_cleanup(&q);
    }
    if (worker_failed) {
        print_report(&o, args, (size_t)o.workers, colls, ncolls, seconds, 0, 0, 0,
                     "stopped by an error; fix it and run migrate sync again to resume");
        goto fail;
    }
    if (atomic_load(&stop_requested) > 0) {
        print_report(&o, args, (size_t)o.workers, colls, ncolls, seconds, 0, 0, 0,
                     "interrupted at a partition boundary; run the same command again to "
                     "resume (done partitions are kept)");
        rc = MG_EXIT_INTERRUPTED;
        goto done;
    }
    if (!o.worker_only) {
        /* A partition whose commit a failover lost (asynchronous commit, or
         * a replica promoted without it) is pending again although every
         * worker has finished: copy it before the collection counts as
         * copied. */
        int64_t pending;
        while ((pending = count_status(pg, o.state_schema, "pending", &error)) < 0) {
            char why[MG_ERROR_MESSAGE_SIZE];
            if (!mg_pg_lost(pg, &error))
                goto fail;
            snprintf(why, sizeof(why), "%s", error.message);
            mg_error_clear(&error);
            if (!mg_pg_reconnect(&pg, o.target, NULL, "copy", why, MG_PG_RECONNECT_BUDGET_S,
                                 &stop_requested, 1, &error))
                goto fail;
        }
        if (pending > 0) {
            if (++rounds > MAX_COPY_ROUNDS) {
                mg_error_set(&error, MG_ERROR_DOMAIN_PG, 0,
                             "%lld partitions are still pending after %d copy rounds: their "
                             "commits keep getting lost on the target",
                             (long long)pending, MAX_COPY_ROUNDS);
                goto fail;
            }
            MG_LOG_EVENT(
                MG_LOG_WARNING, "copy", "sync.recopy",
                MG_LOG_FIELDS(MG_LOG_INT("partitions", pending), MG_LOG_INT("round", rounds + 1)),
                "%lld partitions are pending again (a commit lost in a failover); "
                "copying them again",
                (long long)pending);
            goto copy_round;
        }
        while (!after_copy(pg, &o, &built, &ifailed, &failed_parts, &error)) {
            char why[MG_ERROR_MESSAGE_SIZE];
            if (!mg_pg_lost(pg, &error))
                goto fail;
            snprintf(why, sizeof(why), "%s", error.message);
            if (!mg_pg_reconnect(&pg, o.target, NULL, "copy", why, MG_PG_RECONNECT_BUDGET_S,
                                 &stop_requested, 1, &error))
                goto fail;
        }
    }
    if (failed_parts > 0 || ifailed > 0) {
        print_report(&o, args, (size_t)o.workers, colls, ncolls, seconds, built, ifailed,
                     failed_parts,
                     "copy finished with failures: see `migrate status` (failed partitions "
                     "name the _id); fix and run migrate sync again, or use --skip-invalid");
        rc = MG_EXIT_FAILURE;
        /* the other collections still follow the change stream */
        if (!o.copy_only && !o.worker_only && atomic_load(&stop_requested) == 0) {
            int frc = run_follow(&o, &error);
            if (frc != MG_EXIT_OK)
                rc = frc;
        }
        goto done;
    }
    print_report(&o, args, (size_t)o.workers, colls, ncolls, seconds, built, ifailed, 0,
                 o.worker_only ? "worker done: no partition left to copy"
                 : o.copy_only ? "copy complete (--copy-only: the change stream was not applied)"
                               : "copy complete; applying the change stream from T0");
    rc = MG_EXIT_OK;
    if (!o.worker_only && !o.copy_only)
        rc = run_follow(&o, &error);
    goto done;

fail:
    if (!mg_error_is_set(&error))
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    mg_log_error(MG_LOG_ERROR, "sync", &error);
    fprintf(stderr, "migrate sync: %s\n", error.message);
    rc = mg_exit_code_for_error(&error);
done:
    if (handlers) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    free(args);
    free(threads);
    free(earlier);
    mg_migrator__copy_free_collections(colls, ncolls);
    if (pg != NULL)
        PQfinish(pg);
    mg_mongo_close(&src);
    mg_config_destroy(config);
    (void)command;
    return rc;
}
