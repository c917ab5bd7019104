/*
 * state/src/state_validate.c - the state of validation: runs, per
 * collection results, the named differences (first seen, persisted,
 * resolved) and shadow-read outcomes.
 */
#include "state_internal.h"

#include <stdlib.h>
#include <string.h>

#define RFC3339_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

bool
mg_state_validation_start(mg_state_t *st, const char *mode, bool has_ckpt, uint32_t t, uint32_t i,
                          const char *options_json, int64_t *run_id, char started_at[40],
                          mg_error_t *error)
{
    char ts[32], inc[32];
    const char *p[4] = {mode, has_ckpt ? mg_state__u32(ts, t) : NULL,
                        has_ckpt ? mg_state__u32(inc, i) : NULL, options_json};
    PGresult *res = mg_state__query(st,
                                    "INSERT INTO @.validation_runs (mode, checkpoint_ts, "
                                    "checkpoint_inc, options) VALUES ($1, $2::bigint, $3::bigint, "
                                    "$4::jsonb) RETURNING id, " RFC3339_UTC("started_at"),
                                    4, p, error);

    if (res == NULL)
        return false;
    *run_id = mg_state__int64(res, 0, 0);
    mg_state__copy(res, 0, 1, started_at, 40);
    PQclear(res);
    return true;
}

bool
mg_state_validation_result_add(mg_state_t *st, int64_t run_id,
                               const mg_state_validation_result_t *r, mg_error_t *error)
{
    char run[32], sd[32], td[32], seg[32], segm[32], mi[32], ex[32], di[32], el[32];
    const char *p[13] = {mg_state__i64(run, run_id),
                         r->db,
                         r->coll,
                         r->status,
                         mg_state__i64(sd, r->source_docs),
                         mg_state__i64(td, r->target_docs),
                         mg_state__u32(seg, r->segments),
                         mg_state__u32(segm, r->segments_mismatched),
                         mg_state__i64(mi, r->missing),
                         mg_state__i64(ex, r->extra),
                         mg_state__i64(di, r->different),
                         el,
                         r->error};

    snprintf(el, sizeof(el), "%.6f", r->elapsed_s);
    return mg_state__exec(st,
                          "INSERT INTO @.validation_results (run_id, db, coll, status, "
                          "source_docs, target_docs, segments, segments_mismatched, missing, "
                          "extra, different, elapsed_s, error) VALUES ($1, $2, $3, $4, $5, $6, "
                          "$7, $8, $9, $10, $11, $12, $13)",
                          13, p, error);
}

bool
mg_state_mismatch_record(mg_state_t *st, int64_t run_id, const mg_state_mismatch_t *m,
                         bool *persisted, char first_seen_at[40], mg_error_t *error)
{
    char run[32];
    const char *p[7] = {
        m->db, m->coll, m->id_json, m->doc_id, m->kind, m->fields_json, mg_state__i64(run, run_id)};
    PGresult *res = mg_state__query(
        st,
        "INSERT INTO @.validation_mismatches AS v (db, coll, id_json, doc_id, kind, fields, "
        "first_seen_run, last_seen_run) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $7) ON "
        "CONFLICT (db, coll, id_json) DO UPDATE SET doc_id = EXCLUDED.doc_id, kind = "
        "EXCLUDED.kind, fields = EXCLUDED.fields, persisted = v.resolved_at IS NULL, seen_runs = "
        "CASE WHEN v.resolved_at IS NULL THEN v.seen_runs + 1 ELSE 1 END, first_seen_run = CASE "
        "WHEN v.resolved_at IS NULL THEN v.first_seen_run ELSE EXCLUDED.first_seen_run END, "
        "first_seen_at = CASE WHEN v.resolved_at IS NULL THEN v.first_seen_at ELSE now() END, "
        "last_seen_run = EXCLUDED.last_seen_run, last_seen_at = now(), resolved_run = NULL, "
        "resolved_at = NULL RETURNING persisted, " RFC3339_UTC("first_seen_at"),
        7, p, error);

    if (res == NULL)
        return false;
    *persisted = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    mg_state__copy(res, 0, 1, first_seen_at, 40);
    PQclear(res);
    return true;
}

