/*
 * migrator/src/copy_run.c - one run of the bulk copy: N worker threads
 * (each with its own MongoDB and PostgreSQL connections) copy the planned
 * partitions while the main thread reports progress; partitions a failover
 * made pending again are copied in another round; then finished
 * collections are marked, their indexes built, and the phase recorded.
 * Every step after the copy is idempotent, so a lost target is reconnected
 * (mg_pg_reconnect) and the step run again.
 */
#include "migrator_internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* MAX_COPY_ROUNDS bounds how often the copy restarts for partitions that a
 * failover made pending again after every worker finished. */
#define MAX_COPY_ROUNDS 5

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

/* block_signals leaves signals to the main thread, which turns them into stop requests. */
static void
block_signals(void)
{
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}

static void *
worker_main(void *varg)
{
    worker_arg_t *a = varg;

    block_signals();
    mg_error_clear(&a->error);
    a->ok = mg_migrator__copy_worker_run(a->settings, a->index, a->colls, a->ncolls, &a->timing,
                                         &a->error);
    if (!a->ok) {
        /* one failed worker stops the run: the others finish their partition (the run
         * reports the first failure as its error, the others as log lines) */
        int zero = 0;
        atomic_compare_exchange_strong(a->settings->stop, &zero, 1);
    }
    atomic_store(&a->finished, 1);
    return NULL;
}

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

/* draw_progress redraws the terminal's progress bars in place. */
static void
draw_progress(progress_t *pr, mg_copy_coll_t *colls, size_t ncolls, int64_t docs, int64_t bytes,
              int64_t total, double rate, double mbs, double eta_s)
{
    char a[32], b[32], eta[32], line[256], bars[41];
    int drawn = 0;

    if (pr->lines_drawn > 0)
        fprintf(stderr, "\033[%dA", pr->lines_drawn);
    for (size_t i = 0; i < ncolls && drawn < 12; i++) {
        mg_copy_coll_t *c = &colls[i];
        int64_t cd = atomic_load(&c->docs_done);
        int64_t ct = c->est_docs > cd ? c->est_docs : cd;
        char ns[40];
        snprintf(ns, sizeof(ns), "%s.%s", c->db, c->coll);
        bar(bars, 24, ct > 0 ? (double)cd / (double)ct : 1.0);
        snprintf(line, sizeof(line), "%-32.32s [%s] %3d%% %9s docs %10s  %lld/%lld parts", ns, bars,
                 ct > 0 ? (int)(100.0 * (double)cd / (double)ct) : 100,
                 mg_format_count(cd, a, sizeof(a)),
                 mg_format_bytes(atomic_load(&c->bytes_done), b, sizeof(b)),
                 (long long)atomic_load(&c->parts_done), (long long)c->parts_total);
        fprintf(stderr, "\033[K%s\n", line);
        drawn++;
    }
    fmt_eta(eta_s, eta, sizeof(eta));
    bar(bars, 40, total > 0 ? (double)docs / (double)total : 1.0);
    fprintf(stderr, "\033[Ktotal [%s] %3d%% %s docs  %s  %.0f docs/s  %.1f MB/s  ETA %s\n", bars,
            total > 0 ? (int)(100.0 * (double)docs / (double)total) : 100,
            mg_format_count(docs, a, sizeof(a)), mg_format_bytes(bytes, b, sizeof(b)), rate, mbs,
            eta);
    pr->lines_drawn = drawn + 1;
}

/* report_progress draws bars on a terminal, or logs sync.progress lines. */
static void
report_progress(progress_t *pr, mg_copy_coll_t *colls, size_t ncolls, bool final)
{
    int64_t docs = 0, bytes = 0, total = 0;
    double elapsed = mg_now_s() - pr->started;

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
        draw_progress(pr, colls, ncolls, docs, bytes, total, rate, mbs, eta_s);
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

/*
 * save_progress writes this process's live counters for `migrate status`
 * (best effort: the control connection only records progress while the
 * workers copy; after a lost target it tries again on the next call).
 */
static void
save_progress(mg_state_t *st, const mg_copy_settings_t *s, const progress_t *pr,
              mg_copy_coll_t *colls, size_t ncolls)
{
    int64_t docs = 0, bytes = 0;
    PGconn *pg = mg_state_conn(st);
    mg_error_t e;

    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        if (pg != NULL)
            PQfinish(pg);
        mg_state_set_conn(st, pg = mg_pg_connect(s->target, &e));
        if (pg == NULL)
            return;
    }
    for (size_t i = 0; i < ncolls; i++) {
        docs += atomic_load(&colls[i].docs_done);
        bytes += atomic_load(&colls[i].bytes_done);
    }
    mg_state_progress_save(st, s->worker_name, docs - pr->docs_at_start, bytes - pr->bytes_at_start,
                           &e);
}

