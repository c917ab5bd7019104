/*
 * state/src/state_fallback.c - the state of the way back: the reverse
 * capture row (slot, publication, generation, the position the reverse
 * sync reported), the documents the reverse sync changed, the slot as
 * pg_replication_slots sees it, and the fallback row, its grants and its
 * lock (docs/state-schema.md).
 */
#include "state_internal.h"
#include "mg/state_fallback.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Created on first use: additive to layout version 1. */
static const char *const fallback_ddl[] = {
    "CREATE TABLE IF NOT EXISTS @.reverse (\n"
    "    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),\n"
    "    slot_name text NOT NULL,\n"
    "    publication text NOT NULL,\n"
    "    generation int NOT NULL DEFAULT 1,\n"
    "    start_lsn pg_lsn NOT NULL,\n"
    "    timeline bigint,\n"
    "    system_id text,\n"
    "    status text NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'repairing', "
    "'dropped')),\n"
    "    note text,\n"
    "    repairs int NOT NULL DEFAULT 0,\n"
    "    applied_lsn pg_lsn,\n"
    "    applied_at timestamptz,\n"
    "    caught_up_at timestamptz,\n"
    "    applied_txns bigint NOT NULL DEFAULT 0,\n"
    "    applied_changes bigint NOT NULL DEFAULT 0,\n"
    "    events_per_s double precision,\n"
    "    created_at timestamptz NOT NULL DEFAULT now(),\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ")",
    "CREATE TABLE IF NOT EXISTS @.fallback (\n"
    "    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),\n"
    "    attempt int NOT NULL DEFAULT 1,\n"
    "    step text NOT NULL,\n"
    "    outcome text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'done', "
    "'aborted')),\n"
    "    reason text,\n"
    "    freeze_mode text NOT NULL,\n"
    "    freeze_roles text[] NOT NULL DEFAULT '{}',\n"
    "    revoked jsonb,\n"
    "    verify_mode text NOT NULL,\n"
    "    fence_lsn pg_lsn,\n"
    "    fence_generation int,\n"
    "    endpoint text,\n"
    "    started_at timestamptz NOT NULL DEFAULT now(),\n"
    "    frozen_at timestamptz,\n"
    "    source_unfrozen_at timestamptz,\n"
    "    flipped_at timestamptz,\n"
    "    finished_at timestamptz,\n"
    "    unavailable_s double precision,\n"
    "    steps jsonb NOT NULL DEFAULT '{}',\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ")",
    NULL,
};

bool
mg_state_reverse_ensure(mg_state_t *st, mg_error_t *error)
{
    for (int k = 0; fallback_ddl[k] != NULL; k++)
        if (!mg_state__exec(st, fallback_ddl[k], 0, NULL, error))
            return false;
    return true;
}

/* lsn_text writes lsn as PostgreSQL's pg_lsn text into buf (32 bytes) and returns buf. */
static const char *
lsn_text(char *buf, uint64_t lsn)
{
    snprintf(buf, 32, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
    return buf;
}

/* lsn_value reads a pg_lsn column (0 when NULL or not an LSN). */
static uint64_t
lsn_value(const PGresult *res, int r, int c)
{
    const char *s = PQgetvalue(res, r, c);
    unsigned int hi, lo;

    if (PQgetisnull(res, r, c) || sscanf(s, "%X/%X", &hi, &lo) != 2)
        return 0;
    return ((uint64_t)hi << 32) | lo;
}

/* ---- the reverse capture ---- */

bool
mg_state_reverse_get(mg_state_t *st, mg_state_reverse_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st,
        "SELECT slot_name, publication, generation, start_lsn, timeline, system_id, status, "
        "repairs, applied_lsn, extract(epoch FROM now() - applied_at), applied_txns, "
        "applied_changes, events_per_s, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD "
        "HH24:MI:SS'), extract(epoch FROM now() - caught_up_at) FROM @.reverse WHERE id = 1",
        0, NULL, error);

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1) {
        out->exists = true;
        mg_state__copy(res, 0, 0, out->slot, sizeof(out->slot));
        mg_state__copy(res, 0, 1, out->publication, sizeof(out->publication));
        out->generation = (int32_t)mg_state__int64(res, 0, 2);
        out->start_lsn = lsn_value(res, 0, 3);
        out->timeline = (uint32_t)mg_state__int64(res, 0, 4);
        mg_state__copy(res, 0, 5, out->system_id, sizeof(out->system_id));
        mg_state__copy(res, 0, 6, out->status, sizeof(out->status));
        out->repairs = (int32_t)mg_state__int64(res, 0, 7);
        out->has_applied = !PQgetisnull(res, 0, 8);
        out->applied_lsn = lsn_value(res, 0, 8);
        out->applied_age_s = PQgetisnull(res, 0, 9) ? 0 : strtod(PQgetvalue(res, 0, 9), NULL);
        out->applied_txns = mg_state__int64(res, 0, 10);
        out->applied_changes = mg_state__int64(res, 0, 11);
        out->events_per_s = PQgetisnull(res, 0, 12) ? 0 : strtod(PQgetvalue(res, 0, 12), NULL);
        mg_state__copy(res, 0, 13, out->created_at, sizeof(out->created_at));
        out->lag_s = PQgetisnull(res, 0, 14) ? -1 : strtod(PQgetvalue(res, 0, 14), NULL);
    }
    PQclear(res);
    return true;
}

