/*
 * cutover/src/cutover_steps.c - the steps of the cutover (the table that
 * orders them is in cutover_run.c): preflight, freeze and its undo, fence,
 * drain, verify, flip. Each can run again after a crash.
 */
#include "cutover_internal.h"
#include "mg/cdc.h"
#include "mg/schema.h"
#include "mg/validate.h"

#include <errno.h>
#include <libpq-fe.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_US (50 * 1000)

/* stop_requested tells whether the operator asked to stop (SIGINT/SIGTERM). */
static bool
stop_requested(const cutover_t *c)
{
    return c->s->stop != NULL && atomic_load(c->s->stop) > 0;
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
    ok = mg_mongo_command(c->s->src, "admin", &cmd, &reply, error);
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
set_write_block(cutover_t *c, bool on, uint32_t *t, uint32_t *i, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bool ok;

    if (c->freeze == FREEZE_NONE)
        return true;
    if (c->freeze == FREEZE_HOOK)
        return run_shell(c->freeze_cmd, "MIGRATE_FREEZE", on ? "freeze" : "unfreeze", error);
    BSON_APPEND_BOOL(&cmd, "setUserWriteBlockMode", true);
    BSON_APPEND_BOOL(&cmd, "global", on);
    ok = mg_mongo_command(c->s->src, "admin", &cmd, &reply, error);
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
    ok = mg_mongo_command(c->s->src, "admin", &cmd, &reply, error);
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

static bool refuse(cutover_t *c, mg_error_t *error, const char *fmt, ...) MG_PRINTF(3, 4);

/* refuse fills error with "refused: ..." (domain state) and returns false. */
static bool
refuse(cutover_t *c, mg_error_t *error, const char *fmt, ...)
{
    char reason[MG_ERROR_MESSAGE_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    c->refused = true;
    return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED, "refused: %s", reason);
}

bool
mg_cutover__preflight(cutover_t *c, mg_error_t *error)
{
    mg_state_checkpoint_t cp;
    char ns[600], why[MG_ERROR_MESSAGE_SIZE];
    bool found, allowed;

    if (!mg_state_checkpoint_get(c->st, 0, &cp, error))
        return false;
    mg_state_checkpoint_cleanup(&cp);
    if (!cp.applied)
        return refuse(c, error, "the change stream has never been applied: run migrate sync first");
    c->lag_s = cp.lag_s;
    if (cp.lag_s * 1000.0 > (double)c->s->max_lag_ms)
        return refuse(c, error,
                      "the change stream's lag is %.1f s, above --max-lag %.3f s: let migrate "
                      "sync --follow catch up (or run migrate sync) first",
                      cp.lag_s, (double)c->s->max_lag_ms / 1000.0);
    if (!mg_state_collection_first_failed(c->st, &found, ns, sizeof(ns), why, sizeof(why), error))
        return false;
    if (found)
        return refuse(c, error, "collection %s is in error (%s): fix it and sync it again first",
                      ns, why);
    if (c->s->validation_age_ms > 0) {
        if (!mg_state_validation_recent_clean(c->st, c->s->validation_age_ms, &found, error))
            return false;
        if (!found)
            return refuse(c, error,
                          "no clean validation run finished within --validation-age: "
                          "run migrate validate first");
    }
    if (c->freeze == FREEZE_WRITE_BLOCK) {
        if (!check_privilege(c, &allowed, error))
            return false;
        if (!allowed)
            return refuse(c, error,
                          "the source user lacks the setUserWriteBlockMode privilege on the "
                          "cluster resource: grant it, or freeze the application yourself with "
                          "--freeze hook:CMD (or --freeze none)");
    }
    if (!c->s->no_fallback) {
        char level[32];
        if (!mg_cutover__wal_level(c, level, sizeof(level), error))
            return false;
        if (strcmp(level, "logical") != 0)
            return refuse(c, error,
                          "the target's wal_level is %s: the way back (a logical replication "
                          "slot made at the flip) needs wal_level = logical; set it and restart "
                          "PostgreSQL, or cut over without a way back (--no-fallback)",
                          level);
    }
    return true;
}

/* ---- freeze, fence ---- */

/* keep_fence moves the fence forward to (t, i) (a resumed cutover's fence never goes back). */
static void
keep_fence(cutover_t *c, uint32_t t, uint32_t i)
{
    if (t > c->fence_t || (t == c->fence_t && i > c->fence_i)) {
        c->fence_t = t;
        c->fence_i = i;
    }
}

bool
mg_cutover__freeze(cutover_t *c, mg_error_t *error)
{
    uint32_t t = 0, i = 0;

    if (!set_write_block(c, true, &t, &i, error))
        return false;
    keep_fence(c, t, i); /* write-block: the freeze's own operationTime */
    return mg_state_cutover_frozen(c->st, error);
}

bool
mg_cutover__unfreeze(cutover_t *c, mg_error_t *error)
{
    return set_write_block(c, false, NULL, NULL, error);
}

bool
mg_cutover__fence(cutover_t *c, mg_error_t *error)
{
    uint32_t t = 0, i = 0;

    /* hook and none: the fence is the source's operationTime after the freeze */
    if (c->freeze != FREEZE_WRITE_BLOCK) {
        if (!source_op_time(c, &t, &i, error))
            return false;
        keep_fence(c, t, i);
    }
    MG_LOG_EVENT(
        MG_LOG_NOTICE, "cutover", "cutover.fence",
        MG_LOG_FIELDS(MG_LOG_UINT("fence_ts", c->fence_t), MG_LOG_UINT("fence_inc", c->fence_i)),
        "fence T = Timestamp(%u, %u)", c->fence_t, c->fence_i);
    return mg_state_cutover_fence(c->st, c->fence_t, c->fence_i, error);
}

/* ---- drain ---- */

/* The cutover's own applier: a change-stream follower in a thread. */
typedef struct {
    mg_cdc_follow_settings_t fs;
    atomic_int stop;
    atomic_int finished;
    pthread_t thread;
    int rc;
    mg_error_t error;
} applier_t;

static void *
applier_main(void *varg)
{
    applier_t *a = varg;
    sigset_t all;
    mg_cdc_follow_t *f;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    mg_error_clear(&a->error);
    f = mg_cdc_follow_new(&a->fs, &a->error);
    a->rc = f != NULL ? mg_cdc_follow_run(f, &a->error) : (int)mg_exit_code_for_error(&a->error);
    mg_cdc_follow_destroy(f);
    atomic_store(&a->finished, 1);
    return NULL;
}

/* applier_start starts the cutover's own applier; NULL with error set when it cannot. */
static applier_t *
applier_start(cutover_t *c, mg_error_t *error)
{
    applier_t *ap = calloc(1, sizeof(*ap));

    if (ap == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return NULL;
    }
    atomic_init(&ap->stop, 0);
    atomic_init(&ap->finished, 0);
    ap->fs = (mg_cdc_follow_settings_t){
        .source_uri = c->s->source,
        .target = c->s->target,
        .state_schema = mg_state_schema(c->st),
        .follow = true,
        .batch_events = 5000,
        .batch_bytes = 32 * 1024 * 1024,
        .batch_delay_ms = 20,
        .stop = &ap->stop,
    };
    c->applier = "own applier";
    MG_LOG_EVENT(MG_LOG_NOTICE, "cutover", "cutover.drain", NULL, 0,
                 "no migrate sync --follow moved the checkpoint within --follower-window: "
                 "applying the change stream here");
    if (pthread_create(&ap->thread, NULL, applier_main, ap) != 0) {
        free(ap);
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                     "could not start the applier thread");
        return NULL;
    }
    return ap;
}

static void
applier_stop(applier_t *ap)
{
    if (ap == NULL)
        return;
    atomic_store(&ap->stop, 1);
    pthread_join(ap->thread, NULL);
    free(ap);
}

/*
 * drain_check reads the checkpoint: *reached when it is at or past the
 * fence; fails on a stop request or the deadline.
 */
static bool
drain_check(cutover_t *c, bool *reached, bool *fresh, mg_error_t *error)
{
    mg_state_checkpoint_t cp;

    if (!mg_state_checkpoint_get(c->st, c->s->follower_window_ms, &cp, error))
        return false;
    mg_state_checkpoint_cleanup(&cp);
    *fresh = cp.fresh;
    *reached = cp.t > c->fence_t || (cp.t == c->fence_t && cp.i >= c->fence_i);
    if (*reached)
        return true;
    if (stop_requested(c))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "interrupted by a signal during the drain");
    if (mg_now_s() > c->deadline)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "timed out draining: the applied checkpoint Timestamp(%u, %u) did not "
                            "reach the fence Timestamp(%u, %u) within --timeout",
                            cp.t, cp.i, c->fence_t, c->fence_i);
    return true;
}

