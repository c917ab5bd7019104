/*
 * cutover/src/cutover_steps.c - the steps of the cutover (the table that
 * orders them is in cutover_run.c): freeze and its undo, fence, drain,
 * verify, flip. The preflight is in cutover_preflight.c, the look before
 * the flip in cutover_recheck.c. Each step can run again after a crash.
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

bool
mg_cutover__source_op_time(cutover_t *c, uint32_t *t, uint32_t *i, mg_error_t *error)
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

bool
mg_cutover__run_shell(const char *cmd, const char *name, const char *value, mg_error_t *error)
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
 * The freeze takes MongoDB's global lock in exclusive mode: it waits for
 * every open transaction while every other operation queues behind it, so
 * it may wait at most --freeze-timeout (maxTimeMS) and then gives up,
 * leaving the source unfrozen.
 */
static bool
set_write_block(cutover_t *c, bool on, uint32_t *t, uint32_t *i, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bool ok;

    if (c->freeze == FREEZE_NONE)
        return true;
    if (c->freeze == FREEZE_HOOK)
        return mg_cutover__run_shell(c->freeze_cmd, "MIGRATE_FREEZE", on ? "freeze" : "unfreeze",
                                     error);
    BSON_APPEND_BOOL(&cmd, "setUserWriteBlockMode", true);
    BSON_APPEND_BOOL(&cmd, "global", on);
    if (on && c->s->freeze_timeout_ms > 0)
        BSON_APPEND_INT64(&cmd, "maxTimeMS", c->s->freeze_timeout_ms);
    ok = mg_mongo_command(c->s->src, "admin", &cmd, &reply, error);
    if (!ok && on && error != NULL && error->code == 50) /* MaxTimeExpired */
        mg_error_prefix(error,
                        "could not block the source's writes within --freeze-timeout %.1f s: the "
                        "freeze waits for MongoDB's global lock behind open transactions, and "
                        "every operation on the source queued behind it meanwhile; it gave up "
                        "and the source is not frozen (end or shorten the long transactions, or "
                        "allow a longer --freeze-timeout)",
                        (double)c->s->freeze_timeout_ms / 1000.0);
    else if (!ok)
        mg_error_prefix(error, "could not %s the source's writes", on ? "block" : "unblock");
    if (ok && t != NULL && !reply_operation_time(&reply, t, i))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                          "the reply of setUserWriteBlockMode carries no operationTime");
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

bool
mg_cutover__write_block(cutover_t *c, bool on, mg_error_t *error)
{
    return set_write_block(c, on, NULL, NULL, error);
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

    if (!mg_cutover__owned(c, false, error) || !set_write_block(c, true, &t, &i, error))
        return false;
    keep_fence(c, t, i); /* write-block: the freeze's own operationTime */
    return mg_state_cutover_frozen(c->st, error);
}

/*
 * mg_cutover__unfreeze lifts the freeze, but only while this run owns the
 * cutover (confirmed on the target now): a run that lost it to another
 * leaves the source as the new owner has it.
 */
bool
mg_cutover__unfreeze(cutover_t *c, mg_error_t *error)
{
    return mg_cutover__owned(c, true, error) && set_write_block(c, false, NULL, NULL, error);
}

bool
mg_cutover__fence(cutover_t *c, mg_error_t *error)
{
    uint32_t t = 0, i = 0;

    /* hook and none: the fence is the source's operationTime after the freeze */
    if (c->freeze != FREEZE_WRITE_BLOCK) {
        if (!mg_cutover__source_op_time(c, &t, &i, error))
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
                 "no migrate sync --follow holds the follower lease (none alive within "
                 "--follower-window): applying the change stream here");
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
    mg_state_follower_t fo;

    *reached = *fresh = false;
    if (!mg_cutover__owned(c, false, error))
        return false;
    if (!mg_state_checkpoint_get(c->st, 0, &cp, error)) {
        PGconn *pg = mg_state_conn(c->st);
        bool ok;
        if (!mg_pg_lost(pg, error))
            return false;
        /* the target restarted or failed over: reconnect (the ownership is durable) and
         * keep draining; the look before the flip checks the checkpoint again */
        ok = mg_pg_reconnect(&pg, c->s->target, NULL, "cutover", error->message,
                             (double)c->s->timeout_ms / 1000.0, c->s->stop, 1, error);
        mg_state_set_conn(c->st, pg);
        if (ok)
            mg_error_clear(error);
        *fresh = true; /* decide about an applier on the next look, not on this one */
        return ok;
    }
    mg_state_checkpoint_cleanup(&cp);
    /* a follower is running while it holds the lease (its heartbeat, not the checkpoint) */
    if (!mg_state_follower_get(c->st, c->s->follower_window_ms, &fo, error))
        return false;
    *fresh = fo.alive;
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

/* flip_etcd puts the endpoint to --endpoint-etcd (with its authentication and TLS, if any). */
static bool
flip_etcd(cutover_t *c, mg_error_t *error)
{
    const mg_cutover_settings_t *o = c->s;
    const char *eps[1] = {o->endpoint_etcd};
    mg_etcd_options_t eo = {
        .endpoints = eps,
        .nendpoints = 1,
        .username = o->endpoint_etcd_user,
        .password = o->endpoint_etcd_password,
        .ca_file = o->endpoint_etcd_ca,
        .cert_file = o->endpoint_etcd_cert,
        .key_file = o->endpoint_etcd_key_file,
        .timeout_ms = 5000,
    };
    mg_etcd_t *etcd = mg_etcd_new(&eo, error);
    bool ok = etcd != NULL && mg_etcd_put(etcd, o->endpoint_etcd_key, c->endpoint,
                                          strlen(c->endpoint), 0, NULL, error);

    mg_etcd_destroy(etcd);
    if (!ok)
        mg_error_prefix(error, "could not put the endpoint to etcd key \"%s\"",
                        o->endpoint_etcd_key);
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
        if (!mg_cutover__run_shell(o->flip_hook, "MIGRATE_ENDPOINT", c->endpoint, error)) {
            mg_error_prefix(error, "flip hook");
            return false;
        }
        c->flip_started = true;
    }
    if (o->endpoint_etcd != NULL) {
        if (!flip_etcd(c, error))
            return false;
        c->flip_started = true;
    }
    if (o->endpoint_file != NULL && !flip_file(o->endpoint_file, c->endpoint, error))
        return false;
    c->flip_started = true;
    return true;
}

/*
 * mg_cutover__flip confirms the ownership on the target and looks at the
 * source once more (mg_cutover__recheck), prepares the way back
 * (cutover_capture.c), then tells the application
 * (mg_cutover__flip_endpoint). c->flip_started says whether any of it
 * succeeded (after which the source is not unfrozen: the application may
 * already be moving). Failing before anything started, the step is set
 * back to verify.
 */
bool
mg_cutover__flip(cutover_t *c, mg_error_t *error)
{
    c->flip_started = false;
    if (mg_cutover__owned(c, true, error) && mg_cutover__recheck(c, error) &&
        mg_cutover__owned(c, false, error) && mg_cutover__capture(c, error) &&
        mg_cutover__flip_endpoint(c, error))
        return mg_state_cutover_flipped(c->st, error);
    if (!c->flip_started && !c->lost) {
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