bool
mg_state_reverse_created(mg_state_t *st, const char *slot, const char *publication,
                         uint64_t start_lsn, uint32_t timeline, const char *system_id,
                         int32_t *generation, mg_error_t *error)
{
    char lsn[32], tl[32];
    const char *p[5] = {slot, publication, lsn_text(lsn, start_lsn), mg_state__u32(tl, timeline),
                        system_id};
    PGresult *res = mg_state__query(
        st,
        "INSERT INTO @.reverse AS r (id, slot_name, publication, start_lsn, timeline, system_id) "
        "VALUES (1, $1, $2, $3::pg_lsn, $4::bigint, $5) ON CONFLICT (id) DO UPDATE SET "
        "slot_name = $1, publication = $2, generation = r.generation + 1, start_lsn = "
        "$3::pg_lsn, timeline = $4::bigint, system_id = $5, status = 'ready', note = NULL, "
        "repairs = r.repairs + CASE WHEN r.status = 'repairing' THEN 1 ELSE 0 END, applied_lsn "
        "= NULL, applied_at = NULL, caught_up_at = NULL, created_at = now(), updated_at = now() "
        "RETURNING generation",
        5, p, error);

    if (res == NULL)
        return false;
    if (generation != NULL)
        *generation = (int32_t)mg_state__int64(res, 0, 0);
    PQclear(res);
    return true;
}

bool
mg_state_reverse_set_status(mg_state_t *st, const char *status, const char *note, mg_error_t *error)
{
    const char *p[2] = {status, note};

    return mg_state__exec(
        st, "UPDATE @.reverse SET status = $1, note = $2, updated_at = now() WHERE id = 1", 2, p,
        error);
}

bool
mg_state_reverse_applied(mg_state_t *st, int32_t generation, uint64_t lsn, int64_t txns,
                         int64_t changes, double events_per_s, bool caught_up, mg_error_t *error)
{
    char g[32], l[32], t[32], c[32], r[32];
    const char *p[6] = {mg_state__i64(g, generation),
                        lsn_text(l, lsn),
                        mg_state__i64(t, txns),
                        mg_state__i64(c, changes),
                        r,
                        caught_up ? "t" : "f"};

    snprintf(r, sizeof(r), "%.3f", events_per_s);
    return mg_state__exec(st,
                          "UPDATE @.reverse SET applied_lsn = greatest(applied_lsn, $2::pg_lsn), "
                          "applied_at = now(), applied_txns = $3::bigint, applied_changes = "
                          "$4::bigint, events_per_s = $5::float8, caught_up_at = CASE WHEN "
                          "$6::boolean THEN now() ELSE caught_up_at END WHERE id = 1 AND "
                          "generation = $1::int",
                          6, p, error);
}

bool
mg_state_reverse_forget(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st, "DELETE FROM @.reverse WHERE id = 1", 0, NULL, error);
}

/* ---- the slot in the catalog ---- */