/*
 * mg_cutover__drain waits until the applied checkpoint is at or past the
 * fence. A `sync --follow` that moved the checkpoint within
 * --follower-window does the work; otherwise (or once it goes quiet) this
 * process applies the change stream itself in a thread until the fence is
 * reached.
 */
bool
mg_cutover__drain(cutover_t *c, mg_error_t *error)
{
    applier_t *ap = NULL;
    bool reached = false, fresh, ok;

    c->applier = "sync --follow";
    while ((ok = drain_check(c, &reached, &fresh, error)) && !reached) {
        if (ap != NULL && atomic_load(&ap->finished)) {
            /* another applier may have moved the checkpoint under ours: look, then retry */
            MG_LOG_EVENT(MG_LOG_WARNING, "cutover", "cutover.drain",
                         MG_LOG_FIELDS(MG_LOG_INT("rc", ap->rc)),
                         "the cutover's own applier stopped: %s", ap->error.message);
            applier_stop(ap);
            ap = NULL;
            continue;
        }
        if (ap == NULL && !fresh && (ap = applier_start(c, error)) == NULL)
            break;
        usleep(POLL_US);
    }
    applier_stop(ap);
    if (ok && reached)
        MG_LOG_EVENT(MG_LOG_INFO, "cutover", "cutover.drain",
                     MG_LOG_FIELDS(MG_LOG_STR("applier", c->applier)),
                     "drained to the fence (applier: %s)", c->applier);
    return ok && reached;
}

