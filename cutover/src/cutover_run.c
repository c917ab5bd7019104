/*
 * cutover/src/cutover_run.c - the cutover protocol (docs/cutover.md):
 * the table of steps, and the runner that persists each step before it
 * runs, resumes a crashed cutover at its step, undoes what was done when a
 * step fails before the flip, and reports the write-unavailability window.
 * The steps themselves are in cutover_steps.c.
 *
 * Every step is persisted in the state schema's `cutover` row and logged
 * with "event":"cutover.step", so a crashed cutover resumes from its step
 * and `migrate cutover --abort` can unfreeze the source.
 */
#include "cutover_internal.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

/*
 * The protocol, one row per step, in order (pg_auto_failover's FSM table
 * style). `undo` runs, newest first, for every step started when a step
 * before the flip fails; from the flip on nothing is undone (the
 * application may already be moving) and a re-run finishes the flip.
 */
static const cutover_step_t protocol[N_STEPS] = {
    {S_PREFLIGHT, "preflight", mg_cutover__preflight, NULL,
     "lag under --max-lag, no failed collection, a recent clean validation, the privilege"},
    {S_FREEZE, "freeze", mg_cutover__freeze, mg_cutover__unfreeze,
     "block the source's writes (setUserWriteBlockMode, a hook, or none)"},
    {S_FENCE, "fence", mg_cutover__fence, NULL,
     "record T, the operationTime of the freeze (never earlier than a resumed fence)"},
    {S_DRAIN, "drain", mg_cutover__drain, NULL,
     "apply the change stream until the committed checkpoint is at or past T"},
    {S_VERIFY, "verify", mg_cutover__verify, NULL,
     "validate in-process what changed (or everything, or counts)"},
    {S_FLIP, "flip", mg_cutover__flip, NULL, "hook, etcd key, endpoint file: once"},
    {S_DONE, "done", NULL, NULL, "record the outcome"},
};

const cutover_step_t *
mg_cutover__protocol(void)
{
    return protocol;
}

const char *
mg_cutover_verify_name(mg_cutover_verify_t verify)
{
    static const char *const names[] = {"changed", "full", "counts", "none"};

    return (unsigned)verify < 4 ? names[verify] : "?";
}

bool
mg_cutover_freeze_check(const char *freeze, mg_error_t *error)
{
    freeze_kind_t kind;
    const char *cmd;

    return mg_cutover__parse_freeze(freeze, &kind, &cmd, error);
}

/* step_index returns the step named name, or -1. */
static int
step_index(const char *name)
{
    for (int k = 0; k < N_STEPS; k++)
        if (strcmp(protocol[k].name, name) == 0)
            return k;
    return -1;
}

/* step_begin records step as started (persisted before it runs) and logs it. */
static bool
step_begin(cutover_t *c, const cutover_step_t *step, mg_error_t *error)
{
    c->step_started = mg_now_s();
    MG_LOG_EVENT(MG_LOG_NOTICE, "cutover", "cutover.step",
                 MG_LOG_FIELDS(MG_LOG_STR("step", step->name), MG_LOG_STR("status", "started")),
                 "cutover: %s", step->name);
    return c->s->dry_run || c->io->step_begin(c, step->name, error);
}

/* step_end records how long step took, in the row and as an event. */
static bool
step_end(cutover_t *c, const cutover_step_t *step, mg_error_t *error)
{
    double s = mg_now_s() - c->step_started;

    MG_LOG_EVENT(MG_LOG_NOTICE, "cutover", "cutover.step",
                 MG_LOG_FIELDS(MG_LOG_STR("step", step->name), MG_LOG_STR("status", "done"),
                               MG_LOG_DOUBLE("seconds", s)),
                 "cutover: %s done in %.3f s", step->name, s);
    return c->s->dry_run || c->io->step_end(c, step->name, s, error);
}

/*
 * mark_aborted records the abort and its reason (best effort: the error is
 * logged). The target may be what failed (a restart, a failover): it is
 * reconnected for up to 30 s so the abort and its reason are recorded.
 */