bool
mg_state_slot_get(mg_state_t *st, const char *slot, mg_state_slot_t *out, mg_error_t *error)
{
    const char *p[1] = {slot};
    PGresult *res = mg_pg_query(
        st->conn,
        "SELECT s.slot_name IS NOT NULL, coalesce(s.slot_type = 'logical' AND s.plugin = "
        "'pgoutput', false), s.database, coalesce(s.active, false), s.active_pid, s.restart_lsn, "
        "s.confirmed_flush_lsn, pg_current_wal_lsn(), pg_wal_lsn_diff(pg_current_wal_lsn(), "
        "s.restart_lsn)::bigint, s.wal_status, s.safe_wal_size, (SELECT CASE WHEN setting::bigint "
        "< 0 THEN -1 ELSE setting::bigint * 1024 * 1024 END FROM pg_settings WHERE name = "
        "'max_slot_wal_keep_size'), current_setting('wal_level') FROM (SELECT 1) one LEFT JOIN "
        "pg_replication_slots s ON s.slot_name = $1",
        1, p, error);

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    out->exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    out->logical = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    mg_state__copy(res, 0, 2, out->database, sizeof(out->database));
    out->active = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
    out->active_pid = (int32_t)mg_state__int64(res, 0, 4);
    out->restart_lsn = lsn_value(res, 0, 5);
    out->confirmed_lsn = lsn_value(res, 0, 6);
    out->current_lsn = lsn_value(res, 0, 7);
    out->retained_bytes = mg_state__int64(res, 0, 8);
    mg_state__copy(res, 0, 9, out->wal_status, sizeof(out->wal_status));
    out->has_safe_wal_size = !PQgetisnull(res, 0, 10);
    out->safe_wal_size = mg_state__int64(res, 0, 10);
    out->max_keep_bytes = mg_state__int64(res, 0, 11);
    mg_state__copy(res, 0, 12, out->wal_level, sizeof(out->wal_level));
    PQclear(res);
    return true;
}

/* ---- the fallback row ---- */

bool
mg_state_fallback_get(mg_state_t *st, mg_state_fallback_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(st,
                                    "SELECT step, outcome, freeze_mode, fence_lsn, "
                                    "fence_generation, revoked IS NOT NULL FROM @.fallback WHERE "
                                    "id = 1",
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
        out->fence_lsn = lsn_value(res, 0, 3);
        out->fence_generation = (int32_t)mg_state__int64(res, 0, 4);
        out->revoked_recorded = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
    }
    PQclear(res);
    return true;
}

bool
mg_state_fallback_lock(mg_state_t *st, bool *locked, mg_error_t *error)
{
    const char *p[1] = {st->name};
    PGresult *res =
        mg_pg_query(st->conn, "SELECT pg_try_advisory_lock(7044, hashtext($1))", 1, p, error);

    if (res == NULL)
        return false;
    *locked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return true;
}

bool
mg_state_fallback_start(mg_state_t *st, const char *freeze_mode, const mg_strlist_t *roles,
                        const char *verify_mode, const char *endpoint, mg_error_t *error)
{
    mg_buf_t arr;
    bool ok;

    mg_buf_init(&arr, 1u << 20);
    ok = mg_pg_text_array((const char *const *)roles->items, roles->count, &arr, error);
    if (ok) {
        const char *p[4] = {freeze_mode, arr.data, verify_mode, endpoint};
        ok = mg_state__exec(
            st,
            "INSERT INTO @.fallback AS f (id, step, outcome, freeze_mode, freeze_roles, "
            "verify_mode, endpoint) VALUES (1, 'preflight', 'running', $1, $2::text[], $3, $4) "
            "ON CONFLICT (id) DO UPDATE SET attempt = f.attempt + 1, step = 'preflight', outcome "
            "= 'running', reason = NULL, freeze_mode = $1, freeze_roles = $2::text[], revoked = "
            "NULL, verify_mode = $3, endpoint = $4, fence_lsn = NULL, fence_generation = NULL, "
            "started_at = now(), frozen_at = NULL, source_unfrozen_at = NULL, flipped_at = NULL, "
            "finished_at = NULL, unavailable_s = NULL, steps = '{}', updated_at = now()",
            4, p, error);
    }
    mg_buf_cleanup(&arr);
    return ok;
}

bool
mg_state_fallback_step(mg_state_t *st, const char *step, mg_error_t *error)
{
    const char *p[1] = {step};

    return mg_state__exec(st, "UPDATE @.fallback SET step = $1, updated_at = now() WHERE id = 1", 1,
                          p, error);
}

