/*
 * tests/bench/workload/wl_main.c - bench_workload: an e-commerce application
 * workload (customers, products, orders with line items, events) against
 * PostgreSQL (the JSONB tables `migrate init` creates) or MongoDB.
 *
 *   bench_workload load --uri MONGODB_URI [--db shop] [--orders N] [--seed S]
 *   bench_workload run --target pg|mongo --uri URI [--ns shop] [--connections N]
 *       [--duration S] [--warmup S] [--rate OPS] [--drain S] [--txn on|off]
 *       [--mix point=40,range=10,insert=15,update_small=15,update_large=10,txn=10]
 *       [--seed S] [--label TEXT] [--out FILE] [--dry]
 *   bench_workload hist-selftest [--seed S]
 *
 * One thread per connection: libpq's and libmongoc's synchronous APIs, the
 * same code for both drivers, and at the connection counts a 2-core machine
 * can serve (1-256) the threads cost less than the database work they wait
 * on (the report shows the client's CPU and its time outside the driver).
 *
 * Closed loop (no --rate): each connection issues its next operation when
 * the previous one returns; latency is from issue to completion. Open loop
 * (--rate R): operation i is due at t0 + i/R whatever happened before; a
 * free connection takes the next due operation, waits until it is due, and
 * its latency is measured from that due time, not from when a connection
 * got to it (coordinated omission corrected: a stall shows as the latency
 * of every operation that queued behind it). Operations still not started
 * --drain seconds after the end are counted as not_started, with their
 * waiting time so far as a lower bound of their latency.
 *
 * The PostgreSQL password, if any, comes from PGPASSWORD, never the command
 * line. Output: one JSON report (stdout or --out). Exit 0 ok, 1 failed, 2 usage.
 */
#include "wl.h"
#include "wl_hist.h"

#include <errno.h>
#include <math.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_THREADS 1024
#define MAX_SECONDS 7200
#define NS          1000000000.0

typedef struct {
    const char *cmd, *target, *uri, *ns, *mix, *label, *out;
    int connections;
    double duration, warmup, rate, drain;
    uint64_t seed;
    bool txn, dry;
    int64_t orders;
} opts_t;

typedef struct {
    wl_conn_t conn;
    pthread_t tid;
    uint64_t busy_ns, db_ns, sleep_ns; /* busy and db: recorded operations only */
    bool connected;
} worker_t;

typedef struct {
    const opts_t *o;
    const wl_backend_t *be;
    wl_shared_t shared;
    uint32_t cut[WL_OP_COUNT]; /* cumulative weights out of 10000 */
    uint64_t t0, t_warm, t_end, t_stop, period_ns;
    uint64_t next_op; /* open loop: next operation index (atomic) */
    wl_hist_t *resp[WL_OP_COUNT], *serv[WL_OP_COUNT], *unstarted;
    uint64_t ok[WL_OP_COUNT], errors[WL_OP_COUNT];
    uint64_t *sec_ops, *sec_err;
    char first_err[WL_OP_COUNT][300];
    pthread_mutex_t lock;
    pthread_barrier_t connected, start;
    worker_t *workers;
} run_t;

/* ---- options ------------------------------------------------------------ */

static int
usage(const char *msg)
{
    fprintf(stderr,
            "bench_workload: %s\n"
            "usage: bench_workload load --uri MONGODB_URI [--db shop] [--orders N] [--seed S]\n"
            "       bench_workload run --target pg|mongo --uri URI [--ns shop] [--connections N]\n"
            "           [--duration S] [--warmup S] [--rate OPS] [--drain S] [--txn on|off]\n"
            "           [--mix point=W,range=W,insert=W,update_small=W,update_large=W,txn=W]\n"
            "           [--seed S] [--label TEXT] [--out FILE] [--dry]\n"
            "       bench_workload hist-selftest [--seed S]\n",
            msg);
    return 2;
}

static bool
parse_num(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "bench_workload: option %s: \"%s\" is not a number in [%g, %g]\n", name, v,
                lo, hi);
        return false;
    }
    *out = d;
    return true;
}