static void
mark_aborted(cutover_t *c, const char *reason)
{
    PGconn *pg = mg_state_conn(c->st);
    mg_error_t e;
    bool ok;

    MG_LOG_EVENT(MG_LOG_ERROR, "cutover", "cutover.step",
                 MG_LOG_FIELDS(MG_LOG_STR("step", "aborted"), MG_LOG_STR("reason", reason)),
                 "cutover aborted: %s", reason);
    mg_error_clear(&e);
    if (mg_state_cutover_aborted(c->st, reason, &e))
        return;
    if (!mg_pg_lost(pg, &e)) {
        mg_log_error(MG_LOG_ERROR, "cutover", &e); /* a statement error: give up */
        return;
    }
    ok = mg_pg_reconnect(&pg, c->s->target, NULL, "cutover", e.message, 30, NULL, 0, &e);
    mg_state_set_conn(c->st, pg);
    if (!ok || !mg_state_cutover_aborted(c->st, reason, &e))
        MG_LOG(MG_LOG_ERROR, "cutover",
               "could not record the abort on the target (%s); the source is unfrozen, run "
               "migrate cutover --abort once the target is back",
               e.message);
}

void
mg_cutover__print_report(cutover_t *c, const char *what, const mg_state_cutover_report_t *r)
{
    FILE *out = c->s->out;
    char *shown;

    if (c->s->json && r->exists) {
        shown = mg_redact_dup(r->json); /* the endpoint's password */
        fprintf(out, "%s\n", shown != NULL ? shown : "{}");
        free(shown);
    } else if (r->exists) {
        fprintf(out, "%s %s\n", what, r->outcome);
        for (size_t k = 0; k < r->nsteps; k++)
            fprintf(out, "  %-10s %9.3f s\n", r->steps[k].name, r->steps[k].seconds);
        if (r->has_unavailable)
            fprintf(out, "write-unavailability window (freeze -> flip): %.3f s\n",
                    r->unavailable_s);
        if (r->reason != NULL && *r->reason)
            fprintf(out, "reason: %s\n", r->reason);
        if (strcmp(r->outcome, "done") == 0) {
            /* the flip got the endpoint with its password; the terminal does not */
            shown = mg_redact_dup(r->endpoint != NULL ? r->endpoint : "");
            fprintf(out, "endpoint: %s\n", shown != NULL ? shown : "(out of memory)");
            free(shown);
        }
    }
}

/* print_report prints the cutover row: JSON (--json) or text, the endpoint redacted. */
static void
print_report(cutover_t *c)
{
    mg_state_cutover_report_t r;
    mg_error_t e;

    if (c->s->out == NULL || !mg_state_cutover_report(c->st, &r, &e)) {
        mg_log_error(MG_LOG_WARNING, "cutover", c->s->out != NULL ? &e : NULL);
        return;
    }
    mg_cutover__print_report(c, "cutover", &r);
    mg_state_cutover_report_cleanup(&r);
}

/*
 * fail ends a cutover that failed after step `last` may have taken effect:
 * with nothing to undo (nothing frozen yet) the error stands as it is;
 * otherwise the undo of every step up to `last` runs, newest first, the
 * abort is recorded and reported, and the result is MG_EXIT_ABORTED with
 * error "aborted: <why>".
 */
static int
fail(cutover_t *c, const cutover_step_t *table, int last, mg_error_t *error)
{
    char reason[MG_ERROR_MESSAGE_SIZE];
    bool undone = false;
    mg_error_t e;

    if (c->lost) {
        /* another run owns the cutover now: its freeze, its abort, its flip */
        mg_error_prefix(error, "stopped without undoing anything");
        return MG_EXIT_STATE;
    }
    for (int k = last; k >= 0; k--)
        undone = undone || table[k].undo != NULL;
    if (!undone)
        return mg_exit_code_for_error(error);
    /* the reason is recorded (an event, the row) and is the final error: not logged apart */
    snprintf(reason, sizeof(reason), "%s", error->message);
    for (int k = last; k >= 0; k--) {
        if (table[k].undo == NULL)
            continue;
        mg_error_clear(&e);
        if (!table[k].undo(c, &e)) {
            mg_log_error(MG_LOG_ERROR, "cutover", &e);
            snprintf(reason, sizeof(reason),
                     "%.400s; unfreezing failed too: run migrate %s --abort", error->message,
                     c->command != NULL ? c->command : "cutover");
        }
    }
    c->io->aborted(c, reason);
    c->io->report(c);
    mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC, "aborted: %s", reason);
    return MG_EXIT_ABORTED;
}

/* before_flip fails when a stop was requested or, for the flip, the deadline passed. */
static bool
before_flip(cutover_t *c, int step, mg_error_t *error)
{
    if (step < S_DRAIN || step > S_FLIP)
        return true;
    if (c->s->stop != NULL && atomic_load(c->s->stop) > 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "interrupted by a signal before the flip");
    if (step == S_FLIP && mg_now_s() > c->deadline)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "timed out before the flip (--timeout)");
    return true;
}

