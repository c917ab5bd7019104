/*
 * state/src/state_follow.c - the follower's lease and heartbeat: which
 * process applies the change stream (one at a time), whether it is alive,
 * and how far behind the source's latest write it is (docs/cdc.md, "Lag").
 *
 * The row `follower` (one) names the holder (host:pid). A follower holds a
 * session advisory lock on its connection while it runs, so a holder that
 * died (kill -9, lost host) is seen at once: its session, and the lock,
 * are gone. Liveness is never inferred from the checkpoint moving: on an
 * idle source the checkpoint may stand still for the source's no-op
 * interval while the follower is busy reading.
 */
#include "state_internal.h"

#include <stdlib.h>
#include <string.h>

/* The lock a follower holds on its connection: (7044, hashtext(schema)); the cutover's is 7043. */
#define FOLLOWER_LOCK "7044, hashtext($1)"

/* DDL of the follower's table (appended to version 1 by mg_state_ddl). */
const char *const mg_state__follow_ddl[] = {
    "CREATE TABLE @.follower (\n"
    "    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),\n"
    "    name text NOT NULL,\n"
    "    host text NOT NULL,\n"
    "    pid int NOT NULL,\n"
    "    started_at timestamptz NOT NULL DEFAULT now(),\n"
    "    beat_at timestamptz NOT NULL DEFAULT now(),\n"
    "    stopped_at timestamptz,\n"
    "    stop_reason text,\n"
    "    lag_s double precision,\n"
    "    source_write_ts bigint,\n"
    "    source_write_inc bigint,\n"
    "    applied_ts bigint,\n"
    "    applied_inc bigint\n"
    ")",
    NULL,
};

/* lock_probe tells whether some session holds the follower lock (*held), without keeping it. */
static bool
lock_probe(mg_state_t *st, bool *held, mg_error_t *error)
{
    const char *p[1] = {st->name};
    PGresult *res =
        mg_pg_query(st->conn, "SELECT pg_try_advisory_lock(" FOLLOWER_LOCK ")", 1, p, error);

    if (res == NULL)
        return false;
    *held = strcmp(PQgetvalue(res, 0, 0), "t") != 0;
    PQclear(res);
    if (*held)
        return true;
    /* ours for a moment: give it back (its own statement: "x AND false" may skip x) */
    res = mg_pg_query(st->conn, "SELECT pg_advisory_unlock(" FOLLOWER_LOCK ")", 1, p, error);
    PQclear(res);
    return res != NULL;
}

/* describe_holder writes "host:pid (beat N s ago)" of the row into holder. */
static bool
describe_holder(mg_state_t *st, char *holder, size_t holdersz, mg_error_t *error)
{
    PGresult *res =
        mg_state__query(st,
                        "SELECT name, round(extract(epoch FROM now() - beat_at)::numeric, "
                        "1) FROM @.follower WHERE id = 1",
                        0, NULL, error);

    if (res == NULL)
        return false;
    if (PQntuples(res) == 1)
        snprintf(holder, holdersz, "%s (last heartbeat %s s ago)", PQgetvalue(res, 0, 0),
                 PQgetvalue(res, 0, 1));
    else
        snprintf(holder, holdersz, "another process");
    PQclear(res);
    return true;
}

bool
mg_state_follower_claim(mg_state_t *st, const char *name, const char *host, int pid, bool *claimed,
                        char *holder, size_t holdersz, mg_error_t *error)
{
    const char *lp[1] = {st->name};
    char pidtext[32];
    const char *p[3] = {name, host, mg_state__i64(pidtext, pid)};
    PGresult *res;

    *claimed = false;
    if (holdersz > 0)
        holder[0] = '\0';
    res = mg_pg_query(st->conn, "SELECT pg_try_advisory_lock(" FOLLOWER_LOCK ")", 1, lp, error);
    if (res == NULL)
        return false;
    *claimed = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!*claimed)
        return describe_holder(st, holder, holdersz, error);
    /* the lock is ours: a previous holder's session is gone (or lost in a failover; it
     * finds its name replaced at its next heartbeat or apply and stops) */
    return mg_state__exec(st,
                          "INSERT INTO @.follower AS f (id, name, host, pid) VALUES (1, $1, $2, "
                          "$3::int) ON CONFLICT (id) DO UPDATE SET name = $1, host = $2, pid = "
                          "$3::int, started_at = now(), beat_at = now(), stopped_at = NULL, "
                          "stop_reason = NULL, lag_s = NULL",
                          3, p, error);
}