/* ---- verify ---- */

/* verify_validate runs the validate engine in-process (changed or full, any mismatch fails). */
static bool
verify_validate(cutover_t *c, bool full, mg_error_t *error)
{
    const char *mode = full ? "full" : "changed";
    mg_validate_settings_t vs;
    mg_error_t e;
    int rc;

    mg_validate_settings_init(&vs);
    vs.source = c->s->source;
    vs.target = c->s->target;
    vs.state = c->st;
    vs.full = full;
    vs.changed = !full;
    vs.fail_on_any = true;
    vs.out = stderr; /* stdout carries the cutover's own report */
    vs.stop = c->s->stop;
    mg_error_clear(&e);
    rc = mg_validate_run(&vs, &e);
    if (rc == MG_EXIT_OK)
        return true;
    if (rc == MG_EXIT_MISMATCH)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "verification found differences (validate --%s): see "
                            "_migrate.validation_mismatches",
                            mode);
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                        "verification could not run (validate --%s): %s", mode, e.message);
}

/* count_table counts the rows of schema.table into *n. */
static bool
count_table(PGconn *pg, const char *schema, const char *table, int64_t *n, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    bool ok;

    mg_buf_init(&sql, 4096);
    ok = mg_buf_append_str(&sql, "SELECT count(*) FROM ", error) &&
         mg_schema_quote_ident(schema, &sql, error) && mg_buf_append_str(&sql, ".", error) &&
         mg_schema_quote_ident(table, &sql, error) &&
         (res = mg_pg_query(pg, sql.data, 0, NULL, error)) != NULL;
    if (ok)
        *n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
}