/* stopped_before_freeze ends a cutover asked to stop before anything was frozen. */
static int
stopped_before_freeze(cutover_t *c, mg_error_t *error)
{
    mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                 "interrupted by a signal before the freeze: nothing was frozen");
    if (!c->s->dry_run)
        c->io->aborted(c, error->message);
    return MG_EXIT_INTERRUPTED;
}

/* refused records the preflight's refusal (unless a dry run); exit code state. */
static int
refused(cutover_t *c, mg_error_t *error)
{
    if (!c->s->dry_run)
        c->io->aborted(c, error->message + strlen("refused: "));
    return MG_EXIT_STATE;
}

/*
 * run_steps runs the protocol from step `from`: for each step, the stop
 * and deadline check, begin (persisted), its function, end (timed). `last`
 * is the latest step that may have taken effect (a resumed cutover may be
 * frozen already). Before the flip, a failure is undone (fail); once part
 * of the flip happened, a re-run finishes it.
 */
int
mg_cutover__run_steps(cutover_t *c, const cutover_step_t *table, int from, mg_error_t *error)
{
    /* a resumed cutover may be frozen already; from the flip on nothing may be undone */
    int last = from >= S_FLIP ? -1 : c->resumed ? S_FREEZE : from - 1;

    for (int k = from; k < N_STEPS; k++) {
        if (k == S_DRAIN || (k == from && from > S_DRAIN))
            c->deadline = mg_now_s() + (double)c->s->timeout_ms / 1000.0;
        if (k == S_FREEZE && last < S_FREEZE && c->s->stop != NULL && atomic_load(c->s->stop) > 0)
            return stopped_before_freeze(c, error);
        if (!before_flip(c, k, error) || !step_begin(c, &table[k], error))
            return k <= S_FLIP ? fail(c, table, last, error) : (int)mg_exit_code_for_error(error);
        if (k > last && k < S_FLIP)
            last = k;
        if (k == S_DONE && !c->io->done(c, error))
            return mg_exit_code_for_error(error);
        if (table[k].run != NULL && !table[k].run(c, error)) {
            if (c->refused)
                return refused(c, error);
            if (c->flip_started) {
                mg_error_prefix(error, "the flip is partly done; run migrate %s again to finish it",
                                c->command != NULL ? c->command : "cutover");
                return mg_exit_code_for_error(error);
            }
            return fail(c, table, last, error);
        }
        if (!step_end(c, &table[k], error))
            return k < S_FLIP ? fail(c, table, last, error) : (int)mg_exit_code_for_error(error);
        if (c->s->dry_run)
            return MG_EXIT_OK;
    }
    c->io->report(c);
    return MG_EXIT_OK;
}

/* ---- the state schema as the runner's record ---- */

static bool
state_step_begin(cutover_t *c, const char *step, mg_error_t *error)
{
    return mg_state_cutover_step(c->st, step, error);
}

static bool
state_step_end(cutover_t *c, const char *step, double seconds, mg_error_t *error)
{
    return mg_state_cutover_step_done(c->st, step, seconds, error);
}

static bool
state_done(cutover_t *c, mg_error_t *error)
{
    return mg_state_cutover_done(c->st, error);
}

static const cutover_io_t state_io = {
    .step_begin = state_step_begin,
    .step_end = state_step_end,
    .done = state_done,
    .aborted = mark_aborted,
    .report = print_report,
};

/* do_abort runs `--abort`: unfreeze and mark aborted unless the flip happened. */
static int
do_abort(cutover_t *c, mg_error_t *error)
{
    mg_state_cutover_t row;

    if (!mg_state_cutover_get(c->st, &row, error))
        return mg_exit_code_for_error(error);
    if (row.exists && (strcmp(row.outcome, "done") == 0 || step_index(row.step) >= S_FLIP)) {
        mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                     "the endpoint was already flipped (step %s): nothing to abort", row.step);
        return MG_EXIT_STATE;
    }
    if (row.exists && !mg_cutover__parse_freeze(row.freeze_mode, &c->freeze, &c->freeze_cmd, error))
        return MG_EXIT_STATE;
    if (!mg_cutover__unfreeze(c, error))
        return mg_exit_code_for_error(error);
    if (row.exists && strcmp(row.outcome, "running") == 0)
        c->io->aborted(c, "aborted by migrate cutover --abort");
    fprintf(c->s->out, "source unfrozen%s\n",
            row.exists && strcmp(row.outcome, "running") == 0 ? "; cutover marked aborted" : "");
    return MG_EXIT_OK;
}

/*
 * resume_point decides where to start: a fresh attempt (recorded unless a
 * dry run) at preflight, or a crashed one at its step with the freeze mode
 * and fence it started with (freeze again, idempotent, and take a new
 * fence at or past the old). *from is -1 when there is nothing to run (the
 * cutover is done). Returns false with error set on failure.
 */