static bool
parse_opts(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.cmd = argv[1],
                  .ns = "shop",
                  .connections = 8,
                  .duration = 10,
                  .warmup = 2,
                  .drain = 10,
                  .seed = 1,
                  .txn = true,
                  .orders = 100000,
                  .mix = "point=40,range=10,insert=15,update_small=15,update_large=10,txn=10",
                  .target = "pg",
                  .label = ""};
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        if (strcmp(k, "--dry") == 0) {
            o->dry = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "bench_workload: option %s needs a value\n", k);
            return false;
        }
        i++;
        if (strcmp(k, "--uri") == 0)
            o->uri = v;
        else if (strcmp(k, "--target") == 0)
            o->target = v;
        else if (strcmp(k, "--ns") == 0 || strcmp(k, "--db") == 0)
            o->ns = v;
        else if (strcmp(k, "--mix") == 0)
            o->mix = v;
        else if (strcmp(k, "--label") == 0)
            o->label = v;
        else if (strcmp(k, "--out") == 0)
            o->out = v;
        else if (strcmp(k, "--txn") == 0 && (strcmp(v, "on") == 0 || strcmp(v, "off") == 0))
            o->txn = strcmp(v, "on") == 0;
        else if (strcmp(k, "--connections") == 0 && parse_num(k, v, 1, MAX_THREADS, &d))
            o->connections = (int)d;
        else if (strcmp(k, "--duration") == 0 && parse_num(k, v, 0.1, MAX_SECONDS / 2, &d))
            o->duration = d;
        else if (strcmp(k, "--warmup") == 0 && parse_num(k, v, 0, 600, &d))
            o->warmup = d;
        else if (strcmp(k, "--drain") == 0 && parse_num(k, v, 0, 600, &d))
            o->drain = d;
        else if (strcmp(k, "--rate") == 0 && parse_num(k, v, 0, 1e7, &d))
            o->rate = d;
        else if (strcmp(k, "--seed") == 0 && parse_num(k, v, 0, 1e15, &d))
            o->seed = (uint64_t)d;
        else if (strcmp(k, "--orders") == 0 && parse_num(k, v, 10, 1e10, &d))
            o->orders = (int64_t)d;
        else {
            fprintf(stderr, "bench_workload: bad option or value: %s %s\n", k, v);
            return false;
        }
    }
    return true;
}

/* parse_mix fills cut[] with cumulative weights scaled to 10000 */
static bool
parse_mix(const char *mix, uint32_t *cut)
{
    double w[WL_OP_COUNT] = {0}, sum = 0;
    char *copy = strdup(mix), *save = NULL;
    bool ok = true;
    for (char *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        int which = -1;
        if (eq != NULL) {
            *eq = '\0';
            for (int i = 0; i < WL_OP_COUNT; i++)
                if (strcmp(tok, wl_op_names[i]) == 0)
                    which = i;
        }
        double d;
        if (which < 0) {
            fprintf(stderr, "bench_workload: option --mix: unknown operation \"%s\"\n", tok);
            ok = false;
        } else if ((ok = parse_num("--mix", eq + 1, 0, 1e6, &d))) {
            w[which] = d;
            sum += d;
        }
    }
    free(copy);
    if (ok && sum <= 0) {
        fprintf(stderr, "bench_workload: option --mix: every weight is 0\n");
        ok = false;
    }
    double acc = 0;
    for (int i = 0; ok && i < WL_OP_COUNT; i++) {
        acc += w[i];
        cut[i] = (uint32_t)llround(acc / sum * 10000.0);
    }
    return ok;
}

/* ---- the workers ---------------------------------------------------------- */

static wl_op_t
pick_op(run_t *r, wl_rng_t *rng)
{
    uint32_t x = (uint32_t)(wl_rng_next(rng) % 10000);
    for (int i = 0; i < WL_OP_COUNT; i++)
        if (x < r->cut[i])
            return (wl_op_t)i;
    return WL_OP_POINT;
}

