/*
 * state/src/state_cutover.c - the state of the cutover: the one cutover
 * row (step, outcome, freeze mode, fence, timings) and its events, who owns
 * the cutover (an owner and a lease in `cutover_owner`, taken and renewed by
 * compare-and-set), and the fence the change-stream follower reads in every
 * batch.
 *
 * Every write of the cutover row is guarded by the owner's token: it
 * changes the row only while this handle's token is the one in
 * `cutover_owner`, and fails with MG_STATE_ERR_BUSY otherwise, so a
 * cutover that lost its ownership (taken over after its lease lapsed)
 * cannot record anything more.
 */
#include "state_internal.h"

#include <stdlib.h>
#include <string.h>

/* The guard every write of the cutover row carries: $N is the owner's token. */
#define OWNED(n) "EXISTS (SELECT 1 FROM @.cutover_owner o WHERE o.id = 1 AND o.token = $" n ")"

/*
 * owned_write runs tmpl whose last parameter ($n) is the owner's token
 * (appended here) and fails with MG_STATE_ERR_BUSY when it changed no row:
 * this handle does not own the cutover (or the row is missing).
 */
static bool
owned_write(mg_state_t *st, const char *tmpl, int n, const char *const *values, mg_error_t *error)
{
    const char *p[8];
    PGresult *res;
    bool changed;

    for (int k = 0; k < n - 1 && k < 7; k++)
        p[k] = values[k];
    p[n - 1] = st->cutover_token;
    res = mg_state__query(st, tmpl, n, p, error);
    if (res == NULL)
        return false;
    changed = strcmp(PQcmdTuples(res), "0") != 0 && *PQcmdTuples(res) != '\0';
    PQclear(res);
    if (!changed)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                            "this migrate no longer owns the cutover of state schema \"%s\" "
                            "(another migrate cutover took it over): it records nothing more",
                            st->name);
    return true;
}

bool
mg_state_cutover_get(mg_state_t *st, mg_state_cutover_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(st,
                                    "SELECT step, outcome, freeze_mode, fence_ts, fence_inc, "
                                    "coalesce(endpoint, ''), coalesce(endpoint_secret, '') FROM "
                                    "@.cutover WHERE id = 1",
                                    0, NULL, error);

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
        mg_state__copy(res, 0, 5, out->endpoint, sizeof(out->endpoint));
        mg_state__copy(res, 0, 6, out->endpoint_secret, sizeof(out->endpoint_secret));
    }
    PQclear(res);
    return true;
}

bool
mg_state_cutover_start(mg_state_t *st, const char *freeze_mode, const char *verify_mode,
                       const char *endpoint, const char *endpoint_secret, mg_error_t *error)
{
    const char *p[4] = {freeze_mode, verify_mode, endpoint, endpoint_secret};

    return owned_write(
        st,
        "INSERT INTO @.cutover AS c (id, step, outcome, freeze_mode, verify_mode, endpoint, "
        "endpoint_secret) SELECT 1, 'preflight', 'running', $1, $2, $3, $4 WHERE " OWNED(
            "5") " ON CONFLICT (id) DO UPDATE SET attempt = c.attempt + 1, step = 'preflight', "
                 "outcome = "
                 "'running', reason = NULL, freeze_mode = $1, verify_mode = $2, endpoint = $3, "
                 "endpoint_secret = $4, fence_ts = NULL, fence_inc = NULL, started_at = now(), "
                 "frozen_at = "
                 "NULL, flipped_at = NULL, finished_at = NULL, unavailable_s = NULL, steps = '{}', "
                 "updated_at = now()",
        5, p, error);
}

bool
mg_state_cutover_step(mg_state_t *st, const char *step, mg_error_t *error)
{
    const char *p[1] = {step};

    return owned_write(
        st, "UPDATE @.cutover SET step = $1, updated_at = now() WHERE id = 1 AND " OWNED("2"), 2, p,
        error);
}