static bool
resume_point(cutover_t *c, int *from, mg_error_t *error)
{
    const mg_cutover_settings_t *o = c->s;
    mg_state_cutover_t row;

    *from = -1;
    if (!mg_state_cutover_get(c->st, &row, error))
        return false;
    if (row.exists && strcmp(row.outcome, "done") == 0) {
        fprintf(o->out, "the cutover is already done; the endpoint was flipped once and is not "
                        "flipped again\n");
        print_report(c);
        return true;
    }
    *from = row.exists ? step_index(row.step) : S_PREFLIGHT;
    if (o->dry_run || !row.exists || strcmp(row.outcome, "running") != 0 || *from <= S_PREFLIGHT) {
        *from = S_PREFLIGHT;
        return o->dry_run ||
               mg_state_cutover_start(c->st, o->freeze, mg_cutover_verify_name(o->verify),
                                      c->endpoint_shown, c->endpoint_secret, error);
    }
    if (*from < 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "unknown cutover step \"%s\"", row.step);
    if (strcmp(row.endpoint, c->endpoint_shown) != 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                            "refused: the cutover being resumed flips to the endpoint \"%s\" "
                            "(its password came from %s), this run to \"%s\": run it with the "
                            "same --endpoint (or --target), or migrate cutover --abort",
                            row.endpoint, *row.endpoint_secret ? row.endpoint_secret : "nowhere",
                            c->endpoint_shown);
    if (!mg_cutover__parse_freeze(row.freeze_mode, &c->freeze, &c->freeze_cmd, error))
        return false;
    if (row.has_fence) {
        c->fence_t = row.fence_t;
        c->fence_i = row.fence_i;
    }
    if (*from < S_FLIP)
        *from = S_FREEZE;
    c->resumed = true;
    MG_LOG_EVENT(
        MG_LOG_NOTICE, "cutover", "cutover.step",
        MG_LOG_FIELDS(MG_LOG_STR("step", "resume"), MG_LOG_STR("from", protocol[*from].name)),
        "resuming the cutover at %s", protocol[*from].name);
    return mg_state_cutover_resumed(c->st, error);
}

/*
 * endpoint_record fills what the state records of the endpoint: the
 * endpoint without its password (libpq's parser; a string it cannot parse
 * is recorded redacted) and where the password came from.
 */
static bool
endpoint_record(cutover_t *c, mg_error_t *error)
{
    bool had = false;

    c->endpoint_shown = mg_pg_conninfo_strip_password(c->endpoint, &had);
    if (c->endpoint_shown == NULL)
        c->endpoint_shown = mg_redact_dup(c->endpoint);
    if (c->endpoint_shown == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    c->endpoint_secret = had ? c->s->endpoint_secret : NULL;
    return true;
}

/* run_owned runs the cutover (or --abort) once this run owns it. */
static int
run_owned(cutover_t *c, mg_error_t *error)
{
    const mg_cutover_settings_t *s = c->s;
    int rc, from;

    if (s->abort_cutover)
        return do_abort(c, error);
    if (!resume_point(c, &from, error))
        return mg_exit_code_for_error(error);
    if (from < 0)
        return MG_EXIT_OK;
    rc = mg_cutover__run_steps(c, protocol, from, error);
    if (rc == MG_EXIT_OK && s->dry_run)
        fprintf(s->out, "preflight passed (lag %.1f s); a cutover would freeze with %s\n", c->lag_s,
                s->freeze);
    return rc;
}

int
mg_cutover_run(const mg_cutover_settings_t *s, mg_error_t *error)
{
    cutover_t c;
    int rc;

    memset(&c, 0, sizeof(c));
    c.s = s;
    c.io = &state_io;
    c.st = s->state;
    c.endpoint = s->endpoint != NULL ? s->endpoint : s->target;
    if (!mg_cutover__parse_freeze(s->freeze, &c.freeze, &c.freeze_cmd, error))
        return MG_EXIT_USAGE;
    if (!endpoint_record(&c, error))
        return mg_exit_code_for_error(error);
    /* one coordinator at a time: a lease in the state schema, durable across failovers (a
     * dry run only reads, and takes nothing) */
    if (!s->dry_run && !mg_cutover__own(&c, error))
        rc = c.refused ? MG_EXIT_STATE : (int)mg_exit_code_for_error(error);
    else
        rc = run_owned(&c, error);
    mg_cutover__disown(&c);
    free(c.endpoint_shown);
    return rc;
}
