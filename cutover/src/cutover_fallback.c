/*
 * cutover/src/cutover_fallback.c - `migrate fallback` (docs/cutover.md
 * "Fallback"): the cutover in reverse, run by the cutover's own runner
 * (mg_cutover__run_steps) over its own table of steps and recorded in the
 * state's `fallback` row:
 *
 *   preflight  a cutover flipped; the reverse capture ready, its slot there
 *   freeze     PostgreSQL's writers stopped (revoke: the write privileges
 *              of the application's roles on the migrated tables revoked,
 *              what they held recorded first, their sessions ended, and no
 *              role left that may write; none: trusted); undo: grant back
 *   fence      F = pg_current_wal_lsn(), committed with synchronous_commit
 *   drain      MongoDB's reverse position at or past F (a running `sync
 *              --reverse --follow` gets there; else the drain streams here)
 *   verify     the validate engine (or counts) between the two sides
 *   flip       MongoDB unfrozen, then the endpoint (hook, etcd, file)
 *   done       the capture (slot and publication) dropped
 */
#include "cutover_internal.h"
#include "mg/cdc_reverse.h"
#include "mg/state_fallback.h"

#include <bson/bson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long the freeze waits for the sessions it ended to go. */
#define SESSIONS_GONE_S 10.0

/* ---- preflight ---- */

static bool
preflight_check(cutover_t *c, mg_error_t *error)
{
    mg_state_reverse_t cap;
    mg_state_slot_t slot;
    bool flipped;
    char at[40];

    if (!mg_state_cutover_flipped_at(c->st, &flipped, at, error) ||
        !mg_state_reverse_get(c->st, &cap, error))
        return false;
    c->refused = true;
    if (!flipped)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                            "could not fall back: no cutover has flipped the endpoint to "
                            "PostgreSQL (the application still writes to MongoDB)");
    if (!cap.exists || strcmp(cap.status, "ready") != 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                            "could not fall back: no reverse capture is ready (the cutover ran "
                            "with --no-fallback, or it was dropped): what the application wrote "
                            "to PostgreSQL cannot be carried back");
    if (!mg_state_slot_get(c->st, cap.slot, &slot, error)) {
        c->refused = false;
        return false;
    }
    if (!slot.exists || !slot.logical || strcmp(slot.wal_status, "lost") == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                            "could not fall back: replication slot \"%s\" is %s (a failover of "
                            "the target, or its WAL was removed): the reverse stream has a gap",
                            cap.slot, slot.exists ? "lost" : "missing");
    if (c->freeze == FREEZE_REVOKE &&
        (c->s->freeze_roles == NULL || c->s->freeze_roles->count == 0))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not fall back: --freeze revoke needs the application's roles "
                            "(--freeze-role ROLE, repeatable)");
    c->refused = false;
    return true;
}

/* fb_preflight refuses (exit 8, "refused: ...") when the state does not allow a fallback. */
static bool
fb_preflight(cutover_t *c, mg_error_t *error)
{
    if (preflight_check(c, error))
        return true;
    if (c->refused)
        mg_error_prefix(error, "refused");
    return false;
}

/* ---- freeze: the application's write privileges ---- */

/* roles_sql appends the roles, quoted, separated by commas. */
static bool
roles_sql(mg_buf_t *sql, const mg_strlist_t *roles, mg_error_t *error)
{
    for (size_t k = 0; k < roles->count; k++)
        if (!(k == 0 || mg_buf_append_str(sql, ", ", error)) ||
            !mg_schema_quote_ident(roles->items[k], sql, error))
            return false;
    return true;
}

/* revoke_all revokes INSERT, UPDATE, DELETE, TRUNCATE on every migrated table from the roles. */
static bool
revoke_all(cutover_t *c, mg_error_t *error)
{
    mg_state_colls_t colls = {0};
    mg_buf_t sql;
    bool ok = mg_state_collections_load(c->st, false, &colls, error);

    mg_buf_init(&sql, 1u << 20);
    for (size_t k = 0; ok && k < colls.n; k++) {
        mg_buf_reset(&sql);
        ok = mg_buf_append_str(&sql, "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ", error) &&
             mg_schema_quote_ident(colls.items[k].schema, &sql, error) &&
             mg_buf_append_str(&sql, ".", error) &&
             mg_schema_quote_ident(colls.items[k].table, &sql, error) &&
             mg_buf_append_str(&sql, " FROM ", error) &&
             roles_sql(&sql, c->s->freeze_roles, error) &&
             mg_pg_exec(mg_state_conn(c->st), sql.data, error);
    }
    mg_buf_cleanup(&sql);
    mg_state_colls_cleanup(&colls);
    return ok;
}