bool
mg_state_mismatches_resolve(mg_state_t *st, int64_t run_id, const char *db, const char *coll,
                            const char *const *doc_ids, size_t n, mg_error_t *error)
{
    char run[32];
    mg_buf_t arr;
    bool ok;

    mg_state__i64(run, run_id);
    if (doc_ids == NULL) {
        const char *p[3] = {db, coll, run};
        return mg_state__exec(st,
                              "UPDATE @.validation_mismatches SET resolved_run = $3, resolved_at "
                              "= now(), persisted = false WHERE db = $1 AND coll = $2 AND "
                              "resolved_at IS NULL AND last_seen_run <> $3",
                              3, p, error);
    }
    mg_buf_init(&arr, 1u << 30);
    ok = mg_pg_text_array(doc_ids, n, &arr, error);
    if (ok) {
        const char *p[4] = {db, coll, run, arr.data};
        ok = mg_state__exec(st,
                            "UPDATE @.validation_mismatches SET resolved_run = $3, resolved_at = "
                            "now(), persisted = false WHERE db = $1 AND coll = $2 AND resolved_at "
                            "IS NULL AND last_seen_run <> $3 AND doc_id = ANY ($4::text[])",
                            4, p, error);
    }
    mg_buf_cleanup(&arr);
    return ok;
}

bool
mg_state_mismatches_open(mg_state_t *st, mg_state_doc_fn fn, void *ctx, mg_error_t *error)
{
    return mg_state__each_row(mg_state__query(st,
                                              "SELECT db, coll, doc_id FROM "
                                              "@.validation_mismatches WHERE resolved_at IS NULL "
                                              "ORDER BY db, coll, doc_id",
                                              0, NULL, error),
                              fn, ctx, error);
}

bool
mg_state_validation_shadow_add(mg_state_t *st, int64_t run_id, const mg_state_shadow_t *s,
                               mg_error_t *error)
{
    char run[32], seq[32], mc[32], pc[32], l[4][32];
    const char *p[15] = {mg_state__i64(run, run_id),
                         mg_state__i64(seq, s->seq),
                         s->name,
                         s->ns,
                         s->status,
                         s->reason,
                         s->query_json,
                         s->sql,
                         mg_state__i64(mc, s->mongo_count),
                         mg_state__i64(pc, s->pg_count),
                         s->diff_ids_json != NULL ? s->diff_ids_json : "[]",
                         l[0],
                         l[1],
                         l[2],
                         l[3]};

    snprintf(l[0], sizeof(l[0]), "%.4f", s->mongo_p50_ms);
    snprintf(l[1], sizeof(l[1]), "%.4f", s->mongo_p95_ms);
    snprintf(l[2], sizeof(l[2]), "%.4f", s->pg_p50_ms);
    snprintf(l[3], sizeof(l[3]), "%.4f", s->pg_p95_ms);
    return mg_state__exec(st,
                          "INSERT INTO @.validation_shadow (run_id, seq, name, ns, status, "
                          "reason, query, sql, mongo_count, pg_count, diff_ids, mongo_p50_ms, "
                          "mongo_p95_ms, pg_p50_ms, pg_p95_ms) VALUES ($1, $2, $3, $4, $5, $6, "
                          "$7::jsonb, $8, $9, $10, $11::jsonb, $12, $13, $14, $15)",
                          15, p, error);
}

bool
mg_state_validation_finish(mg_state_t *st, int64_t run_id, const char *status, int64_t documents,
                           int64_t mismatches, int64_t persistent, char finished_at[40],
                           mg_error_t *error)
{
    char run[32], docs[32], mism[32], pers[32];
    const char *p[5] = {mg_state__i64(run, run_id), status, mg_state__i64(docs, documents),
                        mg_state__i64(mism, mismatches), mg_state__i64(pers, persistent)};
    PGresult *res = mg_state__query(st,
                                    "UPDATE @.validation_runs SET status = $2, finished_at = "
                                    "now(), documents = $3, mismatches = $4, persistent = $5 "
                                    "WHERE id = $1 RETURNING " RFC3339_UTC("finished_at"),
                                    5, p, error);

    if (res == NULL)
        return false;
    mg_state__copy(res, 0, 0, finished_at, 40);
    PQclear(res);
    return true;
}

bool
mg_state_validation_fail(mg_state_t *st, int64_t run_id, const char *why, mg_error_t *error)
{
    char run[32];
    const char *p[2] = {mg_state__i64(run, run_id), why};

    return mg_state__exec(st,
                          "UPDATE @.validation_runs SET status = 'failed', finished_at = now(), "
                          "options = options || jsonb_build_object('error', $2::text) WHERE id = "
                          "$1",
                          2, p, error);
}

bool
mg_state_validation_recent_clean(mg_state_t *st, int64_t age_ms, bool *found, mg_error_t *error)
{
    char age[32];
    const char *p[1] = {mg_state__i64(age, age_ms)};
    PGresult *res = mg_state__query(st,
                                    "SELECT count(*) FROM @.validation_runs WHERE status = "
                                    "'clean' AND mode IN ('full', 'changed') AND finished_at > "
                                    "now() - $1::bigint * interval '1 ms'",
                                    1, p, error);

    if (res == NULL)
        return false;
    *found = mg_state__int64(res, 0, 0) > 0;
    PQclear(res);
    return true;
}