static void
sleep_until(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void
record(run_t *r, worker_t *w, wl_op_t op, bool ok, uint64_t due, uint64_t start, uint64_t end,
       uint64_t db)
{
    if (due < r->t_warm)
        return;
    w->busy_ns += end - start;
    w->db_ns += db;
    size_t sec = (size_t)((end > r->t_warm ? end - r->t_warm : 0) / 1000000000u);
    if (sec >= MAX_SECONDS)
        sec = MAX_SECONDS - 1;
    if (ok) {
        wl_hist_record(r->resp[op], end - due);
        wl_hist_record(r->serv[op], end - start);
        __atomic_fetch_add(&r->ok[op], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&r->sec_ops[sec], 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_fetch_add(&r->errors[op], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&r->sec_err[sec], 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&r->lock);
    if (r->first_err[op][0] == '\0')
        snprintf(r->first_err[op], sizeof r->first_err[op], "%s", w->conn.err);
    pthread_mutex_unlock(&r->lock);
}

typedef struct {
    run_t *run;
    worker_t *w;
} thread_arg_t;

static void *
thread_main(void *arg)
{
    thread_arg_t *ta = arg;
    run_t *r = ta->run;
    worker_t *w = ta->w;
    w->connected = r->be->connect(&w->conn);
    pthread_barrier_wait(&r->connected);
    pthread_barrier_wait(&r->start);
    if (!w->connected || r->t0 == 0)
        return NULL;
    for (;;) {
        uint64_t due, start;
        if (r->period_ns) {
            uint64_t i = __atomic_fetch_add(&r->next_op, 1, __ATOMIC_RELAXED);
            due = r->t0 + i * r->period_ns;
            if (due >= r->t_end)
                break;
            start = wl_now_ns();
            if (start > r->t_stop) { /* never started: its wait so far is a lower bound */
                if (due >= r->t_warm)
                    wl_hist_record(r->unstarted, start - due);
                continue;
            }
            if (due > start) {
                sleep_until(due);
                w->sleep_ns += wl_now_ns() - start;
                start = wl_now_ns();
            }
        } else {
            start = due = wl_now_ns();
            if (start >= r->t_end)
                break;
        }
        wl_op_t op = pick_op(r, &w->conn.rng);
        uint64_t db0 = w->conn.db_ns;
        bool ok = r->be->op(&w->conn, op);
        record(r, w, op, ok, due, start, wl_now_ns(), w->conn.db_ns - db0);
    }
    return NULL;
}

/* ---- the report ------------------------------------------------------------ */

static void
json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void
json_latency(FILE *f, const char *key, const wl_hist_t *h)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", 0.5},  {"p90", 0.9},     {"p95", 0.95},
              {"p99", 0.99}, {"p99_9", 0.999}, {"p99_99", 0.9999}};
    fprintf(f, "\"%s\": {\"count\": %llu", key, (unsigned long long)h->total);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        fprintf(f, ", \"%s\": %.4f", qs[i].name, (double)wl_hist_percentile(h, qs[i].q) / 1e6);
    fprintf(f, ", \"max\": %.4f, \"mean\": %.4f}", h->total ? (double)h->max_ns / 1e6 : 0.0,
            wl_hist_mean(h) / 1e6);
}

/* json_curve writes [quantile, ms] pairs at 1 - 2^(-k/4) up to the last value: the
 * points of a percentile-distribution plot */
static void
json_curve(FILE *f, const wl_hist_t *h)
{
    fprintf(f, "\"curve\": [");
    for (int k = 0; h->total > 0; k++) {
        double q = 1.0 - pow(0.5, k / 4.0);
        bool last = (1.0 - q) * (double)h->total < 1.0;
        if (last)
            q = 1.0;
        fprintf(f, "%s[%.8f, %.4f]", k ? ", " : "", q, (double)wl_hist_percentile(h, q) / 1e6);
        if (last)
            break;
    }
    fprintf(f, "]");
}

static double
cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
report(FILE *f, run_t *r, double window_s, double wall_s, double cpu, int64_t unix_start_ms)
{
    const opts_t *o = r->o;
    wl_hist_t *all = wl_hist_new(), *all_serv = wl_hist_new();
    uint64_t ok = 0, err = 0, busy = 0, db = 0, sleep = 0;
    for (int i = 0; i < WL_OP_COUNT; i++) {
        wl_hist_add(all, r->resp[i]);
        wl_hist_add(all_serv, r->serv[i]);
        ok += r->ok[i];
        err += r->errors[i];
    }
    wl_hist_add(all, r->unstarted);
    for (int t = 0; t < o->connections; t++) {
        busy += r->workers[t].busy_ns;
        db += r->workers[t].db_ns;
        sleep += r->workers[t].sleep_ns;
    }
    fprintf(f, "{\"label\": ");
    json_str(f, o->label);
    fprintf(f, ", \"target\": \"%s\", \"dry\": %s, \"mode\": \"%s\", \"rate_offered\": %.1f",
            r->be->name, o->dry ? "true" : "false", r->period_ns ? "open" : "closed",
            r->period_ns ? o->rate : 0.0);
    fprintf(f, ", \"connections\": %d, \"txn\": %s, \"mix\": ", o->connections,
            o->txn ? "true" : "false");
    json_str(f, o->mix);
    fprintf(f,
            ",\n \"sizes\": {\"customers\": %lld, \"products\": %lld, \"orders\": %lld, "
            "\"events\": %lld}",
            (long long)r->shared.sizes.customers, (long long)r->shared.sizes.products,
            (long long)r->shared.sizes.orders, (long long)r->shared.sizes.events);
    fprintf(f,
            ",\n \"window_s\": %.3f, \"start_unix_ms\": %lld, \"ops\": %llu, \"errors\": %llu, "
            "\"not_started\": %llu, \"throughput\": %.1f,\n ",
            window_s, (long long)unix_start_ms, (unsigned long long)ok, (unsigned long long)err,
            (unsigned long long)r->unstarted->total, (double)ok / window_s);
    json_latency(f, "latency_ms", all);
    fprintf(f, ",\n ");
    json_latency(f, "service_ms", all_serv);
    fprintf(f, ",\n ");
    json_curve(f, all);
    fprintf(f, ",\n \"by_op\": {");
    bool first = true;
    for (int i = 0; i < WL_OP_COUNT; i++) {
        if (r->ok[i] + r->errors[i] == 0)
            continue;
        fprintf(f, "%s\n  \"%s\": {\"ops\": %llu, \"errors\": %llu, \"throughput\": %.1f, ",
                first ? "" : ",", wl_op_names[i], (unsigned long long)r->ok[i],
                (unsigned long long)r->errors[i], (double)r->ok[i] / window_s);
        json_latency(f, "latency_ms", r->resp[i]);
        fprintf(f, ", ");
        json_latency(f, "service_ms", r->serv[i]);
        fprintf(f, ", \"first_error\": ");
        json_str(f, r->first_err[i]);
        fprintf(f, "}");
        first = false;
    }
    size_t nsec = (size_t)ceil(window_s);
    if (nsec > MAX_SECONDS)
        nsec = MAX_SECONDS;
    fprintf(f, "},\n \"series\": [");
    for (size_t s = 0; s < nsec; s++)
        fprintf(f, "%s[%llu, %llu]", s ? ", " : "", (unsigned long long)r->sec_ops[s],
                (unsigned long long)r->sec_err[s]);
    fprintf(f,
            "],\n \"client\": {\"threads\": %d, \"wall_s\": %.3f, \"cpu_s\": %.3f, "
            "\"cpu_cores\": %.3f, \"busy_s\": %.3f, \"in_driver_s\": %.3f, "
            "\"outside_driver_s\": %.3f, \"outside_fraction\": %.4f, \"sleep_s\": %.3f}}\n",
            o->connections, wall_s, cpu, cpu / wall_s, (double)busy / NS, (double)db / NS,
            (double)(busy - db) / NS, busy ? (double)(busy - db) / (double)busy : 0.0,
            (double)sleep / NS);
    wl_hist_destroy(all);
    wl_hist_destroy(all_serv);
}

/* ---- the run ----------------------------------------------------------------- */

static bool
run_init(run_t *r, const opts_t *o)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    if (strcmp(o->target, "pg") == 0) {
        r->be = &wl_backend_pg;
    } else if (strcmp(o->target, "mongo") == 0) {
        r->be = &wl_backend_mongo;
        if (o->dry) {
            fprintf(stderr, "bench_workload: --dry is for --target pg\n");
            return false;
        }
    } else {
        fprintf(stderr, "bench_workload: option --target: \"%s\" is not pg or mongo\n", o->target);
        return false;
    }
    if (o->uri == NULL) {
        fprintf(stderr, "bench_workload: --uri is required\n");
        return false;
    }
    if (!parse_mix(o->mix, r->cut))
        return false;
    r->shared = (wl_shared_t){.seed = o->seed,
                              .txn = o->txn,
                              .dry = o->dry,
                              .uri = o->uri,
                              .ns = o->ns,
                              .threads = o->connections};
    for (int i = 0; i < WL_OP_COUNT; i++) {
        r->resp[i] = wl_hist_new();
        r->serv[i] = wl_hist_new();
        if (r->resp[i] == NULL || r->serv[i] == NULL)
            return false;
    }
    r->unstarted = wl_hist_new();
    r->sec_ops = calloc(MAX_SECONDS, sizeof *r->sec_ops);
    r->sec_err = calloc(MAX_SECONDS, sizeof *r->sec_err);
    r->workers = calloc((size_t)o->connections, sizeof *r->workers);
    pthread_mutex_init(&r->lock, NULL);
    return r->unstarted && r->sec_ops && r->sec_err && r->workers;
}