/* verify_counts compares countDocuments on the source with count(*) per table. */
static bool
verify_counts(cutover_t *c, mg_error_t *error)
{
    mg_state_colls_t colls = {0};
    bool ok = mg_state_collections_load(c->st, false, &colls, error);

    for (size_t r = 0; ok && r < colls.n; r++) {
        const mg_state_coll_t *x = &colls.items[r];
        bson_t filter = BSON_INITIALIZER;
        bson_error_t be;
        int64_t n_src, n_dst = -1;
        mongoc_collection_t *mc;

        if (strcmp(x->status, "failed") == 0)
            continue;
        mc = mongoc_client_get_collection(c->s->src->client, x->db, x->coll);
        n_src = mongoc_collection_count_documents(mc, &filter, NULL, NULL, NULL, &be);
        mongoc_collection_destroy(mc);
        bson_destroy(&filter);
        if (n_src < 0)
            ok = mg_error_set_bson(error, &be, "could not count %s.%s", x->db, x->coll);
        else if (!count_table(mg_state_conn(c->st), x->schema, x->table, &n_dst, error))
            ok = false;
        else if (n_src != n_dst)
            ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                              "verification found differences: %s.%s has %lld documents and "
                              "%lld rows",
                              x->db, x->coll, (long long)n_src, (long long)n_dst);
    }
    mg_state_colls_cleanup(&colls);
    return ok;
}

bool
mg_cutover__verify(cutover_t *c, mg_error_t *error)
{
    switch (c->s->verify) {
    case MG_CUTOVER_VERIFY_CHANGED:
        return verify_validate(c, false, error);
    case MG_CUTOVER_VERIFY_FULL:
        return verify_validate(c, true, error);
    case MG_CUTOVER_VERIFY_COUNTS:
        return verify_counts(c, error);
    case MG_CUTOVER_VERIFY_NONE:
        break;
    }
    return true;
}

/* ---- flip ---- */

/* flip_file writes the endpoint file: a new one 0600 (it may hold a password), an existing
 * one keeping the mode and owner the operator gave it. */
static bool
flip_file(const char *path, const char *endpoint, mg_error_t *error)
{
    mg_buf_t text;
    bool ok;

    mg_buf_init(&text, strlen(endpoint) + 2);
    ok = mg_buf_append_str(&text, endpoint, error) && mg_buf_append_str(&text, "\n", error) &&
         mg_file_write_atomic(path, text.data, text.len, NULL, error);
    mg_buf_cleanup(&text);
    return ok;
}

/*
 * mg_cutover__flip_endpoint tells the application: the hook first, then
 * etcd, then the file. c->flip_started says whether any of them succeeded.
 */
bool
mg_cutover__flip_endpoint(cutover_t *c, mg_error_t *error)
{
    const mg_cutover_settings_t *o = c->s;

    if (o->flip_hook != NULL) {
        if (!run_shell(o->flip_hook, "MIGRATE_ENDPOINT", c->endpoint, error)) {
            mg_error_prefix(error, "flip hook");
            return false;
        }
        c->flip_started = true;
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
        c->flip_started = true;
    }
    if (o->endpoint_file != NULL && !flip_file(o->endpoint_file, c->endpoint, error))
        return false;
    c->flip_started = true;
    return true;
}

/*
 * mg_cutover__flip prepares the way back (cutover_capture.c), then tells
 * the application (mg_cutover__flip_endpoint). c->flip_started says
 * whether any of it succeeded (after which the source is not unfrozen: the
 * application may already be moving). Failing before anything started,
 * the step is set back to verify.
 */
bool
mg_cutover__flip(cutover_t *c, mg_error_t *error)
{
    c->flip_started = false;
    if (mg_cutover__capture(c, error) && mg_cutover__flip_endpoint(c, error))
        return mg_state_cutover_flipped(c->st, error);
    if (!c->flip_started) {
        mg_error_t e;
        if (!mg_state_cutover_step(c->st, "verify", &e))
            mg_log_error(MG_LOG_ERROR, "cutover", &e);
    }
    return false;
}

bool
mg_cutover__parse_freeze(const char *text, freeze_kind_t *kind, const char **cmd, mg_error_t *error)
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
