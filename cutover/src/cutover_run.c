/*
 * cutover/src/cutover_run.c - `migrate cutover`: preflight, freeze the
 * source's writes, record the fence T, drain the change stream until the
 * applied checkpoint is at or past T, verify, flip the endpoint exactly
 * once, and report the write-unavailability window (docs/cutover.md).
 *
 * Every step is persisted in the state schema's `cutover` row and logged
 * with "event":"cutover.step", so a crashed cutover resumes from its step
 * and `migrate cutover --abort` can unfreeze the source.
 */
#include "mg/cdc.h"
#include "mg/cutover.h"
#include "mg/schema.h"
#include "mg/state.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SQL_CAP (64 * 1024)
#define POLL_US (50 * 1000)

typedef struct {
    char *source;
    char *target;
    char *state_schema;
    int64_t max_lag_ms;
    char *freeze;
    int verify;
    char *endpoint;
    char *endpoint_file;
    char *endpoint_etcd;
    char *endpoint_etcd_key;
    char *flip_hook;
    int64_t timeout_ms;
    int64_t validation_age_ms;
    int64_t follower_window_ms;
    bool dry_run;
    bool abort_cutover;
    bool json;
} cutover_opts_t;

enum { VERIFY_CHANGED = 0, VERIFY_FULL, VERIFY_COUNTS, VERIFY_NONE };
static const char *const verify_choices[] = {"changed", "full", "counts", "none", NULL};

typedef enum { FREEZE_WRITE_BLOCK, FREEZE_HOOK, FREEZE_NONE } freeze_kind_t;

static const mg_config_option_t cutover_options[] = {
    {.name = "source",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, source),
     .required = true,
     .metavar = "URI",
     .help = "MongoDB connection string of the source"},
    {.name = "target",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, target),
     .required = true,
     .metavar = "URI",
     .help = "PostgreSQL connection string of the target"},
    {.name = "state_schema",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, state_schema),
     .default_value = MG_STATE_SCHEMA_DEFAULT,
     .metavar = "NAME",
     .help = "schema holding the tool's state on the target"},
    {.name = "max_lag",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, max_lag_ms),
     .default_value = "1s",
     .min = 0,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "refuse when the change stream's lag (now - checkpoint cluster time) is above this"},
    {.name = "freeze",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, freeze),
     .default_value = "write-block",
     .metavar = "MODE",
     .help = "write-block (setUserWriteBlockMode), hook:CMD (run CMD with MIGRATE_FREEZE="
             "freeze|unfreeze), or none"},
    {.name = "verify",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(cutover_opts_t, verify),
     .default_value = "changed",
     .choices = verify_choices,
     .metavar = "MODE",
     .help = "final check: changed (validate --changed), full, counts, or none"},
    {.name = "endpoint",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint),
     .metavar = "CONNINFO",
     .help = "the PostgreSQL connection string the application moves to [default: --target]"},
    {.name = "endpoint_file",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_file),
     .metavar = "PATH",
     .help = "flip: write the endpoint to this file atomically"},
    {.name = "endpoint_etcd",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd),
     .metavar = "URL",
     .help = "flip: put the endpoint to etcd at this URL (v3 JSON gateway)"},
    {.name = "endpoint_etcd_key",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd_key),
     .default_value = "/migrate/endpoint",
     .metavar = "KEY",
     .help = "the etcd key of --endpoint-etcd"},
    {.name = "flip_hook",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, flip_hook),
     .metavar = "CMD",
     .help = "flip: run CMD (sh -c) with MIGRATE_ENDPOINT in its environment"},
    {.name = "timeout",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, timeout_ms),
     .default_value = "60s",
     .min = 100,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "longest time from the freeze to the flip; beyond it the cutover aborts"},
    {.name = "validation_age",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, validation_age_ms),
     .default_value = "1h",
     .min = 0,
     .max = 86400000LL * 365,
     .metavar = "DURATION",
     .help = "refuse without a clean validation run finished within this age (0: no check)"},
    {.name = "follower_window",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, follower_window_ms),
     .default_value = "5s",
     .min = 100,
     .max = 3600000,
     .metavar = "DURATION",
     .help = "a checkpoint updated within this window means `sync --follow` is running"},
    {.name = "dry_run",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(cutover_opts_t, dry_run),
     .default_value = "false",
     .help = "run the preflight checks only; change nothing"},
    {.name = "abort",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(cutover_opts_t, abort_cutover),
     .default_value = "false",
     .help = "abort an unfinished cutover: unfreeze the source and mark it aborted"},
    {.name = "json",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(cutover_opts_t, json),
     .default_value = "false",
     .help = "print the final report as one JSON object"},
};
#define N_CUTOVER_OPTIONS (sizeof(cutover_options) / sizeof(cutover_options[0]))

/* The steps, in order; the persisted `step` is the last one started. */
static const char *const steps[] = {"preflight", "freeze", "fence", "drain",
                                    "verify",    "flip",   "done"};
enum { S_PREFLIGHT, S_FREEZE, S_FENCE, S_DRAIN, S_VERIFY, S_FLIP, S_DONE, N_STEPS };

typedef struct {
    const cutover_opts_t *o;
    const char *self; /* /proc/self/exe or argv-derived path of migrate */
    freeze_kind_t freeze;
    const char *freeze_cmd; /* hook:CMD */
    const char *endpoint;
    mg_mongo_t src;
    PGconn *pg;
    uint32_t fence_t, fence_i;
    double deadline; /* monotonic; 0 = none yet */
    double step_started;
} cutover_t;

static atomic_int stop_requested;

static void
on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_requested, 1);
}

/* ---- SQL helpers: '@' in the text stands for the quoted state schema ---- */