static void
run_cleanup(run_t *r)
{
    for (int i = 0; i < WL_OP_COUNT; i++) {
        wl_hist_destroy(r->resp[i]);
        wl_hist_destroy(r->serv[i]);
    }
    wl_hist_destroy(r->unstarted);
    free(r->sec_ops);
    free(r->sec_err);
    free(r->workers);
    pthread_mutex_destroy(&r->lock);
}

/* start_threads connects every connection; false if one could not */
static bool
start_threads(run_t *r, thread_arg_t *args)
{
    const opts_t *o = r->o;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_barrier_init(&r->connected, NULL, (unsigned)o->connections + 1);
    pthread_barrier_init(&r->start, NULL, (unsigned)o->connections + 1);
    for (int t = 0; t < o->connections; t++) {
        worker_t *w = &r->workers[t];
        w->conn.shared = &r->shared;
        w->conn.rng = wl_rng_for(o->seed, (uint64_t)t, 7);
        args[t] = (thread_arg_t){r, w};
        if (pthread_create(&w->tid, &attr, thread_main, &args[t]) != 0) {
            fprintf(stderr, "bench_workload: could not start thread %d\n", t);
            exit(1); /* the barriers cannot be released without it */
        }
    }
    pthread_attr_destroy(&attr);
    pthread_barrier_wait(&r->connected);
    for (int t = 0; t < o->connections; t++)
        if (!r->workers[t].connected) {
            fprintf(stderr, "bench_workload: connection %d: %s\n", t, r->workers[t].conn.err);
            return false;
        }
    return true;
}