bool
mg_state_fallback_step_done(mg_state_t *st, const char *step, double seconds, mg_error_t *error)
{
    char secs[32];
    const char *p[2] = {step, secs};

    snprintf(secs, sizeof(secs), "%.6f", seconds);
    return mg_state__exec(
        st,
        "WITH u AS (UPDATE @.fallback SET steps = steps || jsonb_build_object($1::text, "
        "jsonb_build_object('seconds', $2::float8, 'finished_at', now())), updated_at = now() "
        "WHERE id = 1 RETURNING attempt) INSERT INTO @.events (kind, data) SELECT "
        "'fallback.step', jsonb_build_object('step', $1::text, 'seconds', $2::float8, "
        "'attempt', attempt) FROM u",
        2, p, error);
}

bool
mg_state_fallback_resumed(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st,
                          "UPDATE @.fallback SET steps = steps || jsonb_build_object('resume', "
                          "jsonb_build_object('at', now())) WHERE id = 1",
                          0, NULL, error);
}

bool
mg_state_fallback_frozen(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(
        st, "UPDATE @.fallback SET frozen_at = coalesce(frozen_at, now()) WHERE id = 1", 0, NULL,
        error);
}

bool
mg_state_fallback_fence(mg_state_t *st, int32_t generation, uint64_t *lsn, mg_error_t *error)
{
    char g[32];
    const char *p[1] = {mg_state__i64(g, generation)};
    PGresult *res = NULL;
    bool ok;

    ok = mg_state_begin(st, error) &&
         mg_pg_exec(st->conn, "SET LOCAL synchronous_commit TO on", error) &&
         (res = mg_state__query(st,
                                "UPDATE @.fallback SET fence_lsn = pg_current_wal_lsn(), "
                                "fence_generation = $1::int WHERE id = 1 RETURNING fence_lsn",
                                1, p, error)) != NULL &&
         mg_state_commit(st, error);
    if (ok && PQntuples(res) != 1)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_EMPTY,
                          "could not record the fallback's fence: no fallback row");
    if (ok)
        *lsn = lsn_value(res, 0, 0);
    else
        mg_state_rollback(st);
    PQclear(res);
    return ok;
}

bool
mg_state_fallback_unfrozen_source(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st,
                          "UPDATE @.fallback SET source_unfrozen_at = coalesce(source_unfrozen_at, "
                          "now()) WHERE id = 1",
                          0, NULL, error);
}

bool
mg_state_fallback_flipped(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st,
                          "UPDATE @.fallback SET flipped_at = now(), unavailable_s = extract(epoch "
                          "FROM now() - frozen_at) WHERE id = 1",
                          0, NULL, error);
}

bool
mg_state_fallback_done(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st,
                          "UPDATE @.fallback SET outcome = 'done', finished_at = now(), "
                          "updated_at = now() WHERE id = 1",
                          0, NULL, error);
}

bool
mg_state_fallback_aborted(mg_state_t *st, const char *reason, mg_error_t *error)
{
    const char *p[1] = {reason};

    return mg_state__exec(
        st,
        "WITH u AS (UPDATE @.fallback SET outcome = 'aborted', reason = $1, finished_at = now(), "
        "updated_at = now() WHERE id = 1 RETURNING attempt, step) INSERT INTO @.events (kind, "
        "data) SELECT 'fallback.step', jsonb_build_object('step', 'aborted', 'at_step', step, "
        "'reason', $1::text, 'attempt', attempt) FROM u",
        1, p, error);
}

bool
mg_state_fallback_grants_record(mg_state_t *st, const mg_strlist_t *roles, mg_error_t *error)
{
    mg_buf_t arr;
    bool ok;

    mg_buf_init(&arr, 1u << 20);
    ok = mg_pg_text_array((const char *const *)roles->items, roles->count, &arr, error);
    if (ok) {
        const char *p[1] = {arr.data};
        ok = mg_state__exec(
            st,
            "UPDATE @.fallback SET revoked = (SELECT coalesce(jsonb_agg(jsonb_build_object("
            "'schema', c.schema_name, 'table', c.table_name, 'role', r.rolname, 'privilege', "
            "a.privilege_type, 'grantable', a.is_grantable) ORDER BY c.schema_name, "
            "c.table_name, r.rolname, a.privilege_type), '[]') FROM @.collections c JOIN "
            "pg_namespace n ON n.nspname = c.schema_name JOIN pg_class t ON t.relnamespace = "
            "n.oid AND t.relname = c.table_name CROSS JOIN LATERAL aclexplode(t.relacl) a JOIN "
            "pg_roles r ON r.oid = a.grantee WHERE r.rolname = ANY($1::text[]) AND "
            "a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')) WHERE id = 1 AND "
            "revoked IS NULL",
            1, p, error);
    }
    mg_buf_cleanup(&arr);
    return ok;
}