static bool
sql_build(const char *state_schema, const char *text, mg_buf_t *sql, mg_error_t *error)
{
    for (const char *p = text; *p; p++) {
        if (*p == '@') {
            if (!mg_schema_quote_ident(state_schema, sql, error))
                return false;
        } else if (!mg_buf_append(sql, p, 1, error)) {
            return false;
        }
    }
    return true;
}

/* q runs text (see sql_build) with params; returns the result (caller PQclear) or NULL. */
static PGresult *
q(cutover_t *c, const char *text, int n, const char *const *params, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;

    mg_buf_init(&sql, SQL_CAP);
    if (sql_build(c->o->state_schema, text, &sql, error))
        res = mg_pg_query(c->pg, sql.data, n, params, error);
    mg_buf_cleanup(&sql);
    return res;
}

static bool
q_exec(cutover_t *c, const char *text, int n, const char *const *params, mg_error_t *error)
{
    PGresult *res = q(c, text, n, params, error);

    PQclear(res);
    return res != NULL;
}

/* ---- persisted steps ---- */

/* step_begin persists step as started and logs it. */
static bool
step_begin(cutover_t *c, int step, mg_error_t *error)
{
    const char *p[1] = {steps[step]};

    c->step_started = mg_now_s();
    MG_LOG_EVENT(MG_LOG_NOTICE, "cutover", "cutover.step",
                 MG_LOG_FIELDS(MG_LOG_STR("step", steps[step]), MG_LOG_STR("status", "started")),
                 "cutover: %s", steps[step]);
    if (c->o->dry_run)
        return true;
    return q_exec(c, "UPDATE @.cutover SET step = $1, updated_at = now() WHERE id = 1", 1, p,
                  error);
}

/* step_end records how long step took, in the row and as an event. */
static bool
step_end(cutover_t *c, int step, mg_error_t *error)
{
    char secs[32];
    double s = mg_now_s() - c->step_started;
    const char *p[2] = {steps[step], secs};

    snprintf(secs, sizeof(secs), "%.6f", s);
    MG_LOG_EVENT(MG_LOG_NOTICE, "cutover", "cutover.step",
                 MG_LOG_FIELDS(MG_LOG_STR("step", steps[step]), MG_LOG_STR("status", "done"),
                               MG_LOG_DOUBLE("seconds", s)),
                 "cutover: %s done in %.3f s", steps[step], s);
    if (c->o->dry_run)
        return true;
    return q_exec(c,
                  "WITH u AS (UPDATE @.cutover SET steps = steps || jsonb_build_object($1::text, "
                  "jsonb_build_object('seconds', $2::float8, 'finished_at', now())), updated_at = "
                  "now() WHERE id = 1 RETURNING attempt) INSERT INTO @.events (kind, data) "
                  "SELECT 'cutover.step', jsonb_build_object('step', $1::text, 'seconds', "
                  "$2::float8, 'attempt', attempt) FROM u",
                  2, p, error);
}

/* ---- source ---- */

static bool
reply_operation_time(const bson_t *reply, uint32_t *t, uint32_t *i)
{
    bson_iter_t it;

    if (!bson_iter_init_find(&it, reply, "operationTime") || !BSON_ITER_HOLDS_TIMESTAMP(&it))
        return false;
    bson_iter_timestamp(&it, t, i);
    return true;
}

/* source_op_time runs a harmless command and returns the reply's operationTime. */
static bool
source_op_time(cutover_t *c, uint32_t *t, uint32_t *i, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bool ok;

    BSON_APPEND_INT32(&cmd, "ping", 1);
    ok = mg_mongo_command(&c->src, "admin", &cmd, &reply, error);
    if (ok && !reply_operation_time(&reply, t, i))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                          "the source's reply carries no operationTime (not a replica set?)");
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