/* ---- the index build ---- */

typedef struct {
    const mg_copy_settings_t *s;
    mg_state_index_job_t *jobs;
    size_t njobs;
    atomic_size_t next;
    atomic_size_t done;
    atomic_size_t failed;
} index_pool_t;

#define INDEX_SETUP "SET maintenance_work_mem = '256MB'"

/* build_one builds job j on *pg; a failover or restart mid-build is waited out. */
static bool
build_one(index_pool_t *pool, PGconn **pg, const mg_state_index_job_t *j, mg_error_t *error)
{
    bool built = mg_pg_exec(*pg, j->sql, error);

    /* the build rolled back with its transaction; IF NOT EXISTS makes the retry safe */
    while (!built && mg_pg_lost(*pg, error)) {
        char why[MG_ERROR_MESSAGE_SIZE];
        snprintf(why, sizeof(why), "%s (building index %s of %s.%s)", error->message, j->name,
                 j->db, j->coll);
        if (!mg_pg_reconnect(pg, pool->s->target, INDEX_SETUP, "copy", why,
                             MG_PG_RECONNECT_BUDGET_S, pool->s->stop, 1, error))
            return false;
        built = mg_pg_exec(*pg, j->sql, error);
    }
    return built;
}

static void *
index_main(void *varg)
{
    index_pool_t *pool = varg;
    mg_error_t error;
    PGconn *pg;
    mg_state_t *st;

    block_signals();
    pg = mg_pg_connect(pool->s->target, &error);
    st = pg != NULL ? mg_state_new(pg, pool->s->state_schema, &error) : NULL;
    if (st == NULL) {
        mg_log_error(MG_LOG_ERROR, "copy", &error);
        if (pg != NULL)
            PQfinish(pg);
        return NULL;
    }
    mg_pg_exec(pg, INDEX_SETUP, &error);
    for (;;) {
        size_t k = atomic_fetch_add(&pool->next, 1);
        if (k >= pool->njobs || atomic_load(pool->s->stop) > 0)
            break;
        mg_state_index_job_t *j = &pool->jobs[k];
        double t = mg_now_s();
        bool built = build_one(pool, &pg, j, &error);
        mg_state_set_conn(st, pg);
        if (pg == NULL) {
            atomic_fetch_add(&pool->failed, 1);
            mg_log_error(MG_LOG_ERROR, "copy", &error);
            break;
        }
        if (!built) {
            atomic_fetch_add(&pool->failed, 1);
            mg_log_error(MG_LOG_ERROR, "copy", &error);
            mg_state_index_mark(st, j->db, j->coll, j->name, "failed", error.message, &error);
            continue;
        }
        mg_state_index_mark(st, j->db, j->coll, j->name, "built", NULL, &error);
        size_t d = atomic_fetch_add(&pool->done, 1) + 1;
        MG_LOG_EVENT(
            MG_LOG_INFO, "copy", "sync.index",
            MG_LOG_FIELDS(MG_LOG_STR("db", j->db), MG_LOG_STR("collection", j->coll),
                          MG_LOG_STR("index", j->name), MG_LOG_DOUBLE("seconds", mg_now_s() - t),
                          MG_LOG_UINT("done", d), MG_LOG_UINT("of", pool->njobs)),
            "built index %s of %s.%s (%zu of %zu)", j->name, j->db, j->coll, d, pool->njobs);
    }
    mg_state_destroy(st);
    if (pg != NULL)
        PQfinish(pg);
    return NULL;
}

