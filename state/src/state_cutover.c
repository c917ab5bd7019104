/*
 * state/src/state_cutover.c - the state of the cutover: the one cutover
 * row (step, outcome, freeze mode, fence, timings), its events, and the
 * advisory lock that lets one coordinator run at a time.
 */
#include "state_internal.h"

#include <stdlib.h>
#include <string.h>

bool
mg_state_cutover_get(mg_state_t *st, mg_state_cutover_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st, "SELECT step, outcome, freeze_mode, fence_ts, fence_inc FROM @.cutover WHERE id = 1", 0,
        NULL, error);

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1) {
        out->exists = true;
        mg_state__copy(res, 0, 0, out->step, sizeof(out->step));
        mg_state__copy(res, 0, 1, out->outcome, sizeof(out->outcome));
        mg_state__copy(res, 0, 2, out->freeze_mode, sizeof(out->freeze_mode));
        out->has_fence = !PQgetisnull(res, 0, 3);
        out->fence_t = (uint32_t)mg_state__int64(res, 0, 3);
        out->fence_i = (uint32_t)mg_state__int64(res, 0, 4);
    }
    PQclear(res);
    return true;
}

bool
mg_state_cutover_lock(mg_state_t *st, bool *locked, mg_error_t *error)
{
    const char *p[1] = {st->name};
    PGresult *res =
        mg_pg_query(st->conn, "SELECT pg_try_advisory_lock(7043, hashtext($1))", 1, p, error);

    if (res == NULL)
        return false;
    *locked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return true;
}

bool
mg_state_cutover_start(mg_state_t *st, const char *freeze_mode, const char *verify_mode,
                       const char *endpoint, mg_error_t *error)
{
    const char *p[3] = {freeze_mode, verify_mode, endpoint};

    return mg_state__exec(
        st,
        "INSERT INTO @.cutover AS c (id, step, outcome, freeze_mode, verify_mode, endpoint) "
        "VALUES (1, 'preflight', 'running', $1, $2, $3) ON CONFLICT (id) DO UPDATE SET attempt = "
        "c.attempt + 1, step = 'preflight', outcome = 'running', reason = NULL, freeze_mode = $1, "
        "verify_mode = $2, endpoint = $3, fence_ts = NULL, fence_inc = NULL, started_at = now(), "
        "frozen_at = NULL, flipped_at = NULL, finished_at = NULL, unavailable_s = NULL, steps = "
        "'{}', updated_at = now()",
        3, p, error);
}

bool
mg_state_cutover_step(mg_state_t *st, const char *step, mg_error_t *error)
{
    const char *p[1] = {step};

    return mg_state__exec(st, "UPDATE @.cutover SET step = $1, updated_at = now() WHERE id = 1", 1,
                          p, error);
}

bool
mg_state_cutover_step_done(mg_state_t *st, const char *step, double seconds, mg_error_t *error)
{
    char secs[32];
    const char *p[2] = {step, secs};

    snprintf(secs, sizeof(secs), "%.6f", seconds);
    return mg_state__exec(
        st,
        "WITH u AS (UPDATE @.cutover SET steps = steps || jsonb_build_object($1::text, "
        "jsonb_build_object('seconds', $2::float8, 'finished_at', now())), updated_at = now() "
        "WHERE id = 1 RETURNING attempt) INSERT INTO @.events (kind, data) SELECT 'cutover.step', "
        "jsonb_build_object('step', $1::text, 'seconds', $2::float8, 'attempt', attempt) FROM u",
        2, p, error);
}

bool
mg_state_cutover_resumed(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st,
                          "UPDATE @.cutover SET steps = steps || jsonb_build_object('resume', "
                          "jsonb_build_object('at', now())) WHERE id = 1",
                          0, NULL, error);
}

bool
mg_state_cutover_frozen(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(
        st, "UPDATE @.cutover SET frozen_at = coalesce(frozen_at, now()) WHERE id = 1", 0, NULL,
        error);
}