bool
mg_state_fallback_grants_each(mg_state_t *st, mg_state_grant_fn fn, void *ctx, mg_error_t *error)
{
    PGresult *res = mg_state__query(st,
                                    "SELECT g->>'schema', g->>'table', g->>'role', "
                                    "g->>'privilege', (g->>'grantable')::boolean FROM "
                                    "@.fallback, jsonb_array_elements(coalesce(revoked, '[]')) g "
                                    "WHERE id = 1",
                                    0, NULL, error);
    bool ok = res != NULL;

    for (int r = 0; ok && r < PQntuples(res); r++)
        ok = fn(ctx, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2),
                PQgetvalue(res, r, 3), strcmp(PQgetvalue(res, r, 4), "t") == 0, error);
    PQclear(res);
    return ok;
}

bool
mg_state_fallback_writers(mg_state_t *st, const mg_strlist_t *roles, mg_state_doc_fn fn, void *ctx,
                          mg_error_t *error)
{
    mg_buf_t arr;
    bool ok;

    mg_buf_init(&arr, 1u << 20);
    ok = mg_pg_text_array((const char *const *)roles->items, roles->count, &arr, error);
    if (ok) {
        const char *p[1] = {arr.data};
        ok = mg_state__each_row(
            mg_state__query(
                st,
                "SELECT r.rolname, quote_ident(c.schema_name) || '.' || quote_ident(c.table_name), "
                "'' FROM @.collections c JOIN pg_namespace n ON n.nspname = c.schema_name JOIN "
                "pg_class t ON t.relnamespace = n.oid AND t.relname = c.table_name CROSS JOIN "
                "pg_roles r WHERE r.rolname = ANY($1::text[]) AND has_table_privilege(r.oid, "
                "t.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') ORDER BY 1, 2",
                1, p, error),
            fn, ctx, error);
    }
    mg_buf_cleanup(&arr);
    return ok;
}

bool
mg_state_fallback_report(mg_state_t *st, mg_state_cutover_report_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st,
        "SELECT outcome, reason, endpoint, unavailable_s, s.key, (s.value->>'seconds')::float8, "
        "jsonb_build_object('outcome', outcome, 'step', step, 'reason', reason, 'attempt', "
        "attempt, 'freeze', freeze_mode, 'freeze_roles', freeze_roles, 'verify', verify_mode, "
        "'fence_lsn', fence_lsn::text, 'endpoint', endpoint, 'started_at', started_at, "
        "'frozen_at', frozen_at, 'source_unfrozen_at', source_unfrozen_at, 'flipped_at', "
        "flipped_at, 'finished_at', finished_at, 'unavailable_s', unavailable_s, 'steps', "
        "steps)::text FROM @.fallback LEFT JOIN LATERAL jsonb_each(steps) s ON true WHERE id = 1 "
        "ORDER BY s.value->>'finished_at'",
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
            if (PQgetisnull(res, r, 4) || strcmp(PQgetvalue(res, r, 4), "resume") == 0)
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

bool
mg_state_cutover_flipped_at(mg_state_t *st, bool *flipped, char at[40], mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st,
        "SELECT flipped_at::text FROM @.cutover WHERE id = 1 AND flipped_at IS NOT NULL AND "
        "outcome = 'done'",
        0, NULL, error);

    if (res == NULL)
        return false;
    *flipped = PQntuples(res) == 1;
    at[0] = '\0';
    if (*flipped)
        mg_state__copy(res, 0, 0, at, 40);
    PQclear(res);
    return true;
}

bool
mg_state_validation_clean_since(mg_state_t *st, const char *since, int64_t age_ms, bool *found,
                                char started_at[40], mg_error_t *error)
{
    char age[32];
    const char *p[2] = {since, mg_state__i64(age, age_ms)};
    PGresult *res = mg_state__query(
        st,
        "SELECT max(started_at)::text FROM @.validation_runs WHERE status = 'clean' AND mode = "
        "'full' AND started_at >= $1::timestamptz AND ($2::bigint = 0 OR finished_at > now() - "
        "$2::bigint * interval '1 ms')",
        2, p, error);

    if (res == NULL)
        return false;
    *found = !PQgetisnull(res, 0, 0);
    started_at[0] = '\0';
    if (*found)
        mg_state__copy(res, 0, 0, started_at, 40);
    PQclear(res);
    return true;
}