static int
cmd_run(const opts_t *o)
{
    run_t r;
    char err[512] = "";
    int rc = 1;
    if (!run_init(&r, o)) {
        run_cleanup(&r);
        return 2;
    }
    if (!r.be->prepare(&r.shared, err, sizeof err)) {
        fprintf(stderr, "bench_workload: %s\n", err);
        r.be->cleanup();
        run_cleanup(&r);
        return 1;
    }
    r.shared.next_order_id = r.shared.sizes.orders + 1;
    r.shared.next_event_id = r.shared.sizes.events + 1;
    thread_arg_t *args = calloc((size_t)o->connections, sizeof *args);
    bool ready = start_threads(&r, args);
    double cpu0 = cpu_s();
    int64_t unix0 = wl_time_ms();
    if (ready) {
        r.t0 = wl_now_ns() + 1000000; /* 1 ms: every thread is past the barrier */
        r.t_warm = r.t0 + (uint64_t)(o->warmup * NS);
        r.t_end = r.t_warm + (uint64_t)(o->duration * NS);
        r.t_stop = r.t_end + (uint64_t)(o->drain * NS);
        r.period_ns = o->rate > 0 ? (uint64_t)llround(NS / o->rate) : 0;
        if (o->rate > 0 && r.period_ns == 0)
            r.period_ns = 1;
    }
    pthread_barrier_wait(&r.start);
    for (int t = 0; t < o->connections; t++)
        pthread_join(r.workers[t].tid, NULL);
    uint64_t t_done = wl_now_ns();
    for (int t = 0; t < o->connections; t++)
        if (r.workers[t].connected)
            r.be->disconnect(&r.workers[t].conn);
    if (ready) {
        FILE *f = o->out ? fopen(o->out, "w") : stdout;
        if (f == NULL) {
            fprintf(stderr, "bench_workload: could not open \"%s\": %s\n", o->out, strerror(errno));
        } else {
            report(f, &r, (double)(r.t_end - r.t_warm) / NS, (double)(t_done - r.t0) / NS,
                   cpu_s() - cpu0, unix0 + (int64_t)(o->warmup * 1000));
            rc = (f == stdout || fclose(f) == 0) ? 0 : 1;
        }
    }
    pthread_barrier_destroy(&r.connected);
    pthread_barrier_destroy(&r.start);
    free(args);
    r.be->cleanup();
    run_cleanup(&r);
    return rc;
}