/* end_sessions ends the roles' sessions (an open transaction that wrote is rolled back: it was
 * never acknowledged) and waits until they are gone. */
static bool
end_sessions(cutover_t *c, mg_error_t *error)
{
    mg_buf_t arr;
    double deadline = mg_now_s() + SESSIONS_GONE_S;
    bool ok;
    int64_t left = 1;

    mg_buf_init(&arr, 1u << 20);
    ok = mg_pg_text_array((const char *const *)c->s->freeze_roles->items, c->s->freeze_roles->count,
                          &arr, error);
    while (ok && left > 0) {
        const char *p[1] = {arr.data};
        PGresult *res = mg_pg_query(mg_state_conn(c->st),
                                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE usename = ANY($1::text[]) AND pid <> pg_backend_pid()",
                                    1, p, error);
        if ((ok = res != NULL))
            left = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (ok && left > 0 && mg_now_s() > deadline)
            ok = mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_LIMIT,
                              "could not end the sessions of the application's roles within "
                              "%.0f s",
                              SESSIONS_GONE_S);
        if (ok && left > 0)
            usleep(100 * 1000);
    }
    mg_buf_cleanup(&arr);
    return ok;
}

/* writer_found fails naming a role that may still write a table. */
static bool
writer_found(void *ctx, const char *role, const char *table, const char *unused, mg_error_t *error)
{
    (void)ctx;
    (void)unused;
    return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                        "could not freeze PostgreSQL: role \"%s\" may still write table %s after "
                        "its grants were revoked (through PUBLIC, a role it is a member of, "
                        "ownership or superuser): revoke those too, or use --freeze none",
                        role, table);
}

static bool
fb_freeze(cutover_t *c, mg_error_t *error)
{
    if (c->freeze == FREEZE_NONE)
        return mg_state_fallback_frozen(c->st, error);
    /* the record first, once per attempt: a resumed freeze must not record the revoked state */
    return mg_state_fallback_grants_record(c->st, c->s->freeze_roles, error) &&
           revoke_all(c, error) && end_sessions(c, error) &&
           mg_state_fallback_writers(c->st, c->s->freeze_roles, writer_found, NULL, error) &&
           mg_state_fallback_frozen(c->st, error);
}

/* grant_back gives one recorded privilege back. */
static bool
grant_back(void *ctx, const char *schema, const char *table, const char *role,
           const char *privilege, bool grantable, mg_error_t *error)
{
    cutover_t *c = ctx;
    mg_buf_t sql;
    bool ok;

    if (strcmp(privilege, "INSERT") != 0 && strcmp(privilege, "UPDATE") != 0 &&
        strcmp(privilege, "DELETE") != 0 && strcmp(privilege, "TRUNCATE") != 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_ERROR_CODE_PARSE,
                            "could not give back privilege \"%.40s\": not one the freeze revokes",
                            privilege);
    mg_buf_init(&sql, 1u << 16);
    ok = mg_buf_printf(&sql, error, "GRANT %s ON ", privilege) &&
         mg_schema_quote_ident(schema, &sql, error) && mg_buf_append_str(&sql, ".", error) &&
         mg_schema_quote_ident(table, &sql, error) && mg_buf_append_str(&sql, " TO ", error) &&
         mg_schema_quote_ident(role, &sql, error) &&
         mg_buf_append_str(&sql, grantable ? " WITH GRANT OPTION" : "", error) &&
         mg_pg_exec(mg_state_conn(c->st), sql.data, error);
    mg_buf_cleanup(&sql);
    return ok;
}

static bool
fb_unfreeze(cutover_t *c, mg_error_t *error)
{
    return c->freeze == FREEZE_NONE || mg_state_fallback_grants_each(c->st, grant_back, c, error);
}

/* ---- fence and drain ---- */

static bool
fb_fence(cutover_t *c, mg_error_t *error)
{
    mg_state_reverse_t cap;
    char lsn[32];

    if (!mg_state_reverse_get(c->st, &cap, error) ||
        !mg_state_fallback_fence(c->st, cap.generation, &c->fence_lsn, error))
        return false;
    c->fence_generation = cap.generation;
    MG_LOG(MG_LOG_NOTICE, "cutover", "fallback: fence %s (capture generation %d)",
           mg_cdc_lsn_text(c->fence_lsn, lsn, sizeof(lsn)), cap.generation);
    return true;
}