bool
mg_state_cutover_step_done(mg_state_t *st, const char *step, double seconds, mg_error_t *error)
{
    char secs[32];
    const char *p[2] = {step, secs};

    snprintf(secs, sizeof(secs), "%.6f", seconds);
    return owned_write(
        st,
        "WITH u AS (UPDATE @.cutover SET steps = steps || jsonb_build_object($1::text, "
        "jsonb_build_object('seconds', $2::float8, 'finished_at', now())), updated_at = now() "
        "WHERE id = 1 AND " OWNED(
            "3") " RETURNING attempt) INSERT INTO @.events (kind, data) "
                 "SELECT 'cutover.step', jsonb_build_object('step', "
                 "$1::text, 'seconds', $2::float8, 'attempt', attempt) FROM u",
        3, p, error);
}

bool
mg_state_cutover_resumed(mg_state_t *st, mg_error_t *error)
{
    return owned_write(st,
                       "UPDATE @.cutover SET steps = steps || jsonb_build_object('resume', "
                       "jsonb_build_object('at', now())) WHERE id = 1 AND " OWNED("1"),
                       1, NULL, error);
}

bool
mg_state_cutover_frozen(mg_state_t *st, mg_error_t *error)
{
    return owned_write(st,
                       "UPDATE @.cutover SET frozen_at = coalesce(frozen_at, now()) WHERE id = 1 "
                       "AND " OWNED("1"),
                       1, NULL, error);
}

bool
mg_state_cutover_fence(mg_state_t *st, uint32_t t, uint32_t i, mg_error_t *error)
{
    char ts[32], inc[32];
    const char *p[2] = {mg_state__u32(ts, t), mg_state__u32(inc, i)};

    return owned_write(
        st, "UPDATE @.cutover SET fence_ts = $1, fence_inc = $2 WHERE id = 1 AND " OWNED("3"), 3, p,
        error);
}

bool
mg_state_cutover_flipped(mg_state_t *st, mg_error_t *error)
{
    return owned_write(st,
                       "UPDATE @.cutover SET flipped_at = now(), unavailable_s = extract(epoch "
                       "FROM now() - frozen_at) WHERE id = 1 AND " OWNED("1"),
                       1, NULL, error);
}

bool
mg_state_cutover_done(mg_state_t *st, mg_error_t *error)
{
    return owned_write(st,
                       "UPDATE @.cutover SET outcome = 'done', finished_at = now(), updated_at "
                       "= now() WHERE id = 1 AND " OWNED("1"),
                       1, NULL, error);
}

bool
mg_state_cutover_aborted(mg_state_t *st, const char *reason, mg_error_t *error)
{
    const char *p[1] = {reason};

    return owned_write(
        st,
        "WITH u AS (UPDATE @.cutover SET outcome = 'aborted', reason = $1, finished_at = now(), "
        "updated_at = now() WHERE id = 1 AND " OWNED("2") " RETURNING attempt, step) INSERT INTO "
                                                          "@.events (kind, data) SELECT "
                                                          "'cutover.step', jsonb_build_object("
                                                          "'step', 'aborted', 'at_step', step, "
                                                          "'reason', $1::text, 'attempt', "
                                                          "attempt) FROM u",
        2, p, error);
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

/* ---- who owns the cutover ---- */

bool
mg_state_cutover_owner_get(mg_state_t *st, mg_state_cutover_owner_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st,
        "SELECT token IS NOT NULL, coalesce(owner, ''), coalesce(token, ''), coalesce(renewal, "
        "''), ttl_ms, coalesce(to_char(renewed_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), ''), takeovers FROM @.cutover_owner WHERE id = 1",
        0, NULL, error);

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1) {
        out->held = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        mg_state__copy(res, 0, 1, out->owner, sizeof(out->owner));
        mg_state__copy(res, 0, 2, out->token, sizeof(out->token));
        mg_state__copy(res, 0, 3, out->renewal, sizeof(out->renewal));
        out->ttl_ms = mg_state__int64(res, 0, 4);
        mg_state__copy(res, 0, 5, out->renewed_at, sizeof(out->renewed_at));
        out->takeovers = (int)mg_state__int64(res, 0, 6);
    }
    PQclear(res);
    return true;
}