/* run_shell runs sh -c cmd with name=value added to the environment; returns its status. */
static bool
run_shell(const char *cmd, const char *name, const char *value, mg_error_t *error)
{
    pid_t pid = fork();
    int status;

    if (pid < 0)
        return mg_error_set_errno(error, errno, "could not fork for \"%s\"", cmd);
    if (pid == 0) {
        setenv(name, value, 1);
        dup2(STDERR_FILENO, STDOUT_FILENO); /* keep stdout for our report */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return mg_error_set_errno(error, errno, "could not wait for \"%s\"", cmd);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "command \"%s\" failed with status %d", cmd,
                            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return true;
}

/*
 * set_write_block freezes (on) or unfreezes the source per the freeze mode.
 * With write-block, t and i (may be NULL) receive the reply's operationTime.
 */
static bool
set_write_block(cutover_t *c, freeze_kind_t kind, bool on, uint32_t *t, uint32_t *i,
                mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bool ok;

    if (kind == FREEZE_NONE)
        return true;
    if (kind == FREEZE_HOOK)
        return run_shell(c->freeze_cmd, "MIGRATE_FREEZE", on ? "freeze" : "unfreeze", error);
    BSON_APPEND_BOOL(&cmd, "setUserWriteBlockMode", true);
    BSON_APPEND_BOOL(&cmd, "global", on);
    ok = mg_mongo_command(&c->src, "admin", &cmd, &reply, error);
    if (!ok)
        mg_error_prefix(error, "could not %s the source's writes", on ? "block" : "unblock");
    if (ok && t != NULL && !reply_operation_time(&reply, t, i))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                          "the reply of setUserWriteBlockMode carries no operationTime");
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

/*
 * check_privilege tells whether the source user may run setUserWriteBlockMode:
 * connectionStatus with showPrivileges. No authenticated user (no auth) or a
 * server that does not list privileges counts as allowed.
 */
static bool
check_privilege(cutover_t *c, bool *allowed, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_iter_t it, auth, users, privs, p, f, a;
    bool ok;
    int nusers = 0;

    *allowed = true;
    BSON_APPEND_INT32(&cmd, "connectionStatus", 1);
    BSON_APPEND_BOOL(&cmd, "showPrivileges", true);
    ok = mg_mongo_command(&c->src, "admin", &cmd, &reply, error);
    if (!ok)
        goto done;
    if (!bson_iter_init_find(&it, &reply, "authInfo") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &auth))
        goto done;
    if (bson_iter_find(&auth, "authenticatedUsers") && BSON_ITER_HOLDS_ARRAY(&auth) &&
        bson_iter_recurse(&auth, &users)) {
        while (bson_iter_next(&users))
            nusers++;
    }
    if (nusers == 0)
        goto done; /* no authentication */
    if (!bson_iter_recurse(&it, &auth) || !bson_iter_find(&auth, "authenticatedUserPrivileges") ||
        !BSON_ITER_HOLDS_ARRAY(&auth) || !bson_iter_recurse(&auth, &privs))
        goto done; /* the server does not say */
    *allowed = false;
    while (bson_iter_next(&privs) && !*allowed) {
        bool cluster = false, action = false;
        if (!BSON_ITER_HOLDS_DOCUMENT(&privs) || !bson_iter_recurse(&privs, &p))
            continue;
        while (bson_iter_next(&p)) {
            if (strcmp(bson_iter_key(&p), "resource") == 0 && BSON_ITER_HOLDS_DOCUMENT(&p) &&
                bson_iter_recurse(&p, &f)) {
                while (bson_iter_next(&f))
                    if ((strcmp(bson_iter_key(&f), "cluster") == 0 ||
                         strcmp(bson_iter_key(&f), "anyResource") == 0) &&
                        bson_iter_as_bool(&f))
                        cluster = true;
            } else if (strcmp(bson_iter_key(&p), "actions") == 0 && BSON_ITER_HOLDS_ARRAY(&p) &&
                       bson_iter_recurse(&p, &a)) {
                while (bson_iter_next(&a))
                    if (BSON_ITER_HOLDS_UTF8(&a) &&
                        (strcmp(bson_iter_utf8(&a, NULL), "setUserWriteBlockMode") == 0 ||
                         strcmp(bson_iter_utf8(&a, NULL), "anyAction") == 0))
                        action = true;
            }
        }
        *allowed = cluster && action;
    }
done:
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

/* ---- preflight ---- */

typedef struct {
    bool refused;
    char reason[MG_ERROR_MESSAGE_SIZE];
    double lag_s;
} preflight_t;

static bool refuse(preflight_t *pf, const char *fmt, ...) MG_PRINTF(2, 3);

static bool
refuse(preflight_t *pf, const char *fmt, ...)
{
    va_list ap;

    pf->refused = true;
    va_start(ap, fmt);
    vsnprintf(pf->reason, sizeof(pf->reason), fmt, ap);
    va_end(ap);
    return true;
}

/* preflight fills pf; returns false only when a check could not run. */
static bool
preflight(cutover_t *c, preflight_t *pf, mg_error_t *error)
{
    PGresult *res;
    char age[32], lag_limit[32];
    bool allowed;

    memset(pf, 0, sizeof(*pf));
    res = q(c,
            "SELECT cluster_time_ts IS NULL, extract(epoch FROM now()) - coalesce(cluster_time_ts, "
            "0) FROM @.checkpoint WHERE id = 1",
            0, NULL, error);
    if (res == NULL)
        return false;
    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        PQclear(res);
        return refuse(pf, "the change stream has never been applied: run migrate sync first");
    }
    pf->lag_s = strtod(PQgetvalue(res, 0, 1), NULL);
    PQclear(res);
    if (pf->lag_s * 1000.0 > (double)c->o->max_lag_ms)
        return refuse(pf,
                      "the change stream's lag is %.1f s, above --max-lag %.3f s: let migrate "
                      "sync --follow catch up (or run migrate sync) first",
                      pf->lag_s, (double)c->o->max_lag_ms / 1000.0);

    res = q(c,
            "SELECT db || '.' || coll, coalesce(error, '') FROM @.collections WHERE status = "
            "'failed' ORDER BY 1 LIMIT 1",
            0, NULL, error);
    if (res == NULL)
        return false;
    if (PQntuples(res) > 0) {
        refuse(pf, "collection %s is in error (%s): fix it and sync it again first",
               PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        PQclear(res);
        return true;
    }
    PQclear(res);

    if (c->o->validation_age_ms > 0) {
        snprintf(age, sizeof(age), "%lld", (long long)c->o->validation_age_ms);
        const char *p[1] = {age};
        res = q(c,
                "SELECT count(*) FROM @.validation_runs WHERE status = 'clean' AND mode IN "
                "('full', 'changed') AND finished_at > now() - $1::bigint * interval '1 ms'",
                1, p, error);
        if (res == NULL)
            return false;
        bool none = strcmp(PQgetvalue(res, 0, 0), "0") == 0;
        PQclear(res);
        if (none)
            return refuse(pf, "no clean validation run finished within --validation-age: run "
                              "migrate validate first");
    }
    (void)lag_limit;

    if (c->freeze == FREEZE_WRITE_BLOCK) {
        if (!check_privilege(c, &allowed, error))
            return false;
        if (!allowed)
            return refuse(pf, "the source user lacks the setUserWriteBlockMode privilege on the "
                              "cluster resource: grant it, or freeze the application yourself "
                              "with --freeze hook:CMD (or --freeze none)");
    }
    return true;
}

/* ---- drain ---- */

typedef struct {
    mg_cdc_follow_settings_t fs;
    atomic_int stop;
    atomic_int finished;
    int rc;
    mg_error_t error;
} applier_t;

static void *
applier_main(void *varg)
{
    applier_t *a = varg;
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    mg_error_clear(&a->error);
    a->rc = mg_cdc_follow_run(&a->fs, &a->error);
    atomic_store(&a->finished, 1);
    return NULL;
}

/* read_checkpoint reads the applied position and whether a follower updated it recently. */
static bool
read_checkpoint(cutover_t *c, uint32_t *t, uint32_t *i, bool *fresh, mg_error_t *error)
{
    char win[32];
    const char *p[1] = {win};
    PGresult *res;

    snprintf(win, sizeof(win), "%lld", (long long)c->o->follower_window_ms);
    res = q(c,
            "SELECT coalesce(cluster_time_ts, 0), coalesce(cluster_time_inc, 0), updated_at > "
            "now() - $1::bigint * interval '1 ms' FROM @.checkpoint WHERE id = 1",
            1, p, error);
    if (res == NULL)
        return false;
    *t = *i = 0;
    *fresh = false;
    if (PQntuples(res) == 1) {
        *t = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        *i = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
        *fresh = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    }
    PQclear(res);
    return true;
}

/*
 * drain waits until the applied checkpoint is at or past the fence. A
 * `sync --follow` that moved the checkpoint within --follower-window does
 * the work; otherwise (or once it goes quiet) this process applies the
 * change stream itself in a thread until the fence is reached.
 */
static bool
drain(cutover_t *c, const char **how, mg_error_t *error)
{
    applier_t *ap = NULL;
    pthread_t thread;
    bool ok = false;

    *how = "sync --follow";
    for (;;) {
        uint32_t t, i;
        bool fresh;
        if (!read_checkpoint(c, &t, &i, &fresh, error))
            goto done;
        if (t > c->fence_t || (t == c->fence_t && i >= c->fence_i)) {
            ok = true;
            goto done;
        }
        if (atomic_load(&stop_requested)) {
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                         "interrupted by a signal during the drain");
            goto done;
        }
        if (mg_now_s() > c->deadline) {
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                         "timed out draining: the applied checkpoint Timestamp(%u, %u) did not "
                         "reach the fence Timestamp(%u, %u) within --timeout",
                         t, i, c->fence_t, c->fence_i);
            goto done;
        }
        if (ap != NULL && atomic_load(&ap->finished)) {
            /* another applier may have moved the checkpoint under ours: look, then retry */
            pthread_join(thread, NULL);
            MG_LOG_EVENT(MG_LOG_WARNING, "cutover", "cutover.drain",
                         MG_LOG_FIELDS(MG_LOG_INT("rc", ap->rc)),
                         "the cutover's own applier stopped: %s", ap->error.message);
            free(ap);
            ap = NULL;
            continue;
        }
        if (ap == NULL && !fresh) {
            ap = calloc(1, sizeof(*ap));
            if (ap == NULL) {
                mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
                goto done;
            }
            atomic_init(&ap->stop, 0);
            atomic_init(&ap->finished, 0);
            ap->fs = (mg_cdc_follow_settings_t){
                .source_uri = c->o->source,
                .target = c->o->target,
                .state_schema = c->o->state_schema,
                .follow = true,
                .max_lag_ms = 0,
                .batch_events = 5000,
                .batch_bytes = 32 * 1024 * 1024,
                .batch_delay_ms = 20,
                .stop = &ap->stop,
            };
            *how = "own applier";
            MG_LOG_EVENT(MG_LOG_NOTICE, "cutover", "cutover.drain", NULL, 0,
                         "no migrate sync --follow moved the checkpoint within "
                         "--follower-window: applying the change stream here");
            if (pthread_create(&thread, NULL, applier_main, ap) != 0) {
                free(ap);
                ap = NULL;
                mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                             "could not start the applier thread");
                goto done;
            }
        }
        usleep(POLL_US);
    }