bool
mg_state_cutover_fence(mg_state_t *st, uint32_t t, uint32_t i, mg_error_t *error)
{
    char ts[32], inc[32];
    const char *p[2] = {mg_state__u32(ts, t), mg_state__u32(inc, i)};

    return mg_state__exec(st, "UPDATE @.cutover SET fence_ts = $1, fence_inc = $2 WHERE id = 1", 2,
                          p, error);
}

bool
mg_state_cutover_flipped(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st,
                          "UPDATE @.cutover SET flipped_at = now(), unavailable_s = extract(epoch "
                          "FROM now() - frozen_at) WHERE id = 1",
                          0, NULL, error);
}

bool
mg_state_cutover_done(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st,
                          "UPDATE @.cutover SET outcome = 'done', finished_at = now(), updated_at "
                          "= now() WHERE id = 1",
                          0, NULL, error);
}

bool
mg_state_cutover_aborted(mg_state_t *st, const char *reason, mg_error_t *error)
{
    const char *p[1] = {reason};

    return mg_state__exec(
        st,
        "WITH u AS (UPDATE @.cutover SET outcome = 'aborted', reason = $1, finished_at = now(), "
        "updated_at = now() WHERE id = 1 RETURNING attempt, step) INSERT INTO @.events (kind, "
        "data) SELECT 'cutover.step', jsonb_build_object('step', 'aborted', 'at_step', step, "
        "'reason', $1::text, 'attempt', attempt) FROM u",
        1, p, error);
}

void
mg_state_cutover_report_cleanup(mg_state_cutover_report_t *r)
{
    if (r == NULL)
        return;
    free(r->reason);
    free(r->endpoint);
    free(r->json);
    memset(r, 0, sizeof(*r));
}

bool
mg_state_cutover_report(mg_state_t *st, mg_state_cutover_report_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st,
        "SELECT outcome, reason, endpoint, unavailable_s, s.key, (s.value->>'seconds')::float8, "
        "jsonb_build_object('outcome', outcome, 'step', step, 'reason', reason, 'attempt', "
        "attempt, 'freeze', freeze_mode, 'verify', verify_mode, 'fence', CASE WHEN fence_ts IS "
        "NOT NULL THEN jsonb_build_object('t', fence_ts, 'i', fence_inc) END, 'endpoint', "
        "endpoint, 'started_at', started_at, 'frozen_at', frozen_at, 'flipped_at', flipped_at, "
        "'finished_at', finished_at, 'unavailable_s', unavailable_s, 'steps', steps)::text FROM "
        "@.cutover LEFT JOIN LATERAL jsonb_each(steps) s ON true WHERE id = 1 ORDER BY "
        "s.value->>'finished_at'",
        0, NULL, error);
    bool failed = false;

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    if (PQntuples(res) > 0) {
        out->exists = true;
        mg_state__copy(res, 0, 0, out->outcome, sizeof(out->outcome));
        out->reason = mg_state__dup(PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1), &failed);
        out->endpoint =
            mg_state__dup(PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2), &failed);
        out->has_unavailable = !PQgetisnull(res, 0, 3);
        out->unavailable_s = out->has_unavailable ? strtod(PQgetvalue(res, 0, 3), NULL) : 0;
        out->json = mg_state__dup(PQgetvalue(res, 0, 6), &failed);
        for (int r = 0; r < PQntuples(res) && out->nsteps < 16; r++) {
            if (PQgetisnull(res, r, 4))
                continue;
            mg_state__copy(res, r, 4, out->steps[out->nsteps].name,
                           sizeof(out->steps[out->nsteps].name));
            out->steps[out->nsteps++].seconds = strtod(PQgetvalue(res, r, 5), NULL);
        }
    }
    PQclear(res);
    if (failed) {
        mg_state_cutover_report_cleanup(out);
        return mg_state__oom(error);
    }
    return true;
}