bool
mg_state_cutover_owner_take(mg_state_t *st, const mg_state_cutover_claim_t *claim, bool *taken,
                            mg_error_t *error)
{
    char ttl[32];
    const char *p[6] = {claim->owner,        claim->token,
                        claim->renewal,      mg_state__i64(ttl, claim->ttl_ms),
                        claim->expect_token, claim->expect_renewal};
    PGresult *res = mg_state__query(
        st,
        "INSERT INTO @.cutover_owner AS o (id, owner, token, renewal, ttl_ms, taken_at, "
        "renewed_at) VALUES (1, $1, $2, $3, $4, now(), now()) ON CONFLICT (id) DO UPDATE SET "
        "owner = $1, token = $2, renewal = $3, ttl_ms = $4, taken_at = now(), renewed_at = now(), "
        "takeovers = o.takeovers + CASE WHEN o.token IS NULL THEN 0 ELSE 1 END WHERE o.token IS "
        "NOT DISTINCT FROM $5 AND (o.token IS NULL OR o.renewal IS NOT DISTINCT FROM $6) "
        "RETURNING 1",
        6, p, error);
    char *copy;

    if (res == NULL)
        return false;
    *taken = PQntuples(res) == 1;
    PQclear(res);
    if (!*taken)
        return true;
    if ((copy = strdup(claim->token)) == NULL)
        return mg_state__oom(error);
    free(st->cutover_token);
    st->cutover_token = copy;
    return true;
}

bool
mg_state_cutover_owner_renew(mg_state_t *st, const char *token, const char *renewal, bool *held,
                             mg_error_t *error)
{
    const char *p[2] = {token, renewal};
    PGresult *res = mg_state__query(st,
                                    "UPDATE @.cutover_owner SET renewal = $2, renewed_at = now() "
                                    "WHERE id = 1 AND token = $1 RETURNING 1",
                                    2, p, error);

    if (res == NULL)
        return false;
    *held = PQntuples(res) == 1;
    PQclear(res);
    return true;
}

bool
mg_state_cutover_owner_release(mg_state_t *st, mg_error_t *error)
{
    const char *p[1] = {st->cutover_token};
    bool ok;

    if (st->cutover_token == NULL)
        return true;
    ok = mg_state__exec(st,
                        "UPDATE @.cutover_owner SET owner = NULL, token = NULL, renewal = NULL "
                        "WHERE id = 1 AND token = $1",
                        1, p, error);
    free(st->cutover_token);
    st->cutover_token = NULL;
    return ok;
}

/* ---- the follower's fence ---- */

bool
mg_state_cutover_fence_get(mg_state_t *st, mg_state_cutover_fence_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(st,
                                    "SELECT step, outcome, fence_ts, fence_inc FROM @.cutover "
                                    "WHERE id = 1 FOR SHARE",
                                    0, NULL, error);

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1) {
        mg_state__copy(res, 0, 0, out->step, sizeof(out->step));
        mg_state__copy(res, 0, 1, out->outcome, sizeof(out->outcome));
        out->has_fence = !PQgetisnull(res, 0, 2);
        out->t = (uint32_t)mg_state__int64(res, 0, 2);
        out->i = (uint32_t)mg_state__int64(res, 0, 3);
        out->fenced = strcmp(out->outcome, "done") == 0 ||
                      (strcmp(out->outcome, "running") == 0 &&
                       (strcmp(out->step, "flip") == 0 || strcmp(out->step, "done") == 0));
    }
    PQclear(res);
    return true;
}
