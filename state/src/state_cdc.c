/*
 * state/src/state_cdc.c - the state of the change stream: the checkpoint
 * (resume token and cluster time, moved in the apply's transaction and
 * never backwards) and the log of changed documents that `validate
 * --changed` re-checks.
 */
#include "state_internal.h"

#include <stdlib.h>
#include <string.h>

void
mg_state_checkpoint_cleanup(mg_state_checkpoint_t *cp)
{
    if (cp == NULL)
        return;
    PQfreemem(cp->token);
    free(cp->token_json);
    cp->token = NULL;
    cp->token_len = 0;
    cp->token_json = NULL;
}

bool
mg_state_checkpoint_get(mg_state_t *st, int64_t window_ms, mg_state_checkpoint_t *out,
                        mg_error_t *error)
{
    char win[32];
    const char *p[1] = {mg_state__i64(win, window_ms)};
    PGresult *res = mg_state__query(
        st,
        "SELECT cluster_time_ts, cluster_time_inc, extract(epoch FROM now()) - cluster_time_ts, "
        "updated_at > now() - $1::bigint * interval '1 ms', applied_events, "
        "coalesce(events_per_s, 0), to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD "
        "HH24:MI:SS'), history_lost_at IS NOT NULL, resume_token, resume_token_json FROM "
        "@.checkpoint WHERE id = 1",
        1, p, error);
    bool failed = false;

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1) {
        out->applied = !PQgetisnull(res, 0, 0);
        out->t = (uint32_t)mg_state__int64(res, 0, 0);
        out->i = (uint32_t)mg_state__int64(res, 0, 1);
        out->lag_s = out->applied ? strtod(PQgetvalue(res, 0, 2), NULL) : 0;
        out->fresh = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
        out->applied_events = mg_state__int64(res, 0, 4);
        out->events_per_s = strtod(PQgetvalue(res, 0, 5), NULL);
        mg_state__copy(res, 0, 6, out->updated_at, sizeof(out->updated_at));
        out->history_lost = strcmp(PQgetvalue(res, 0, 7), "t") == 0;
        if (!PQgetisnull(res, 0, 8)) {
            out->token =
                PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 8), &out->token_len);
            failed = out->token == NULL;
        }
        if (!PQgetisnull(res, 0, 9))
            out->token_json = mg_state__dup(PQgetvalue(res, 0, 9), &failed);
    }
    PQclear(res);
    if (failed) {
        mg_state_checkpoint_cleanup(out);
        return mg_state__oom(error);
    }
    return true;
}

bool
mg_state_checkpoint_move(mg_state_t *st, const mg_state_position_t *pos, mg_error_t *error)
{
    char ts[32], inc[32], wall[32], events[32];
    const char *values[6] = {(const char *)pos->token,          pos->token_json,
                             mg_state__u32(ts, pos->t),         mg_state__u32(inc, pos->i),
                             mg_state__i64(wall, pos->wall_ms), mg_state__i64(events, pos->events)};
    int lengths[6] = {(int)pos->token_len, 0, 0, 0, 0, 0};
    int formats[6] = {1, 0, 0, 0, 0, 0};
    PGresult *res = mg_state__query_bin(
        st,
        "INSERT INTO @.checkpoint AS c (id, resume_token, resume_token_json, cluster_time_ts, "
        "cluster_time_inc, wall_time, applied_events, applied_batches) VALUES (1, $1, $2, "
        "$3::bigint, $4::bigint, CASE WHEN $5::bigint > 0 THEN to_timestamp($5::bigint / 1000.0) "
        "END, $6::bigint, 1) ON CONFLICT (id) DO UPDATE SET resume_token = EXCLUDED.resume_token, "
        "resume_token_json = EXCLUDED.resume_token_json, cluster_time_ts = "
        "EXCLUDED.cluster_time_ts, cluster_time_inc = EXCLUDED.cluster_time_inc, wall_time = "
        "coalesce(EXCLUDED.wall_time, c.wall_time), applied_events = c.applied_events + "
        "EXCLUDED.applied_events, applied_batches = c.applied_batches + 1, updated_at = now() "
        "WHERE c.cluster_time_ts IS NULL OR (c.cluster_time_ts, c.cluster_time_inc) <= "
        "(EXCLUDED.cluster_time_ts, EXCLUDED.cluster_time_inc) RETURNING id",
        6, values, lengths, formats, 0, error);
    bool moved;

    if (res == NULL) {
        mg_error_prefix(error, "could not move the change-stream checkpoint");
        return false;
    }
    moved = PQntuples(res) == 1;
    PQclear(res);
    if (!moved)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invariant violated: the checkpoint would move backwards to "
                            "Timestamp(%u, %u)",
                            pos->t, pos->i);
    return true;
}