done:
    if (ap != NULL) {
        atomic_store(&ap->stop, 1);
        pthread_join(thread, NULL);
        free(ap);
    }
    return ok;
}

/* ---- verify ---- */

/* verify_validate runs `migrate validate` (this binary) with mode_flag; 0 is clean. */
static bool
verify_validate(cutover_t *c, const char *mode_flag, mg_error_t *error)
{
    pid_t pid = fork();
    int status;

    if (pid < 0)
        return mg_error_set_errno(error, errno, "could not fork migrate validate");
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execl(c->self, "migrate", "--log-format=json", "validate", "--source", c->o->source,
              "--target", c->o->target, "--state-schema", c->o->state_schema, mode_flag,
              "--fail-on", "any", (char *)NULL);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return mg_error_set_errno(error, errno, "could not wait for migrate validate");
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    if (WIFEXITED(status) && WEXITSTATUS(status) == MG_EXIT_MISMATCH)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "verification found differences (migrate validate %s): see "
                            "_migrate.validation_mismatches",
                            mode_flag);
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                        "verification could not run (migrate validate %s exited with %d)",
                        mode_flag, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* verify_counts compares countDocuments on the source with count(*) per table. */
static bool
verify_counts(cutover_t *c, mg_error_t *error)
{
    PGresult *res = q(c,
                      "SELECT db, coll, schema_name, table_name FROM @.collections WHERE status "
                      "<> 'failed' ORDER BY 1, 2",
                      0, NULL, error);
    bool ok = res != NULL;

    for (int r = 0; ok && r < PQntuples(res); r++) {
        const char *db = PQgetvalue(res, r, 0), *coll = PQgetvalue(res, r, 1);
        mg_buf_t sql;
        PGresult *cnt = NULL;
        bson_t filter = BSON_INITIALIZER;
        bson_error_t be;
        int64_t n_src, n_dst = -1;
        mongoc_collection_t *mc = mongoc_client_get_collection(c->src.client, db, coll);

        n_src = mongoc_collection_count_documents(mc, &filter, NULL, NULL, NULL, &be);
        mongoc_collection_destroy(mc);
        bson_destroy(&filter);
        if (n_src < 0) {
            ok = mg_error_set_bson(error, &be, "could not count %s.%s", db, coll);
            break;
        }
        mg_buf_init(&sql, 4096);
        if (mg_buf_append_str(&sql, "SELECT count(*) FROM ", error) &&
            mg_schema_quote_ident(PQgetvalue(res, r, 2), &sql, error) &&
            mg_buf_append_str(&sql, ".", error) &&
            mg_schema_quote_ident(PQgetvalue(res, r, 3), &sql, error) &&
            (cnt = mg_pg_query(c->pg, sql.data, 0, NULL, error)) != NULL)
            n_dst = strtoll(PQgetvalue(cnt, 0, 0), NULL, 10);
        PQclear(cnt);
        mg_buf_cleanup(&sql);
        if (cnt == NULL) {
            ok = false;
            break;
        }
        if (n_src != n_dst)
            ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                              "verification found differences: %s.%s has %lld documents and "
                              "%lld rows",
                              db, coll, (long long)n_src, (long long)n_dst);
    }
    PQclear(res);
    return ok;
}