bool
mg_state_follower_beat(mg_state_t *st, const char *name, const mg_state_beat_t *b, bool *owner,
                       mg_error_t *error)
{
    char lag[40], wt[32], wi[32], at[32], ai[32];
    const char *p[6] = {name,
                        b->lag_s >= 0 ? lag : NULL,
                        b->has_source_write ? mg_state__u32(wt, b->source_write_t) : NULL,
                        b->has_source_write ? mg_state__u32(wi, b->source_write_i) : NULL,
                        b->has_applied ? mg_state__u32(at, b->applied_t) : NULL,
                        b->has_applied ? mg_state__u32(ai, b->applied_i) : NULL};
    PGresult *res;

    snprintf(lag, sizeof(lag), "%.3f", b->lag_s);
    res = mg_state__query(st,
                          "UPDATE @.follower SET beat_at = now(), lag_s = $2::double precision, "
                          "source_write_ts = coalesce($3::bigint, source_write_ts), "
                          "source_write_inc = coalesce($4::bigint, source_write_inc), applied_ts "
                          "= coalesce($5::bigint, applied_ts), applied_inc = coalesce($6::bigint, "
                          "applied_inc) WHERE id = 1 AND name = $1 AND stopped_at IS NULL "
                          "RETURNING id",
                          6, p, error);
    if (res == NULL)
        return false;
    *owner = PQntuples(res) == 1;
    PQclear(res);
    return true;
}

bool
mg_state_follower_release(mg_state_t *st, const char *name, const char *reason, mg_error_t *error)
{
    const char *p[2] = {name, reason};
    const char *lp[1] = {st->name};
    PGresult *res;

    if (!mg_state__exec(st,
                        "UPDATE @.follower SET stopped_at = now(), stop_reason = $2 WHERE id = 1 "
                        "AND name = $1",
                        2, p, error))
        return false;
    res = mg_pg_query(st->conn, "SELECT pg_advisory_unlock(" FOLLOWER_LOCK ")", 1, lp, error);
    PQclear(res);
    return res != NULL;
}

bool
mg_state_follower_get(mg_state_t *st, int64_t window_ms, mg_state_follower_t *out,
                      mg_error_t *error)
{
    char win[32];
    const char *p[1] = {mg_state__i64(win, window_ms)};
    PGresult *res;
    bool held = false;

    memset(out, 0, sizeof(*out));
    out->lag_s = -1;
    res = mg_state__query(
        st,
        "SELECT name, stopped_at IS NULL, beat_at > now() - $1::bigint * interval '1 ms', "
        "extract(epoch FROM now() - beat_at), lag_s + extract(epoch FROM now() - beat_at), "
        "source_write_ts, source_write_inc, applied_ts, applied_inc, coalesce(stop_reason, ''), "
        "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM @.follower WHERE "
        "id = 1",
        1, p, error);
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1) {
        out->exists = true;
        mg_state__copy(res, 0, 0, out->name, sizeof(out->name));
        out->running = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        out->fresh = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
        out->beat_age_s = strtod(PQgetvalue(res, 0, 3), NULL);
        out->lag_s = PQgetisnull(res, 0, 4) ? -1 : strtod(PQgetvalue(res, 0, 4), NULL);
        out->has_source_write = !PQgetisnull(res, 0, 5);
        out->source_write_t = (uint32_t)mg_state__int64(res, 0, 5);
        out->source_write_i = (uint32_t)mg_state__int64(res, 0, 6);
        out->has_applied = !PQgetisnull(res, 0, 7);
        out->applied_t = (uint32_t)mg_state__int64(res, 0, 7);
        out->applied_i = (uint32_t)mg_state__int64(res, 0, 8);
        mg_state__copy(res, 0, 9, out->stop_reason, sizeof(out->stop_reason));
        mg_state__copy(res, 0, 10, out->started_at, sizeof(out->started_at));
    }
    PQclear(res);
    if (!out->exists || !out->running)
        return true;
    /* a running holder is alive while its session holds the lock; a session lost in a
     * failover is given the window to come back */
    if (!lock_probe(st, &held, error))
        return false;
    out->session = held;
    out->alive = held || out->fresh;
    return true;
}