/* ---- the histogram's own check ------------------------------------------------- */

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* hist_selftest: bucket bounds are contiguous and hold their values; the
 * percentiles of random samples (four shapes, seeded) are within 1/1024 above
 * the exact order statistic and never below it. */
static int
hist_selftest(uint64_t seed)
{
    int bad = 0;
    printf("hist-selftest: seed %llu\n", (unsigned long long)seed);
    for (size_t i = 1; i < WL_HIST_BUCKETS; i++)
        if (wl_hist_bucket_low(i) != wl_hist_bucket_high(i - 1) + 1 ||
            wl_hist_index(wl_hist_bucket_low(i)) != i || wl_hist_index(wl_hist_bucket_high(i)) != i)
            bad++, fprintf(stderr, "bucket %zu: bounds wrong\n", i);
    if (wl_hist_bucket_high(WL_HIST_BUCKETS - 1) != WL_HIST_MAX_NS)
        bad++, fprintf(stderr, "last bucket does not end at WL_HIST_MAX_NS\n");
    wl_rng_t rng = {seed};
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof *v);
    wl_hist_t *h = wl_hist_new();
    for (int shape = 0; shape < 4; shape++) {
        wl_hist_reset(h);
        for (int i = 0; i < N; i++) {
            double u = (double)(wl_rng_next(&rng) >> 11) / 9007199254740992.0;
            switch (shape) {
            case 0:
                v[i] = wl_rng_next(&rng) % 3000;
                break; /* tiny */
            case 1:
                v[i] = 50000 + (uint64_t)(u * 2e6);
                break; /* uniform */
            case 2:
                v[i] = (uint64_t)(-log(1.0 - u) * 3e5) + 1;
                break; /* exponential */
            default:
                v[i] = (uint64_t)(1e4 * pow(1.0 - u, -1.5)) % WL_HIST_MAX_NS; /* heavy tail */
            }
            wl_hist_record(h, v[i]);
        }
        qsort(v, N, sizeof *v, cmp_u64);
        static const double qs[] = {0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1};
        for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
            size_t rank = (size_t)ceil(qs[k] * N);
            uint64_t exact = v[rank ? rank - 1 : 0], got = wl_hist_percentile(h, qs[k]);
            if (got < exact || (double)got > (double)exact * (1.0 + 1.0 / 1024) + 1)
                bad++, fprintf(stderr, "shape %d q %g: exact %llu, histogram %llu\n", shape, qs[k],
                               (unsigned long long)exact, (unsigned long long)got);
        }
        if (h->total != N || h->max_ns != v[N - 1] || h->min_ns != v[0])
            bad++, fprintf(stderr, "shape %d: count/min/max wrong\n", shape);
    }
    free(v);
    wl_hist_destroy(h);
    printf("hist-selftest: %s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
    opts_t o;
    if (argc < 2)
        return usage("missing command");
    if (!parse_opts(argc, argv, &o))
        return usage("bad options");
    if (strcmp(o.cmd, "hist-selftest") == 0)
        return hist_selftest(o.seed);
    mongoc_init();
    int rc;
    if (strcmp(o.cmd, "load") == 0) {
        char err[512] = "";
        if (o.uri == NULL)
            rc = usage("--uri is required");
        else if (!wl_load(o.uri, o.ns, o.orders, o.seed, err, sizeof err))
            rc = 1, fprintf(stderr, "bench_workload: %s\n", err);
        else
            rc = 0;
    } else if (strcmp(o.cmd, "run") == 0) {
        rc = cmd_run(&o);
    } else {
        rc = usage("unknown command");
    }
    mongoc_cleanup();
    return rc;
}