bool
mg_state_checkpoint_set_rate(mg_state_t *st, double events_per_s, mg_error_t *error)
{
    char r[32];
    const char *p[1] = {r};

    snprintf(r, sizeof(r), "%.1f", events_per_s);
    return mg_state__exec(st, "UPDATE @.checkpoint SET events_per_s = $1 WHERE id = 1", 1, p,
                          error);
}

bool
mg_state_checkpoint_history_lost(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st, "UPDATE @.checkpoint SET history_lost_at = now() WHERE id = 1", 0,
                          NULL, error);
}

/* ---- changed documents ---- */

bool
mg_state_changed_add(mg_state_t *st, const mg_state_changed_t *rows, size_t n, mg_error_t *error)
{
    const char **cols[5];
    char(*nums)[2][32] = NULL;
    mg_buf_t arrays[5];
    bool ok = true;

    if (n == 0)
        return true;
    for (int k = 0; k < 5; k++) {
        mg_buf_init(&arrays[k], 1u << 30);
        cols[k] = calloc(n, sizeof(char *));
        ok = ok && cols[k] != NULL;
    }
    nums = calloc(n, sizeof(*nums));
    ok = ok && nums != NULL;
    for (size_t r = 0; ok && r < n; r++) {
        cols[0][r] = rows[r].db;
        cols[1][r] = rows[r].coll;
        cols[2][r] = rows[r].doc_id;
        cols[3][r] = mg_state__u32(nums[r][0], rows[r].t);
        cols[4][r] = mg_state__u32(nums[r][1], rows[r].i);
    }
    if (!ok)
        mg_state__oom(error);
    for (int k = 0; ok && k < 5; k++)
        ok = mg_pg_text_array(cols[k], n, &arrays[k], error);
    if (ok) {
        const char *p[5] = {arrays[0].data, arrays[1].data, arrays[2].data, arrays[3].data,
                            arrays[4].data};
        ok = mg_state__exec(st,
                            "INSERT INTO @.changed_docs (db, coll, doc_id, cluster_time_ts, "
                            "cluster_time_inc) SELECT * FROM unnest($1::text[], $2::text[], "
                            "$3::text[], $4::bigint[], $5::bigint[])",
                            5, p, error);
    }
    for (int k = 0; k < 5; k++) {
        mg_buf_cleanup(&arrays[k]);
        free(cols[k]);
    }
    free(nums);
    return ok;
}

bool
mg_state_changed_list(mg_state_t *st, uint32_t t, uint32_t i, mg_state_doc_fn fn, void *ctx,
                      mg_error_t *error)
{
    char ts[32], inc[32];
    const char *p[2] = {mg_state__u32(ts, t), mg_state__u32(inc, i)};

    return mg_state__each_row(
        mg_state__query(st,
                        "SELECT DISTINCT db, coll, doc_id FROM @.changed_docs WHERE "
                        "(cluster_time_ts, cluster_time_inc) <= ($1::bigint, "
                        "$2::bigint) ORDER BY db, coll, doc_id",
                        2, p, error),
        fn, ctx, error);
}

bool
mg_state_changed_forget(mg_state_t *st, const char *db, const char *coll, uint32_t t, uint32_t i,
                        mg_error_t *error)
{
    char ts[32], inc[32];
    const char *p[4] = {db, coll, mg_state__u32(ts, t), mg_state__u32(inc, i)};

    return mg_state__exec(st,
                          "DELETE FROM @.changed_docs WHERE db = $1 AND coll = $2 AND "
                          "(cluster_time_ts, cluster_time_inc) <= ($3::bigint, $4::bigint)",
                          4, p, error);
}