/* drain_here streams the slot in this process until MongoDB's position reaches the fence. */
static bool
drain_here(cutover_t *c, mg_error_t *error)
{
    mg_cdc_reverse_settings_t rs = {
        .source_uri = c->s->source,
        .target = c->s->target,
        .state_schema = mg_state_schema(c->st),
        .until_lsn = c->fence_lsn,
        .until_generation = c->fence_generation,
        .batch_changes = 5000,
        .batch_bytes = 32 << 20,
        .stop = c->s->stop,
    };
    mg_cdc_reverse_t *r = mg_cdc_reverse_new(&rs, error);
    int rc = r != NULL ? mg_cdc_reverse_run(r, error) : MG_EXIT_FAILURE;

    mg_cdc_reverse_destroy(r);
    return rc == MG_EXIT_OK;
}

static bool
fb_drain(cutover_t *c, mg_error_t *error)
{
    mg_state_reverse_t cap;
    mg_state_slot_t slot;
    mg_cdc_reverse_pos_t pos;
    char want[32], at[32];

    for (;;) {
        if (!mg_cdc_reverse_position_get(c->s->src->client, mg_state_schema(c->st), &pos, error))
            return false;
        if (pos.exists && pos.generation == c->fence_generation && pos.lsn >= c->fence_lsn &&
            pos.part_lsn == 0)
            return true;
        if (mg_now_s() > c->deadline)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "timed out draining the reverse sync to the fence %s (at %s)",
                                mg_cdc_lsn_text(c->fence_lsn, want, sizeof(want)),
                                mg_cdc_lsn_text(pos.lsn, at, sizeof(at)));
        if (!mg_state_reverse_get(c->st, &cap, error) ||
            !mg_state_slot_get(c->st, cap.slot, &slot, error))
            return false;
        if (!slot.active) /* no `sync --reverse --follow` running: drain here */
            return drain_here(c, error);
        usleep(100 * 1000);
    }
}

/* ---- flip ---- */

static bool
fb_flip(cutover_t *c, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bool ok;

    c->flip_started = false;
    BSON_APPEND_INT32(&cmd, "setUserWriteBlockMode", 1);
    BSON_APPEND_BOOL(&cmd, "global", false);
    ok = mg_mongo_command(c->s->src, "admin", &cmd, &reply, error);
    bson_destroy(&cmd);
    bson_destroy(&reply);
    if (!ok) {
        mg_error_prefix(error, "could not unfreeze the source");
        return false;
    }
    /* MongoDB takes writes again: from here on nothing is undone */
    c->flip_started = true;
    return mg_state_fallback_unfrozen_source(c->st, error) && mg_cutover__flip_endpoint(c, error) &&
           mg_state_fallback_flipped(c->st, error);
}

static const cutover_step_t protocol[N_STEPS] = {
    {S_PREFLIGHT, "preflight", fb_preflight, NULL,
     "a cutover flipped; the reverse capture ready and its slot there"},
    {S_FREEZE, "freeze", fb_freeze, fb_unfreeze,
     "revoke the application's write privileges on the migrated tables, end its sessions"},
    {S_FENCE, "fence", fb_fence, NULL, "F = pg_current_wal_lsn(), flushed"},
    {S_DRAIN, "drain", fb_drain, NULL, "MongoDB's reverse position at or past F"},
    {S_VERIFY, "verify", mg_cutover__verify, NULL, "validate (or count) both sides"},
    {S_FLIP, "flip", fb_flip, NULL, "unfreeze MongoDB, then hook, etcd key, endpoint file"},
    {S_DONE, "done", NULL, NULL, "drop the capture; record the outcome"},
};

/* ---- the fallback row as the runner's record ---- */

static bool
io_begin(cutover_t *c, const char *step, mg_error_t *error)
{
    return mg_state_fallback_step(c->st, step, error);
}

static bool
io_end(cutover_t *c, const char *step, double seconds, mg_error_t *error)
{
    return mg_state_fallback_step_done(c->st, step, seconds, error);
}

/* io_done drops the capture (its slot would hold WAL forever) and records the outcome. */
static bool
io_done(cutover_t *c, mg_error_t *error)
{
    mg_state_reverse_t cap;

    return mg_state_reverse_get(c->st, &cap, error) &&
           (!cap.exists ||
            mg_cdc_reverse_capture_drop(mg_state_conn(c->st), cap.slot, NULL, 0, error)) &&
           (!cap.exists || mg_state_reverse_set_status(c->st, "dropped", "fallback done", error)) &&
           mg_state_fallback_done(c->st, error);
}