/* ---- flip ---- */

/*
 * flip tells the application: the hook first, then etcd, then the file.
 * *started says whether any of them succeeded (after which the source is
 * not unfrozen: the application may already be moving).
 */
static bool
flip(cutover_t *c, bool *started, mg_error_t *error)
{
    const cutover_opts_t *o = c->o;

    *started = false;
    if (o->flip_hook != NULL) {
        if (!run_shell(o->flip_hook, "MIGRATE_ENDPOINT", c->endpoint, error)) {
            mg_error_prefix(error, "flip hook");
            return false;
        }
        *started = true;
    }
    if (o->endpoint_etcd != NULL) {
        const char *eps[1] = {o->endpoint_etcd};
        mg_etcd_options_t eo = {.endpoints = eps, .nendpoints = 1, .timeout_ms = 5000};
        mg_etcd_t *etcd = mg_etcd_new(&eo, error);
        bool ok = etcd != NULL && mg_etcd_put(etcd, o->endpoint_etcd_key, c->endpoint,
                                              strlen(c->endpoint), 0, NULL, error);
        mg_etcd_destroy(etcd);
        if (!ok) {
            mg_error_prefix(error, "could not put the endpoint to etcd key \"%s\"",
                            o->endpoint_etcd_key);
            return false;
        }
        *started = true;
    }
    if (o->endpoint_file != NULL) {
        /* a new endpoint file is 0600 (it may hold a password); an existing
         * one keeps the mode and owner the operator gave it */
        mg_buf_t text;
        bool ok;
        mg_buf_init(&text, strlen(c->endpoint) + 2);
        ok = mg_buf_append_str(&text, c->endpoint, error) &&
             mg_buf_append_str(&text, "\n", error) &&
             mg_file_write_atomic(o->endpoint_file, text.data, text.len, NULL, error);
        mg_buf_cleanup(&text);
        if (!ok)
            return false;
    }
    *started = true;
    return true;
}

/* ---- state row ---- */

typedef struct {
    bool exists;
    char step[32];
    char outcome[16];
    char freeze_mode[4096];
    uint32_t fence_t, fence_i;
    bool has_fence;
} row_t;

static bool
load_row(cutover_t *c, row_t *row, mg_error_t *error)
{
    PGresult *res = q(c,
                      "SELECT step, outcome, freeze_mode, fence_ts, fence_inc FROM @.cutover "
                      "WHERE id = 1",
                      0, NULL, error);

    memset(row, 0, sizeof(*row));
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1) {
        row->exists = true;
        snprintf(row->step, sizeof(row->step), "%s", PQgetvalue(res, 0, 0));
        snprintf(row->outcome, sizeof(row->outcome), "%s", PQgetvalue(res, 0, 1));
        snprintf(row->freeze_mode, sizeof(row->freeze_mode), "%s", PQgetvalue(res, 0, 2));
        row->has_fence = !PQgetisnull(res, 0, 3);
        row->fence_t = (uint32_t)strtoul(PQgetvalue(res, 0, 3), NULL, 10);
        row->fence_i = (uint32_t)strtoul(PQgetvalue(res, 0, 4), NULL, 10);
    }
    PQclear(res);
    return true;
}

static int
step_index(const char *name)
{
    for (int k = 0; k < N_STEPS; k++)
        if (strcmp(steps[k], name) == 0)
            return k;
    return -1;
}

static bool
parse_freeze(const char *text, freeze_kind_t *kind, const char **cmd, mg_error_t *error)
{
    if (strcmp(text, "write-block") == 0) {
        *kind = FREEZE_WRITE_BLOCK;
    } else if (strcmp(text, "none") == 0) {
        *kind = FREEZE_NONE;
    } else if (strncmp(text, "hook:", 5) == 0 && text[5] != '\0') {
        *kind = FREEZE_HOOK;
        *cmd = text + 5;
    } else {
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid --freeze \"%s\": write-block, hook:CMD or none", text);
    }
    return true;
}

/* mark_aborted records the abort and its reason (best effort: the error is logged). */
static void
mark_aborted(cutover_t *c, const char *reason)
{
    mg_error_t e;
    const char *p[1] = {reason};

    MG_LOG_EVENT(MG_LOG_ERROR, "cutover", "cutover.step",
                 MG_LOG_FIELDS(MG_LOG_STR("step", "aborted"), MG_LOG_STR("reason", reason)),
                 "cutover aborted: %s", reason);
    /* the target may be what failed (a restart, a failover): reconnect for up
     * to 30 s so the abort and its reason are recorded */
    for (double wait = 0.25, spent = 0;; spent += wait, wait = wait < 4 ? wait * 2 : 4) {
        mg_error_clear(&e);
        if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK &&
            q_exec(c,
                   "WITH u AS (UPDATE @.cutover SET outcome = 'aborted', reason = $1, finished_at "
                   "= now(), updated_at = now() WHERE id = 1 RETURNING attempt, step) INSERT "
                   "INTO @.events (kind, data) SELECT 'cutover.step', jsonb_build_object('step', "
                   "'aborted', 'at_step', step, 'reason', $1::text, 'attempt', attempt) FROM u",
                   1, p, &e))
            return;
        if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK) {
            mg_log_error(MG_LOG_ERROR, "cutover", &e); /* a statement error: give up */
            return;
        }
        if (spent >= 30) {
            MG_LOG(MG_LOG_ERROR, "cutover",
                   "could not record the abort on the target (unreachable for 30 s); the "
                   "source is unfrozen, run migrate cutover --abort once the target is back");
            return;
        }
        usleep((useconds_t)(wait * 1e6));
        if (c->pg != NULL)
            PQfinish(c->pg);
        c->pg = mg_pg_connect(c->o->target, &e);
    }
}