/* build_indexes builds every pending index of fully copied collections, workers at a time. */
static bool
build_indexes(mg_state_t *st, const mg_copy_settings_t *s, int64_t workers, size_t *built,
              size_t *failed, mg_error_t *error)
{
    index_pool_t pool;
    pthread_t *threads = NULL;
    size_t nthreads = 0;

    memset(&pool, 0, sizeof(pool));
    pool.s = s;
    if (!mg_state_indexes_to_build(st, &pool.jobs, &pool.njobs, error))
        return false;
    if (pool.njobs > 0) {
        MG_LOG_EVENT(MG_LOG_INFO, "copy", "sync.index",
                     MG_LOG_FIELDS(MG_LOG_UINT("indexes", pool.njobs)), "building %zu indexes",
                     pool.njobs);
        nthreads = (size_t)workers < pool.njobs ? (size_t)workers : pool.njobs;
        threads = calloc(nthreads, sizeof(pthread_t));
        if (threads == NULL) {
            mg_state_index_jobs_free(pool.jobs, pool.njobs);
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        }
        for (size_t k = 0; k < nthreads; k++)
            pthread_create(&threads[k], NULL, index_main, &pool);
        for (size_t k = 0; k < nthreads; k++)
            pthread_join(threads[k], NULL);
    }
    *built = atomic_load(&pool.done);
    *failed = atomic_load(&pool.failed) +
              (pool.njobs - atomic_load(&pool.done) - atomic_load(&pool.failed));
    free(threads);
    mg_state_index_jobs_free(pool.jobs, pool.njobs);
    return true;
}

/*
 * after_copy marks finished collections, builds their indexes, counts failed
 * partitions and records the phase. Each step is idempotent, so after a
 * lost target the caller reconnects and runs it all again.
 */
static bool
after_copy(mg_state_t *st, const mg_copy_settings_t *s, int64_t workers, mg_copy_result_t *r,
           mg_error_t *error)
{
    if (!mg_state_collections_copy_finish(st, error) ||
        !build_indexes(st, s, workers, &r->indexes_built, &r->indexes_failed, error) ||
        !mg_state_partitions_count(st, "failed", &r->failed_partitions, error))
        return false;
    return r->failed_partitions > 0 || r->indexes_failed > 0 ||
           mg_state_phase_advance(st, "copied", "copying", NULL, error);
}

/*
 * with_target runs step(st) until it succeeds, reconnecting the state's
 * connection when the target went away (a restart, a failover).
 */
static bool
with_target(mg_state_t *st, const mg_copy_settings_t *s, int64_t workers, mg_copy_result_t *r,
            int64_t *pending, mg_error_t *error)
{
    for (;;) {
        bool ok = pending != NULL ? mg_state_partitions_count(st, "pending", pending, error)
                                  : after_copy(st, s, workers, r, error);
        char why[MG_ERROR_MESSAGE_SIZE];
        PGconn *pg = mg_state_conn(st);
        if (ok)
            return true;
        if (!mg_pg_lost(pg, error))
            return false;
        snprintf(why, sizeof(why), "%s", error->message);
        mg_error_clear(error);
        ok = mg_pg_reconnect(&pg, s->target, NULL, "copy", why, MG_PG_RECONNECT_BUDGET_S, s->stop,
                             1, error);
        mg_state_set_conn(st, pg);
        if (!ok)
            return false;
    }
}

/* copy_round runs the workers once over what is pending and waits for them. */
static void
copy_round(mg_state_t *st, const mg_copy_settings_t *s, int64_t workers, worker_arg_t *args,
           mg_copy_coll_t *colls, size_t ncolls, progress_t *pr, double progress_s)
{
    pthread_t *threads = calloc((size_t)workers, sizeof(pthread_t));
    double last_report = mg_now_s(), last_save = last_report;

    for (int64_t k = 0; k < workers; k++) {
        args[k].settings = s;
        args[k].index = (int)k;
        args[k].colls = colls;
        args[k].ncolls = ncolls;
        atomic_init(&args[k].finished, 0);
        if (threads == NULL || pthread_create(&threads[k], NULL, worker_main, &args[k]) != 0) {
            /* cannot start it: count it as a failed worker */
            args[k].ok = false;
            mg_error_set(&args[k].error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                         "could not start copy worker %lld", (long long)k);
            atomic_store(&args[k].finished, 2);
        }
    }
    for (bool all = false; !all;) {
        all = true;
        for (int64_t k = 0; k < workers; k++)
            all = all && atomic_load(&args[k].finished);
        if (all)
            break;
        usleep(100 * 1000);
        double now = mg_now_s();
        if (now - last_report >= (pr->tty ? 0.5 : progress_s)) {
            report_progress(pr, colls, ncolls, false);
            last_report = now;
        }
        if (now - last_save >= 2.0) {
            save_progress(st, s, pr, colls, ncolls);
            last_save = now;
        }
    }
    for (int64_t k = 0; k < workers; k++)
        if (atomic_load(&args[k].finished) == 1)
            pthread_join(threads[k], NULL);
    free(threads);
}