static void
io_aborted(cutover_t *c, const char *reason)
{
    mg_error_t e;

    MG_LOG_EVENT(MG_LOG_ERROR, "cutover", "fallback.step",
                 MG_LOG_FIELDS(MG_LOG_STR("step", "aborted"), MG_LOG_STR("reason", reason)),
                 "fallback aborted: %s", reason);
    if (!mg_state_fallback_aborted(c->st, reason, &e))
        mg_log_error(MG_LOG_ERROR, "cutover", &e);
}

static void
io_report(cutover_t *c)
{
    mg_state_cutover_report_t r;
    mg_error_t e;

    if (c->s->out == NULL || !mg_state_fallback_report(c->st, &r, &e)) {
        mg_log_error(MG_LOG_WARNING, "cutover", c->s->out != NULL ? &e : NULL);
        return;
    }
    mg_cutover__print_report(c, "fallback", &r);
    mg_state_cutover_report_cleanup(&r);
}

static const cutover_io_t fallback_io = {
    .step_begin = io_begin,
    .step_end = io_end,
    .done = io_done,
    .aborted = io_aborted,
    .report = io_report,
};

/* ---- resume ---- */

static int
step_of(const char *name)
{
    for (int k = 0; k < N_STEPS; k++)
        if (strcmp(protocol[k].name, name) == 0)
            return k;
    return -1;
}

/* resume_point starts a new attempt, or resumes a crashed one (*from -1: done already). */
static bool
resume_point(cutover_t *c, int *from, mg_error_t *error)
{
    const mg_cutover_settings_t *o = c->s;
    mg_state_fallback_t row;

    *from = -1;
    if (!mg_state_fallback_get(c->st, &row, error))
        return false;
    if (row.exists && strcmp(row.outcome, "done") == 0) {
        fprintf(o->out, "the fallback is already done; the endpoint was flipped back once\n");
        io_report(c);
        return true;
    }
    *from = row.exists ? step_of(row.step) : S_PREFLIGHT;
    if (o->dry_run || !row.exists || strcmp(row.outcome, "running") != 0 || *from <= S_PREFLIGHT) {
        static const mg_strlist_t none = {0};
        *from = S_PREFLIGHT;
        return o->dry_run ||
               mg_state_fallback_start(c->st, o->freeze,
                                       o->freeze_roles != NULL ? o->freeze_roles : &none,
                                       mg_cutover_verify_name(o->verify), c->endpoint, error);
    }
    if (*from < 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "unknown fallback step \"%s\"", row.step);
    c->freeze = strcmp(row.freeze_mode, "none") == 0 ? FREEZE_NONE : FREEZE_REVOKE;
    if (*from < S_FLIP)
        *from = S_FREEZE; /* freeze again (idempotent), a new fence, drain, verify */
    c->resumed = true;
    MG_LOG(MG_LOG_NOTICE, "cutover", "resuming the fallback at %s", protocol[*from].name);
    return mg_state_fallback_resumed(c->st, error);
}

int
mg_cutover_fallback_run(const mg_cutover_settings_t *s, mg_error_t *error)
{
    cutover_t c;
    bool locked = false;
    int from;

    memset(&c, 0, sizeof(c));
    c.s = s;
    c.io = &fallback_io;
    c.command = "fallback";
    c.st = s->state;
    c.endpoint = s->endpoint != NULL ? s->endpoint : s->source;
    if (strcmp(s->freeze, "revoke") == 0)
        c.freeze = FREEZE_REVOKE;
    else if (strcmp(s->freeze, "none") == 0)
        c.freeze = FREEZE_NONE;
    else {
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "invalid value for option \"freeze\": \"%s\" (expected revoke or none)",
                     s->freeze);
        return MG_EXIT_USAGE;
    }
    if (!mg_state_reverse_ensure(c.st, error) || !mg_state_fallback_lock(c.st, &locked, error))
        return mg_exit_code_for_error(error);
    if (!locked) {
        mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                     "another migrate fallback is running on this target");
        return MG_EXIT_STATE;
    }
    if (!resume_point(&c, &from, error))
        return mg_exit_code_for_error(error);
    if (from < 0)
        return MG_EXIT_OK;
    return mg_cutover__run_steps(&c, protocol, from, error);
}