/* ---- report ---- */

static void
print_report(cutover_t *c)
{
    mg_error_t e;
    PGresult *res;

    mg_error_clear(&e);
    if (c->o->json) {
        res = q(c,
                "SELECT jsonb_build_object('outcome', outcome, 'step', step, 'reason', reason, "
                "'attempt', attempt, 'freeze', freeze_mode, 'verify', verify_mode, 'fence', "
                "CASE WHEN fence_ts IS NOT NULL THEN jsonb_build_object('t', fence_ts, 'i', "
                "fence_inc) END, 'endpoint', endpoint, 'started_at', started_at, 'frozen_at', "
                "frozen_at, 'flipped_at', flipped_at, 'finished_at', finished_at, "
                "'unavailable_s', unavailable_s, 'steps', steps)::text FROM @.cutover WHERE id = 1",
                0, NULL, &e);
        if (res != NULL && PQntuples(res) == 1) {
            char *shown = mg_redact_dup(PQgetvalue(res, 0, 0)); /* the endpoint's password */
            printf("%s\n", shown != NULL ? shown : "{}");
            free(shown);
        }
        PQclear(res);
        return;
    }
    res = q(c,
            "SELECT outcome, coalesce(reason, ''), coalesce(endpoint, ''), "
            "coalesce(unavailable_s::text, ''), s.key, (s.value->>'seconds')::float8 FROM "
            "@.cutover LEFT JOIN LATERAL jsonb_each(steps) s ON true WHERE id = 1 ORDER BY "
            "s.value->>'finished_at'",
            0, NULL, &e);
    if (res == NULL || PQntuples(res) == 0) {
        PQclear(res);
        return;
    }
    printf("cutover %s\n", PQgetvalue(res, 0, 0));
    for (int r = 0; r < PQntuples(res); r++)
        if (!PQgetisnull(res, r, 4))
            printf("  %-10s %9.3f s\n", PQgetvalue(res, r, 4), strtod(PQgetvalue(res, r, 5), NULL));
    if (*PQgetvalue(res, 0, 3))
        printf("write-unavailability window (freeze -> flip): %.3f s\n",
               strtod(PQgetvalue(res, 0, 3), NULL));
    if (*PQgetvalue(res, 0, 1))
        printf("reason: %s\n", PQgetvalue(res, 0, 1));
    if (strcmp(PQgetvalue(res, 0, 0), "done") == 0) {
        /* the flip got the endpoint with its password; the terminal does not */
        char *shown = mg_redact_dup(PQgetvalue(res, 0, 2));
        printf("endpoint: %s\n", shown != NULL ? shown : "(out of memory)");
        free(shown);
    }
    PQclear(res);
}

static void
print_usage(FILE *stream)
{
    fprintf(stream,
            "usage: migrate cutover --source URI --target URI [options]\n\n"
            "Freeze the source's writes, drain the change stream to the freeze's fence, verify,\n"
            "and flip the application's endpoint exactly once (docs/cutover.md).\n\noptions:\n");
    mg_config_print_help(cutover_options, N_CUTOVER_OPTIONS, "MIGRATE_", stream);
    fprintf(stream, "  %-34s %s\n", "   --config FILE",
            "read options from a JSON file [env MIGRATE_CONFIG]");
}

/* ---- the command ---- */

/* do_abort runs `--abort`: unfreeze and mark aborted unless the flip happened. */
static int
do_abort(cutover_t *c, mg_error_t *error)
{
    row_t row;
    freeze_kind_t kind = c->freeze;

    if (!load_row(c, &row, error))
        return mg_exit_code_for_error(error);
    if (row.exists && (strcmp(row.outcome, "done") == 0 || step_index(row.step) >= S_FLIP)) {
        fprintf(stderr,
                "migrate cutover: the endpoint was already flipped (step %s): nothing to abort\n",
                row.step);
        return MG_EXIT_STATE;
    }
    if (row.exists && !parse_freeze(row.freeze_mode, &kind, &c->freeze_cmd, error))
        return MG_EXIT_STATE;
    if (!set_write_block(c, kind, false, NULL, NULL, error)) {
        mg_log_error(MG_LOG_ERROR, "cutover", error);
        fprintf(stderr, "migrate cutover: %s\n", error->message);
        return mg_exit_code_for_error(error);
    }
    if (row.exists && strcmp(row.outcome, "running") == 0)
        mark_aborted(c, "aborted by migrate cutover --abort");
    printf("source unfrozen%s\n",
           row.exists && strcmp(row.outcome, "running") == 0 ? "; cutover marked aborted" : "");
    return MG_EXIT_OK;
}

/* abort_frozen unfreezes after a failure before the flip, records why, returns 7. */
static int
abort_frozen(cutover_t *c, freeze_kind_t kind, const mg_error_t *why)
{
    mg_error_t e;
    char reason[MG_ERROR_MESSAGE_SIZE + 64];

    mg_error_clear(&e);
    snprintf(reason, sizeof(reason), "%s", why->message);
    if (!set_write_block(c, kind, false, NULL, NULL, &e)) {
        mg_log_error(MG_LOG_ERROR, "cutover", &e);
        snprintf(reason, sizeof(reason),
                 "%.400s; unfreezing failed too: run migrate cutover "
                 "--abort",
                 why->message);
    }
    mark_aborted(c, reason);
    fprintf(stderr, "migrate cutover: aborted: %s\n", reason);
    print_report(c);
    return MG_EXIT_ABORTED;
}

