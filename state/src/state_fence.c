/*
 * state/src/state_fence.c - what fences the follower (docs/cdc.md, "After
 * the cutover"): the cutover's state, read in the apply's own transaction,
 * and the writes the source took after the cutover, which are reported and
 * never applied.
 *
 * The apply reads the cutover row FOR SHARE, so the cutover's move to the
 * flip waits for an apply in flight, and an apply that starts after it sees
 * it: no batch commits over rows the application owns.
 */
#include "state_internal.h"

#include <string.h>

/* DDL of the writes seen after a cutover (appended to version 1 by mg_state_ddl). */
const char *const mg_state__fence_ddl[] = {
    "CREATE TABLE @.after_cutover (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    doc_id text NOT NULL,\n"
    "    op text NOT NULL,\n"
    "    cluster_time_ts bigint NOT NULL,\n"
    "    cluster_time_inc bigint NOT NULL,\n"
    "    seen_at timestamptz NOT NULL DEFAULT now(),\n"
    "    PRIMARY KEY (db, coll, doc_id)\n"
    ")",
    NULL,
};

bool
mg_state_follow_fence(mg_state_t *st, const char *follower, mg_state_fence_t *out,
                      mg_error_t *error)
{
    const char *p[1] = {follower};
    PGresult *res;

    memset(out, 0, sizeof(*out));
    out->owner = true;
    res = mg_state__query(st,
                          "SELECT outcome, step, fence_ts, fence_inc, to_char(coalesce(flipped_at, "
                          "finished_at, updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
                          "FROM @.cutover WHERE id = 1 FOR SHARE",
                          0, NULL, error);
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1) {
        const char *outcome = PQgetvalue(res, 0, 0), *step = PQgetvalue(res, 0, 1);
        /* from the flip on the application may write to PostgreSQL; an aborted cutover
         * never reached it (--abort refuses once the flip started) */
        out->flipped = strcmp(outcome, "done") == 0 ||
                       (strcmp(outcome, "running") == 0 &&
                        (strcmp(step, "flip") == 0 || strcmp(step, "done") == 0));
        out->has_fence = !PQgetisnull(res, 0, 2);
        out->fence_t = (uint32_t)mg_state__int64(res, 0, 2);
        out->fence_i = (uint32_t)mg_state__int64(res, 0, 3);
        mg_state__copy(res, 0, 4, out->flipped_at, sizeof(out->flipped_at));
    }
    PQclear(res);
    if (follower == NULL)
        return true;
    res = mg_state__query(
        st, "SELECT name = $1 AND stopped_at IS NULL FROM @.follower WHERE id = 1", 1, p, error);
    if (res == NULL)
        return false;
    out->owner = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return true;
}

bool
mg_state_after_cutover_add(mg_state_t *st, const mg_state_after_cutover_t *w, mg_error_t *error)
{
    char ts[32], inc[32];
    const char *p[6] = {
        w->db, w->coll, w->doc_id, w->op, mg_state__u32(ts, w->t), mg_state__u32(inc, w->i)};

    return mg_state__exec(st,
                          "INSERT INTO @.after_cutover AS a (db, coll, doc_id, op, "
                          "cluster_time_ts, cluster_time_inc) VALUES ($1, $2, $3, $4, $5::bigint, "
                          "$6::bigint) ON CONFLICT (db, coll, doc_id) DO UPDATE SET op = $4, "
                          "cluster_time_ts = $5::bigint, cluster_time_inc = $6::bigint, seen_at = "
                          "now()",
                          6, p, error);
}

bool
mg_state_after_cutover_list(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error)
{
    static const int texts[3] = {0, 1, 2}, nums[3] = {3, 4, 5};
    char lim[32];
    const char *p[1] = {mg_state__i64(lim, limit)};

    if (!mg_state__read_rows(mg_state__query(st,
                                             "SELECT db || '.' || coll, doc_id, op, "
                                             "cluster_time_ts, cluster_time_inc, (SELECT count(*) "
                                             "FROM @.after_cutover) FROM @.after_cutover ORDER BY "
                                             "cluster_time_ts, cluster_time_inc LIMIT $1::int",
                                             1, p, error),
                             texts, nums, out, error))
        return false;
    out->total = out->n > 0 ? out->items[0].n3 : 0;
    return true;
}