int
mg_migrator__copy_run(mg_state_t *st, const mg_copy_settings_t *s, int64_t workers,
                      double progress_s, mg_copy_coll_t *colls, size_t ncolls, mg_copy_result_t *r,
                      mg_error_t *error)
{
    worker_arg_t *args = calloc((size_t)workers, sizeof(*args));
    progress_t pr = {.started = mg_now_s(),
                     .tty = isatty(STDERR_FILENO) && getenv("MIGRATE_NO_TTY") == NULL};
    int rc = MG_EXIT_FAILURE;

    memset(r, 0, sizeof(*r));
    r->timing = calloc((size_t)workers, sizeof(*r->timing));
    r->nworkers = (size_t)workers;
    if (args == NULL || r->timing == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < ncolls; i++) {
        pr.docs_at_start += atomic_load(&colls[i].docs_done);
        pr.bytes_at_start += atomic_load(&colls[i].bytes_done);
    }
    MG_LOG_EVENT(MG_LOG_NOTICE, "copy", "sync.start",
                 MG_LOG_FIELDS(MG_LOG_INT("workers", workers), MG_LOG_UINT("collections", ncolls),
                               MG_LOG_BOOL("worker_only", s->worker_only)),
                 "copying with %lld workers", (long long)workers);
    for (int rounds = 0;; rounds++) {
        int64_t pending = 0;
        copy_round(st, s, workers, args, colls, ncolls, &pr, progress_s);
        for (int64_t k = 0; k < workers; k++)
            add_timing(&r->timing[k], &args[k].timing); /* the report covers every round */
        report_progress(&pr, colls, ncolls, true);
        r->seconds = mg_now_s() - pr.started;
        for (int64_t k = 0; k < workers; k++) {
            if (args[k].ok)
                continue;
            if (r->worker_failed)
                mg_log_error(MG_LOG_ERROR, "copy", &args[k].error);
            else
                *error = args[k].error;
            r->worker_failed = true;
        }
        mg_error_t ignored;
        mg_state_progress_remove(st, s->worker_name, &ignored);
        if (r->worker_failed)
            goto done;
        if (atomic_load(s->stop) > 0) {
            rc = MG_EXIT_INTERRUPTED;
            goto done;
        }
        if (s->worker_only)
            break;
        /* A partition whose commit a failover lost (asynchronous commit, or a
         * replica promoted without it) is pending again although every worker
         * has finished: copy it before the collection counts as copied. */
        if (!with_target(st, s, workers, r, &pending, error))
            goto done;
        if (pending == 0)
            break;
        if (rounds >= MAX_COPY_ROUNDS) {
            mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                         "%lld partitions are still pending after %d copy rounds: their "
                         "commits keep getting lost on the target",
                         (long long)pending, MAX_COPY_ROUNDS);
            goto done;
        }
        MG_LOG_EVENT(
            MG_LOG_WARNING, "copy", "sync.recopy",
            MG_LOG_FIELDS(MG_LOG_INT("partitions", pending), MG_LOG_INT("round", rounds + 2)),
            "%lld partitions are pending again (a commit lost in a failover); "
            "copying them again",
            (long long)pending);
    }
    if (!s->worker_only && !with_target(st, s, workers, r, NULL, error))
        goto done;
    rc = MG_EXIT_OK;
done:
    if (rc == MG_EXIT_FAILURE && mg_error_is_set(error))
        rc = mg_exit_code_for_error(error);
    free(args);
    return rc;
}

void
mg_migrator__copy_result_cleanup(mg_copy_result_t *r)
{
    free(r->timing);
    r->timing = NULL;
}