int
mg_cutover_command(const mg_cli_command_t *command, int argc, char **argv)
{
    cutover_opts_t o;
    mg_config_t *config = NULL;
    mg_error_t error;
    cutover_t c;
    row_t row;
    preflight_t pf;
    int first = 0, rc = MG_EXIT_FAILURE, from = S_PREFLIGHT;
    struct sigaction sa, old_int, old_term;
    bool handlers = false, locked = false, frozen = false;
    char self[4096];
    const char *how = "";

    memset(&o, 0, sizeof(o));
    memset(&c, 0, sizeof(c));
    mg_error_clear(&error);
    (void)command;
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
            print_usage(stdout);
            return MG_EXIT_OK;
        }
    }
    config = mg_config_new(cutover_options, N_CUTOVER_OPTIONS, &o, "MIGRATE_");
    if (config == NULL)
        return MG_EXIT_FAILURE;
    if (!mg_config_load(config, argc, argv, NULL, &first, &error))
        goto fail;
    if (first < argc) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "unexpected argument \"%s\"", argv[first]);
        goto fail;
    }
    c.o = &o;
    if (!parse_freeze(o.freeze, &c.freeze, &c.freeze_cmd, &error))
        goto fail;
    c.endpoint = o.endpoint != NULL ? o.endpoint : o.target;
    {
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0) {
            mg_error_set_errno(&error, errno, "could not find the migrate binary");
            goto fail;
        }
        self[n] = '\0';
        c.self = self;
    }

    if (!mg_mongo_open(o.source, "migrate", &c.src, &error))
        goto fail;
    c.pg = mg_pg_connect(o.target, &error);
    if (c.pg == NULL)
        goto fail;
    {
        bool exists;
        int version;
        if (!mg_state_probe(c.pg, o.state_schema, &exists, &version, &error))
            goto fail;
        if (!exists || version != MG_STATE_VERSION) {
            fprintf(stderr,
                    "migrate cutover: the target has no usable state schema \"%s\": run "
                    "migrate init and migrate sync first\n",
                    o.state_schema);
            rc = MG_EXIT_STATE;
            goto done;
        }
    }
    {
        /* one coordinator at a time: a session advisory lock keyed by the state schema */
        const char *p[1] = {o.state_schema};
        PGresult *res =
            mg_pg_query(c.pg, "SELECT pg_try_advisory_lock(7043, hashtext($1))", 1, p, &error);
        if (res == NULL)
            goto fail;
        locked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!locked) {
            fprintf(stderr, "migrate cutover: another migrate cutover is running on this "
                            "target\n");
            rc = MG_EXIT_STATE;
            goto done;
        }
    }
    atomic_store(&stop_requested, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    handlers = true;

    if (o.abort_cutover) {
        rc = do_abort(&c, &error);
        goto done;
    }
    if (!load_row(&c, &row, &error))
        goto fail;
    if (row.exists && strcmp(row.outcome, "done") == 0) {
        printf("the cutover is already done; the endpoint was flipped once and is not flipped "
               "again\n");
        print_report(&c);
        rc = MG_EXIT_OK;
        goto done;
    }
    if (!o.dry_run && row.exists && strcmp(row.outcome, "running") == 0 &&
        step_index(row.step) > S_PREFLIGHT) {
        /* resume a crashed cutover with the freeze mode it started with */
        from = step_index(row.step);
        if (from < 0 || !parse_freeze(row.freeze_mode, &c.freeze, &c.freeze_cmd, &error)) {
            if (!mg_error_is_set(&error))
                mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                             "unknown cutover step \"%s\"", row.step);
            goto fail;
        }
        if (row.has_fence) {
            c.fence_t = row.fence_t;
            c.fence_i = row.fence_i;
        }
        if (from < S_FLIP)
            from = S_FREEZE;
        frozen = from < S_FLIP; /* freeze again (idempotent) and take a new fence >= the old */
        MG_LOG_EVENT(MG_LOG_NOTICE, "cutover", "cutover.step",
                     MG_LOG_FIELDS(MG_LOG_STR("step", "resume"), MG_LOG_STR("from", steps[from])),
                     "resuming the cutover at %s", steps[from]);
        const char *p[1] = {"resume"};
        if (!q_exec(&c,
                    "UPDATE @.cutover SET steps = steps || jsonb_build_object($1::text, "
                    "jsonb_build_object('at', now())) WHERE id = 1",
                    1, p, &error))
            goto fail;
    } else if (!o.dry_run) {
        const char *p[3] = {o.freeze, verify_choices[o.verify], c.endpoint};
        if (!q_exec(&c,
                    "INSERT INTO @.cutover AS c (id, step, outcome, freeze_mode, verify_mode, "
                    "endpoint) VALUES (1, 'preflight', 'running', $1, $2, $3) ON CONFLICT (id) DO "
                    "UPDATE SET attempt = c.attempt + 1, step = 'preflight', outcome = "
                    "'running', reason = NULL, freeze_mode = $1, verify_mode = $2, endpoint = "
                    "$3, fence_ts = NULL, fence_inc = NULL, started_at = now(), frozen_at = NULL, "
                    "flipped_at = NULL, finished_at = NULL, unavailable_s = NULL, steps = '{}', "
                    "updated_at = now()",
                    3, p, &error))
            goto fail;
    }

    if (from == S_PREFLIGHT) {
        if (!step_begin(&c, S_PREFLIGHT, &error) || !preflight(&c, &pf, &error))
            goto fail;
        if (pf.refused) {
            if (!o.dry_run)
                mark_aborted(&c, pf.reason);
            fprintf(stderr, "migrate cutover: refused: %s\n", pf.reason);
            rc = MG_EXIT_STATE;
            goto done;
        }
        if (!step_end(&c, S_PREFLIGHT, &error))
            goto fail;
        if (o.dry_run) {
            printf("preflight passed (lag %.1f s); a cutover would freeze with %s\n", pf.lag_s,
                   o.freeze);
            rc = MG_EXIT_OK;
            goto done;
        }
        from = S_FREEZE;
    }

    if (from <= S_FENCE) {
        uint32_t t = 0, i = 0;
        /* persisted before the command: a crash right after it still knows to unfreeze */
        if (!step_begin(&c, S_FREEZE, &error))
            goto fail;
        frozen = true;
        if (!set_write_block(&c, c.freeze, true, &t, &i, &error))
            goto abort;
        if (!q_exec(&c, "UPDATE @.cutover SET frozen_at = coalesce(frozen_at, now()) WHERE id = 1",
                    0, NULL, &error) ||
            !step_end(&c, S_FREEZE, &error))
            goto abort;
        if (!step_begin(&c, S_FENCE, &error))
            goto abort;
        /* hook and none: the fence is the source's operationTime after the freeze */
        if (c.freeze != FREEZE_WRITE_BLOCK && !source_op_time(&c, &t, &i, &error))
            goto abort;
        if (t > c.fence_t || (t == c.fence_t && i > c.fence_i)) {
            c.fence_t = t;
            c.fence_i = i;
        }
        char ts[16], inc[16];
        snprintf(ts, sizeof(ts), "%u", c.fence_t);
        snprintf(inc, sizeof(inc), "%u", c.fence_i);
        const char *p[2] = {ts, inc};
        MG_LOG_EVENT(
            MG_LOG_NOTICE, "cutover", "cutover.fence",
            MG_LOG_FIELDS(MG_LOG_UINT("fence_ts", c.fence_t), MG_LOG_UINT("fence_inc", c.fence_i)),
            "fence T = Timestamp(%u, %u)", c.fence_t, c.fence_i);
        if (!q_exec(&c, "UPDATE @.cutover SET fence_ts = $1, fence_inc = $2 WHERE id = 1", 2, p,
                    &error) ||
            !step_end(&c, S_FENCE, &error))
            goto abort;
        from = S_DRAIN;
    }
    if (from < S_FLIP)
        frozen = true;
    c.deadline = mg_now_s() + (double)o.timeout_ms / 1000.0;

    if (from <= S_VERIFY) {
        if (!step_begin(&c, S_DRAIN, &error) || !drain(&c, &how, &error))
            goto abort;
        MG_LOG_EVENT(MG_LOG_INFO, "cutover", "cutover.drain",
                     MG_LOG_FIELDS(MG_LOG_STR("applier", how)),
                     "drained to the fence (applier: %s)", how);
        if (!step_end(&c, S_DRAIN, &error))
            goto abort;
        if (!step_begin(&c, S_VERIFY, &error))
            goto abort;
        bool vok = true;
        switch (o.verify) {
        case VERIFY_CHANGED:
            vok = verify_validate(&c, "--changed", &error);
            break;
        case VERIFY_FULL:
            vok = verify_validate(&c, "--full", &error);
            break;
        case VERIFY_COUNTS:
            vok = verify_counts(&c, &error);
            break;
        default:
            break;
        }
        if (!vok)
            goto abort;
        if (atomic_load(&stop_requested)) {
            mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                         "interrupted by a signal before the flip");
            goto abort;
        }
        if (mg_now_s() > c.deadline) {
            mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                         "timed out before the flip (--timeout)");
            goto abort;
        }
        if (!step_end(&c, S_VERIFY, &error))
            goto abort;
        from = S_FLIP;
    }

    /* flip: once any part of it succeeded there is no unfreezing; a re-run finishes it */
    if (from <= S_FLIP) {
        bool started = false;
        if (!step_begin(&c, S_FLIP, &error))
            goto abort;
        if (!flip(&c, &started, &error)) {
            if (!started) {
                mg_error_t e2 = error;
                mg_error_clear(&error);
                if (!q_exec(&c, "UPDATE @.cutover SET step = 'verify' WHERE id = 1", 0, NULL,
                            &error))
                    mg_log_error(MG_LOG_ERROR, "cutover", &error);
                error = e2;
                goto abort;
            }
            frozen = false;
            mg_error_prefix(&error, "the flip is partly done; run migrate cutover again to "
                                    "finish it");
            goto fail;
        }
        frozen = false;
        if (!q_exec(&c,
                    "UPDATE @.cutover SET flipped_at = now(), unavailable_s = extract(epoch FROM "
                    "now() - frozen_at) WHERE id = 1",
                    0, NULL, &error) ||
            !step_end(&c, S_FLIP, &error))
            goto fail;
    }
    frozen = false;
    if (!step_begin(&c, S_DONE, &error) ||
        !q_exec(&c,
                "UPDATE @.cutover SET outcome = 'done', finished_at = now(), updated_at = now() "
                "WHERE id = 1",
                0, NULL, &error) ||
        !step_end(&c, S_DONE, &error))
        goto fail;
    print_report(&c);
    rc = MG_EXIT_OK;
    goto done;

abort:
    if (frozen) {
        mg_log_error(MG_LOG_ERROR, "cutover", &error);
        rc = abort_frozen(&c, c.freeze, &error);
        goto done;
    }
fail:
    if (!mg_error_is_set(&error))
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    mg_log_error(MG_LOG_ERROR, "cutover", &error);
    fprintf(stderr, "migrate cutover: %s\n", error.message);
    rc = mg_exit_code_for_error(&error);
    if (frozen) /* the state could not be written: still unfreeze */
        rc = abort_frozen(&c, c.freeze, &error);
done:
    if (handlers) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (c.pg != NULL)
        PQfinish(c.pg);
    mg_mongo_close(&c.src);
    mg_config_destroy(config);
    return rc;
}
