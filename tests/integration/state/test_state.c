/*
 * tests/integration/state/test_state.c - the state layer against a real
 * PostgreSQL 15: every typed function of mg/state.h, on a state schema whose
 * name holds a quote, a dot, a space, a dollar and non-ASCII letters (every
 * statement goes through the one quoting function), with hostile values
 * bound as parameters. cmocka, run by test_state.py with a Postgres from
 * the harness: MG_TEST_PG is its connection string.
 */
#include "mg/state.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* A hostile but valid (under 64 bytes) schema name. */
#define SCHEMA "st \"Ünï\".$x"

static PGconn *pg, *pg2; /* two sessions: locks are per session */
static mg_state_t *st, *st2;
static mg_error_t e;

/* sql runs text (no parameters) and returns the first value of the first row ("" if none). */
static char *
sql(const char *text)
{
    static char value[1024];
    PGresult *res = PQexec(pg, text);

    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", text, PQresultErrorMessage(res));
    snprintf(value, sizeof(value), "%s",
             PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return value;
}

#define OK(call)                                         \
    do {                                                 \
        mg_error_clear(&e);                              \
        if (!(call))                                     \
            fail_msg("%s failed: %s", #call, e.message); \
    } while (0)

static int
setup(void **state)
{
    const char *conninfo = getenv("MG_TEST_PG");

    if (conninfo == NULL)
        return -1;
    pg = mg_pg_connect(conninfo, &e);
    pg2 = mg_pg_connect(conninfo, &e);
    if (pg == NULL || pg2 == NULL)
        return -1;
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
    PQclear(PQexec(pg, "DROP SCHEMA IF EXISTS \"st \"\"Ünï\"\".$x\" CASCADE"));
    PQclear(PQexec(pg, "DROP SCHEMA IF EXISTS app CASCADE"));
    st = mg_state_new(pg, SCHEMA, &e);
    st2 = mg_state_new(pg2, SCHEMA, &e);
    return st != NULL && st2 != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    mg_state_destroy(st);
    mg_state_destroy(st2);
    PQfinish(pg);
    PQfinish(pg2);
    return 0;
}

static void
test_schema_create_probe_require(void **state)
{
    mg_buf_t ddl;
    bool exists;
    int version;

    OK(mg_state_probe(st, &exists, &version, &e));
    assert_false(exists);
    assert_false(mg_state_require(st, &e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_STATE);
    assert_int_equal(e.code, MG_STATE_ERR_MISSING);
    assert_non_null(strstr(e.message, "run migrate init first"));
    assert_string_equal(mg_state_schema(st), SCHEMA);
    mg_buf_init(&ddl, 1 << 20);
    OK(mg_state_ddl(st, &ddl, &e));
    assert_non_null(strstr(ddl.data, "CREATE SCHEMA \"st \"\"Ünï\"\".$x\";"));
    sql(ddl.data);
    mg_buf_cleanup(&ddl);
    OK(mg_state_probe(st, &exists, &version, &e));
    assert_true(exists);
    assert_int_equal(version, MG_STATE_VERSION);
    OK(mg_state_require(st, &e));
    /* a newer state schema is refused, an unrelated schema of that name too */
    sql("UPDATE \"st \"\"Ünï\"\".$x\".meta SET value = '2' WHERE key = 'schema_version'");
    assert_false(mg_state_require(st, &e));
    assert_int_equal(e.code, MG_STATE_ERR_VERSION);
    sql("UPDATE \"st \"\"Ünï\"\".$x\".meta SET value = '1' WHERE key = 'schema_version'");
    sql("CREATE SCHEMA app");
    mg_state_t *other = mg_state_new(pg, "app", &e);
    OK(mg_state_probe(other, &exists, &version, &e));
    assert_true(exists);
    assert_int_equal(version, 0);
    assert_false(mg_state_require(other, &e));
    mg_state_destroy(other);
    /* migration row: absent until init writes it */
    mg_state_migration_t mig;
    assert_false(mg_state_migration_get(st, &mig, &e));
    assert_int_equal(e.code, MG_STATE_ERR_EMPTY);
}

static void
test_migration_row_t0_and_phase(void **state)
{
    mg_state_migration_new_t m = {"0.1",
                                  "mongodb://u@h/?x='1'",
                                  "7.0",
                                  "",
                                  NULL,
                                  "relaxed",
                                  "{\"census\":\"sample\"}",
                                  "the password of the source URI, from env X"};
    mg_state_migration_t mig;
    bool has;
    uint32_t t, i;

    OK(mg_state_migration_insert(st, &m, &e));
    OK(mg_state_migration_get(st, &mig, &e));
    assert_string_equal(mig.phase, "initialized");
    assert_false(mig.has_t0);
    assert_string_equal(mig.source_uri, m.source_uri);
    assert_int_equal(strlen(mig.created_at), 19);
    assert_string_equal(sql("SELECT source_set_name IS NULL FROM \"st \"\"Ünï\"\".$x\".migration"),
                        "t");
    assert_string_equal(sql("SELECT source_secret FROM \"st \"\"Ünï\"\".$x\".migration"),
                        "the password of the source URI, from env X");
    OK(mg_state_begin(st, &e));
    OK(mg_state_t0_lock(st, &has, &t, &i, &e));
    assert_false(has);
    OK(mg_state_t0_set(st, 4000000000u, 7, &e)); /* above INT32_MAX: bigint */
    OK(mg_state_commit(st, &e));
    OK(mg_state_migration_get(st, &mig, &e));
    assert_true(mig.has_t0);
    assert_int_equal(mig.t0_t, 4000000000u);
    assert_int_equal(mig.t0_i, 7);
    OK(mg_state_phase_advance(st, "copying", "initialized", "copying", &e));
    OK(mg_state_phase_advance(st, "copied", "initialized", NULL, &e)); /* not from copying */
    OK(mg_state_migration_get(st, &mig, &e));
    assert_string_equal(mig.phase, "copying");
    OK(mg_state_event_add(st, "test", "{\"a\": \"it's\"}", &e));
    OK(mg_state_event_add(st, "test", NULL, &e));
    assert_string_equal(sql("SELECT count(*) FROM \"st \"\"Ünï\"\".$x\".events WHERE kind = "
                            "'test' AND (data = '{}' OR data->>'a' = 'it''s')"),
                        "2");
}

static void
test_collections_partitions_and_copy_status(void **state)
{
    mg_state_coll_new_t a = {"shop", "o'rders", "app", "o'rders", "text_objectid", 10, 1000, "{}"};
    mg_state_coll_new_t b = {"shop", "items", "app", "items", "bigint", 5, 50, NULL};
    mg_state_colls_t colls = {0};
    mg_state_partition_t p, p2;
    bool got, others, found;
    int64_t n;
    char ns[300], why[300];
    uint8_t filter[] = {5, 0, 0, 0, 0}; /* the empty BSON document */

    OK(mg_state_collection_insert(st, &a, &e));
    OK(mg_state_collection_insert(st, &b, &e));
    sql("CREATE TABLE app.\"o'rders\" (_id text PRIMARY KEY, doc jsonb NOT NULL)");
    sql("INSERT INTO app.\"o'rders\" VALUES ('1', '{}')");
    OK(mg_state_collections_unplanned(st, &colls, &e));
    assert_int_equal(colls.n, 2);
    assert_string_equal(colls.items[0].coll, "items"); /* ordered by db, coll */
    assert_true(colls.items[1].key_known);
    assert_int_equal(colls.items[1].key, MG_SCHEMA_KEY_TEXT_OID);
    mg_state_colls_cleanup(&colls);
    OK(mg_state_partition_insert(st, "shop", "o'rders", 0, filter, 5, "{}", 7, &e));
    OK(mg_state_partition_insert(st, "shop", "o'rders", 1, filter, 5, "{}", 3, &e));
    OK(mg_state_partition_insert(st, "shop", "items", 0, filter, 5, "{}", 5, &e));
    OK(mg_state_collections_unplanned(st, &colls, &e));
    assert_int_equal(colls.n, 0);
    mg_state_colls_cleanup(&colls);
    OK(mg_state_collections_copy_start(st, &e));
    /* claims: the largest first; another session skips the locked one */
    OK(mg_state_partition_claim(st, &p, &got, &others, &e));
    assert_true(got);
    assert_int_equal(p.seq, 0);
    assert_string_equal(p.coll, "o'rders");
    assert_int_equal(p.filter_len, 5);
    assert_memory_equal(p.filter, filter, 5);
    OK(mg_state_partition_claim(st2, &p2, &got, &others, &e));
    assert_true(got);
    assert_string_equal(p2.coll, "items");
    OK(mg_state_partition_done(st2, p2.id, 5, 500, 1, "w\"2", &e));
    OK(mg_state_commit(st2, &e));
    mg_state_partition_cleanup(&p2);
    OK(mg_state_partition_claim(st2, &p2, &got, &others, &e));
    assert_true(got); /* the smaller partition of o'rders */
    mg_state_rollback(st2);
    mg_state_partition_cleanup(&p2);
    OK(mg_state_partition_done(st, p.id, 7, 700, 0, "w1", &e));
    OK(mg_state_commit(st, &e));
    OK(mg_state_partition_reclaim(st, p.id, &got, &e));
    assert_false(got); /* done: nothing to reclaim */
    mg_state_partition_cleanup(&p);
    OK(mg_state_partition_claim(st, &p, &got, &others, &e));
    assert_true(got);
    mg_state_rollback(st);
    OK(mg_state_partition_failed(st, p.id, "row 3: \"bad\" ' \\ value", "w1", &e));
    mg_state_partition_cleanup(&p);
    OK(mg_state_partition_claim(st, &p, &got, &others, &e));
    assert_false(got);
    assert_false(others);
    OK(mg_state_partitions_count(st, "failed", &n, &e));
    assert_int_equal(n, 1);
    OK(mg_state_collections_copy_finish(st, &e));
    OK(mg_state_collections_load(st, true, &colls, &e));
    assert_string_equal(colls.items[0].status, "copied"); /* items */
    assert_int_equal(colls.items[0].parts_done, 1);
    assert_int_equal(colls.items[0].docs_copied, 5);
    assert_string_equal(colls.items[1].status, "failed");
    assert_string_equal(colls.items[1].error, "row 3: \"bad\" ' \\ value");
    assert_int_equal(colls.items[1].parts_total, 2);
    assert_int_equal(colls.items[1].parts_failed, 1);
    mg_state_colls_cleanup(&colls);
    OK(mg_state_collection_first_failed(st, &found, ns, sizeof(ns), why, sizeof(why), &e));
    assert_true(found);
    assert_string_equal(ns, "shop.o'rders");
    /* a retried partition makes its collection copy again */
    OK(mg_state_partitions_retry_failed(st, &e));
    OK(mg_state_collections_copy_start(st, &e));
    OK(mg_state_collections_load(st, false, &colls, &e));
    assert_string_equal(colls.items[1].status, "copying");
    mg_state_colls_cleanup(&colls);
    mg_state_blobs_t blobs;
    OK(mg_state_partition_filters(st, "shop", "o'rders", &blobs, &e));
    assert_int_equal(blobs.n, 2);
    assert_memory_equal(blobs.data[1], filter, 5);
    mg_state_blobs_cleanup(&blobs);
}

static void
test_indexes_invalid_docs_progress_and_status_lists(void **state)
{
    mg_state_index_t x = {"shop",
                          "items",
                          "price_1",
                          "items_price_1",
                          "{\"price\": 1}",
                          false,
                          "translated",
                          "pending",
                          "CREATE INDEX IF NOT EXISTS items_price_1 "
                          "ON app.items ((doc->'price'))",
                          NULL,
                          NULL};
    mg_state_index_job_t *jobs = NULL;
    mg_state_rows_t rows;
    size_t n = 9;

    OK(mg_state_index_insert(st, &x, &e));
    OK(mg_state_indexes_to_build(st, &jobs, &n, &e));
    assert_int_equal(n, 1); /* items is fully copied; o'rders is not */
    assert_string_equal(jobs[0].name, "price_1");
    mg_state_index_jobs_free(jobs, n);
    OK(mg_state_index_mark(st, "shop", "items", "price_1", "failed", "it's \"broken\"", &e));
    OK(mg_state_index_mark(st, "shop", "items", "price_1", "built", NULL, &e));
    assert_string_equal(
        sql("SELECT build_status || '|' || note FROM \"st \"\"Ünï\"\".$x\".indexes"),
        "built|it's \"broken\"");
    OK(mg_state_invalid_doc_add(st, "shop", "items", 0, "{\"$oid\": \"x\"}", "first", &e));
    OK(mg_state_invalid_doc_add(st, "shop", "items", 42, "{\"$oid\": \"x\"}", "last wins", &e));
    OK(mg_state_invalid_docs(st, 50, &rows, &e));
    assert_int_equal(rows.n, 1);
    assert_int_equal(rows.total, 1);
    assert_string_equal(rows.items[0].c, "last wins");
    mg_state_rows_cleanup(&rows);
    OK(mg_state_progress_save(st, "host:1", 10, 20, &e));
    OK(mg_state_progress_save(st, "host:1", 11, 21, &e));
    OK(mg_state_live_workers(st, &rows, &e));
    assert_int_equal(rows.n, 1);
    assert_int_equal(rows.items[0].n1, 11);
    mg_state_rows_cleanup(&rows);
    OK(mg_state_progress_remove(st, "host:1", &e));
    OK(mg_state_live_workers(st, &rows, &e));
    assert_int_equal(rows.n, 0);
    mg_state_rows_cleanup(&rows);
    OK(mg_state_failed_partitions(st, 50, &rows, &e));
    assert_int_equal(rows.n, 0); /* retried above */
    mg_state_rows_cleanup(&rows);
}

/* collect is an mg_state_doc_fn appending "db/coll/doc_id;" to ctx. */
static bool
collect(void *ctx, const char *db, const char *coll, const char *doc_id, mg_error_t *error)
{
    char *out = ctx;
    size_t n = strlen(out);

    snprintf(out + n, 1024 - n, "%s/%s/%s;", db, coll, doc_id);
    return true;
}

static void
test_checkpoint_and_changed_docs(void **state)
{
    uint8_t token[] = {13, 0, 0, 0, 2, 'x', 0, 1, 0, 0, 0, 0, 0};
    mg_state_position_t pos = {token, sizeof(token), "{\"x\": \"\"}", 100, 5, 1700000000000, 3};
    mg_state_changed_t rows[] = {
        {"shop", "items", "1", 100, 4},
        {"shop", "items", "a,b\"c\\d{e}", 100, 5},
        {"shop", "o'rders", "NULL", 101, 1},
    };
    mg_state_checkpoint_t cp;
    char seen[1024] = "";

    OK(mg_state_checkpoint_get(st, 0, &cp, &e));
    assert_false(cp.applied);
    assert_null(cp.token);
    OK(mg_state_begin(st, &e));
    OK(mg_state_changed_add(st, rows, 3, &e));
    OK(mg_state_checkpoint_move(st, &pos, &e));
    OK(mg_state_commit(st, &e));
    OK(mg_state_checkpoint_get(st, 60000, &cp, &e));
    assert_true(cp.applied && cp.fresh);
    assert_int_equal(cp.t, 100);
    assert_int_equal(cp.i, 5);
    assert_int_equal(cp.applied_events, 3);
    assert_int_equal(cp.token_len, sizeof(token));
    assert_memory_equal(cp.token, token, sizeof(token));
    assert_true(cp.lag_s > 1e6); /* Timestamp(100, ...) is long ago */
    mg_state_checkpoint_cleanup(&cp);
    assert_int_equal(cp.t, 100); /* the numbers stay */
    /* never backwards: refused as a violated invariant, nothing written */
    pos.t = 99;
    assert_false(mg_state_checkpoint_move(st, &pos, &e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_CORE);
    assert_int_equal(e.code, MG_ERROR_CODE_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "invariant violated"));
    OK(mg_state_checkpoint_set_rate(st, 123.456, &e));
    OK(mg_state_checkpoint_get(st, 0, &cp, &e));
    assert_int_equal(cp.t, 100);
    assert_true(cp.events_per_s > 123.4 && cp.events_per_s < 123.6);
    assert_false(cp.history_lost);
    mg_state_checkpoint_cleanup(&cp);
    /* the changed documents up to a position, each once */
    OK(mg_state_changed_add(st, rows, 1, &e));
    OK(mg_state_changed_list(st, 100, 5, collect, seen, &e));
    assert_string_equal(seen, "shop/items/1;shop/items/a,b\"c\\d{e};");
    OK(mg_state_changed_forget(st, "shop", "items", 100, 5, &e));
    seen[0] = '\0';
    OK(mg_state_changed_list(st, 200, 0, collect, seen, &e));
    assert_string_equal(seen, "shop/o'rders/NULL;");
    OK(mg_state_changed_add(st, rows, 0, &e)); /* nothing to add is fine */
}

static void
test_validation_runs_and_mismatches(void **state)
{
    mg_state_mismatch_t m = {"shop", "items",     "{\"$oid\":\"a\"}",
                             "id'1", "different", "[{\"path\": \"x\"}]"};
    mg_state_validation_result_t r = {"shop", "items", "mismatch", 10, 10,  4,
                                      1,      0,       0,          1,  0.5, NULL};
    mg_state_shadow_t sh = {
        1, "q\"1", "shop.items", "match", NULL, "{\"find\": 1}", "SELECT 1", 2, 2, "[]", 1, 2,
        3, 4};
    int64_t run1, run2, run3;
    char started[40], finished[40], first[40];
    bool persisted, found;
    const char *ids[] = {"id'1", "z\"z"};
    char open[1024] = "";

    OK(mg_state_validation_start(st, "full", true, 100, 5, "{\"segments\": 4}", &run1, started,
                                 &e));
    assert_true(run1 > 0);
    assert_int_equal(strlen(started), 24); /* 2026-01-01T00:00:00.000Z */
    OK(mg_state_validation_result_add(st, run1, &r, &e));
    OK(mg_state_mismatch_record(st, run1, &m, &persisted, first, &e));
    assert_false(persisted);
    OK(mg_state_validation_shadow_add(st, run1, &sh, &e));
    OK(mg_state_validation_finish(st, run1, "mismatch", 10, 1, 0, finished, &e));
    assert_int_equal(strlen(finished), 24);
    OK(mg_state_validation_start(st, "changed", false, 0, 0, "{}", &run2, started, &e));
    OK(mg_state_mismatch_record(st, run2, &m, &persisted, first, &e));
    assert_true(persisted); /* seen by the run before and not resolved */
    OK(mg_state_mismatches_open(st, collect, open, &e));
    assert_string_equal(open, "shop/items/id'1;");
    OK(mg_state_validation_finish(st, run2, "persistent_mismatch", 1, 1, 1, finished, &e));
    OK(mg_state_validation_start(st, "changed", false, 0, 0, "{}", &run3, started, &e));
    OK(mg_state_mismatches_resolve(st, run3, "shop", "items", ids, 2, &e));
    open[0] = '\0';
    OK(mg_state_mismatches_open(st, collect, open, &e));
    assert_string_equal(open, "");
    OK(mg_state_validation_finish(st, run3, "clean", 1, 0, 0, finished, &e));
    OK(mg_state_validation_recent_clean(st, 60000, &found, &e));
    assert_true(found);
    sql("UPDATE \"st \"\"Ünï\"\".$x\".validation_runs SET finished_at = now() - interval '1 hour'");
    OK(mg_state_validation_recent_clean(st, 60000, &found, &e));
    assert_false(found);
    /* seen again after its resolution: a new first sighting, not persisted */
    OK(mg_state_mismatch_record(st, run3, &m, &persisted, first, &e));
    assert_false(persisted);
    OK(mg_state_mismatches_resolve(st, run3 + 1, "shop", "items", NULL, 0, &e));
    OK(mg_state_validation_fail(st, run3, "why: 'quoted' \"too\"", &e));
    assert_string_equal(sql("SELECT status || '|' || (options->>'error') FROM "
                            "\"st \"\"Ünï\"\".$x\".validation_runs ORDER BY id DESC LIMIT 1"),
                        "failed|why: 'quoted' \"too\"");
}

/* claim is a claim of owner "o<n>" with token "t<n>" and renewal "r<n>". */
static mg_state_cutover_claim_t
claim(const char *who, const char *token, const char *renewal, const char *expect_token,
      const char *expect_renewal)
{
    return (mg_state_cutover_claim_t){who, token, renewal, 3000, expect_token, expect_renewal};
}

static void
test_cutover_owner_and_guarded_writes(void **state)
{
    mg_state_cutover_owner_t o;
    mg_state_cutover_claim_t c1 = claim("h:1", "t1", "r1", NULL, NULL);
    mg_state_cutover_claim_t c2 = claim("h:2", "t2", "r2", NULL, NULL);
    bool taken, held;

    OK(mg_state_cutover_owner_get(st, &o, &e));
    assert_false(o.held);
    /* without ownership nothing of the cutover row is written */
    assert_false(mg_state_cutover_start(st, "none", "counts", NULL, NULL, &e));
    assert_int_equal(e.code, MG_STATE_ERR_BUSY);
    OK(mg_state_cutover_owner_take(st, &c1, &taken, &e));
    assert_true(taken);
    /* a second one that saw it free loses the compare-and-set */
    OK(mg_state_cutover_owner_take(st2, &c2, &taken, &e));
    assert_false(taken);
    OK(mg_state_cutover_owner_get(st2, &o, &e));
    assert_true(o.held);
    assert_string_equal(o.owner, "h:1");
    assert_string_equal(o.renewal, "r1");
    assert_int_equal(o.ttl_ms, 3000);
    OK(mg_state_cutover_owner_renew(st, "t1", "r1b", &held, &e));
    assert_true(held);
    /* taking over needs the renewal it watched: a stale one loses */
    c2.expect_token = "t1";
    c2.expect_renewal = "r1";
    OK(mg_state_cutover_owner_take(st2, &c2, &taken, &e));
    assert_false(taken);
    c2.expect_renewal = "r1b";
    OK(mg_state_cutover_owner_take(st2, &c2, &taken, &e));
    assert_true(taken);
    OK(mg_state_cutover_owner_get(st, &o, &e));
    assert_int_equal(o.takeovers, 1);
    /* the old owner can neither renew nor write the row any more */
    OK(mg_state_cutover_owner_renew(st, "t1", "r1c", &held, &e));
    assert_false(held);
    assert_false(mg_state_cutover_start(st, "none", "counts", NULL, NULL, &e));
    assert_int_equal(e.code, MG_STATE_ERR_BUSY);
    OK(mg_state_cutover_start(st2, "none", "counts", NULL, NULL, &e));
    OK(mg_state_cutover_owner_release(st2, &e));
    OK(mg_state_cutover_owner_get(st, &o, &e));
    assert_false(o.held);
    assert_false(mg_state_cutover_step(st2, "freeze", &e)); /* released: not the owner */
}

static void
test_cutover_row_fence_and_report(void **state)
{
    mg_state_cutover_t row;
    mg_state_cutover_report_t rep;
    mg_state_cutover_fence_t f;
    mg_state_cutover_claim_t c1 = claim("h:1", "t3", "r3", NULL, NULL);
    bool taken;

    sql("DELETE FROM \"st \"\"Ünï\"\".$x\".cutover");
    OK(mg_state_cutover_fence_get(st2, &f, &e));
    assert_false(f.fenced);
    assert_string_equal(f.step, "");
    OK(mg_state_cutover_owner_take(st, &c1, &taken, &e));
    assert_true(taken);
    OK(mg_state_cutover_start(st, "hook:echo 'x'", "changed", "host='h'", "env MIGRATE_TARGET",
                              &e));
    OK(mg_state_cutover_step(st, "freeze", &e));
    OK(mg_state_cutover_frozen(st, &e));
    OK(mg_state_cutover_fence(st, 4000000001u, 2, &e));
    OK(mg_state_cutover_step_done(st, "freeze", 0.25, &e));
    OK(mg_state_cutover_get(st, &row, &e));
    assert_true(row.exists && row.has_fence);
    assert_string_equal(row.step, "freeze");
    assert_string_equal(row.outcome, "running");
    assert_string_equal(row.freeze_mode, "hook:echo 'x'");
    assert_string_equal(row.endpoint, "host='h'");
    assert_string_equal(row.endpoint_secret, "env MIGRATE_TARGET");
    assert_int_equal(row.fence_t, 4000000001u);
    /* the follower is not fenced before the flip, and is from the flip on */
    OK(mg_state_cutover_fence_get(st2, &f, &e));
    assert_false(f.fenced);
    assert_true(f.has_fence && f.t == 4000000001u && f.i == 2);
    OK(mg_state_cutover_step(st, "flip", &e));
    OK(mg_state_cutover_fence_get(st2, &f, &e));
    assert_true(f.fenced);
    /* a batch in flight holds the row: the cutover's next record waits for its commit */
    OK(mg_state_begin(st2, &e));
    OK(mg_state_cutover_fence_get(st2, &f, &e));
    sql("SET lock_timeout = '200ms'");
    PGresult *res = PQexec(pg, "UPDATE \"st \"\"Ünï\"\".$x\".cutover SET step = 'verify'");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "55P03"); /* lock timeout */
    PQclear(res);
    sql("RESET lock_timeout");
    OK(mg_state_commit(st2, &e));
    OK(mg_state_cutover_step(st, "verify", &e)); /* nothing flipped: set back */
    OK(mg_state_cutover_resumed(st, &e));
    OK(mg_state_cutover_aborted(st, "it's \"gone\"", &e));
    OK(mg_state_cutover_fence_get(st2, &f, &e));
    assert_false(f.fenced); /* aborted */
    OK(mg_state_cutover_start(st, "none", "counts", NULL, NULL, &e));
    assert_string_equal(sql("SELECT attempt || outcome || (fence_ts IS NULL) FROM "
                            "\"st \"\"Ünï\"\".$x\".cutover"),
                        "2runningtrue");
    OK(mg_state_cutover_step_done(st, "preflight", 0.5, &e));
    OK(mg_state_cutover_frozen(st, &e));
    OK(mg_state_cutover_flipped(st, &e));
    OK(mg_state_cutover_step_done(st, "flip", 1.5, &e));
    OK(mg_state_cutover_done(st, &e));
    OK(mg_state_cutover_fence_get(st2, &f, &e));
    assert_true(f.fenced); /* done */
    OK(mg_state_cutover_report(st, &rep, &e));
    assert_true(rep.exists && rep.has_unavailable);
    assert_string_equal(rep.outcome, "done");
    assert_int_equal(rep.nsteps, 2);
    assert_string_equal(rep.steps[0].name, "preflight");
    assert_string_equal(rep.steps[1].name, "flip");
    assert_non_null(strstr(rep.json, "\"outcome\": \"done\""));
    mg_state_cutover_report_cleanup(&rep);
    assert_string_equal(sql("SELECT count(*) FROM \"st \"\"Ünï\"\".$x\".events WHERE kind = "
                            "'cutover.step'"),
                        "4"); /* freeze, aborted, preflight, flip */
    OK(mg_state_cutover_owner_release(st, &e));
}

static void
test_preflight_lists_and_scope(void **state)
{
    mg_state_scope_t scope;
    mg_state_rows_t rows;
    mg_state_index_t x = {"shop", "items",      "n_1",    "items_n_1",           "{\"n\": 1}",
                          true,   "translated", "failed", "CREATE UNIQUE INDEX", "it's \"broken\"",
                          NULL};

    /* the scope: an init that recorded only counts of patterns cannot be compared */
    OK(mg_state_scope_get(st, &scope, &e));
    assert_true(scope.known && scope.include.count == 0 && scope.exclude.count == 0);
    mg_state_scope_cleanup(&scope);
    sql("UPDATE \"st \"\"Ünï\"\".$x\".migration SET options = '{\"include_count\": 1}'");
    OK(mg_state_scope_get(st, &scope, &e));
    assert_false(scope.known);
    mg_state_scope_cleanup(&scope);
    sql("UPDATE \"st \"\"Ünï\"\".$x\".migration SET options = '{\"include\": [\"shop.*\", "
        "\"o''\\\"x\"], \"exclude\": [\"shop.tmp*\"]}'");
    OK(mg_state_scope_get(st, &scope, &e));
    assert_true(scope.known);
    assert_int_equal(scope.include.count, 2);
    assert_string_equal(scope.include.items[1], "o'\"x");
    assert_string_equal(scope.exclude.items[0], "shop.tmp*");
    mg_state_scope_cleanup(&scope);
    /* o'rders is copying (its failed partition was retried), items copied */
    OK(mg_state_collections_incomplete(st, 1, &rows, &e));
    assert_int_equal(rows.n, 1);
    assert_int_equal(rows.total, 1);
    assert_string_equal(rows.items[0].a, "shop.o'rders");
    assert_string_equal(rows.items[0].b, "status copying");
    mg_state_rows_cleanup(&rows);
    /* a copied collection with a partition pending again (a commit lost in a failover) */
    sql("UPDATE \"st \"\"Ünï\"\".$x\".collections SET status = 'copied'");
    sql("UPDATE \"st \"\"Ünï\"\".$x\".partitions SET status = 'done' WHERE coll = 'items'");
    OK(mg_state_collections_incomplete(st, 5, &rows, &e));
    assert_int_equal(rows.n, 1);
    assert_string_equal(rows.items[0].b, "1 partition(s) not copied");
    mg_state_rows_cleanup(&rows);
    OK(mg_state_index_insert(st, &x, &e));
    OK(mg_state_indexes_unbuilt(st, 5, &rows, &e));
    assert_int_equal(rows.n, 1);
    assert_string_equal(rows.items[0].a, "shop.items index n_1");
    assert_string_equal(rows.items[0].b, "failed: it's \"broken\"");
    mg_state_rows_cleanup(&rows);
    OK(mg_state_invalid_namespaces(st, &rows, &e));
    assert_int_equal(rows.n, 1);
    assert_int_equal(rows.total, 1);
    assert_string_equal(rows.items[0].a, "shop.items");
    assert_string_equal(rows.items[0].b, "1, first _id {\"$oid\": \"x\"}");
    mg_state_rows_cleanup(&rows);
    /* validated: a clean full run that started after the copy finished; not a changed one */
    sql("UPDATE \"st \"\"Ünï\"\".$x\".collections SET copied_at = now() - interval '1 minute'");
    OK(mg_state_collections_unvalidated(st, 5, &rows, &e));
    assert_int_equal(rows.total, 2);
    mg_state_rows_cleanup(&rows);
    sql("INSERT INTO \"st \"\"Ünï\"\".$x\".validation_runs (id, mode, status, started_at, "
        "finished_at) VALUES (901, 'changed', 'clean', now(), now()), (902, 'full', 'clean', "
        "now() - interval '2 minutes', now()), (903, 'full', 'mismatch', now(), now())");
    sql("INSERT INTO \"st \"\"Ünï\"\".$x\".validation_results (run_id, db, coll, status) VALUES "
        "(901, 'shop', 'items', 'clean'), (902, 'shop', 'items', 'clean'), (903, 'shop', "
        "'items', 'clean'), (903, 'shop', 'o''rders', 'mismatch')");
    OK(mg_state_collections_unvalidated(st, 5, &rows, &e));
    assert_int_equal(rows.total, 1); /* items: run 903 covered it clean; o'rders: nothing */
    assert_string_equal(rows.items[0].a, "shop.o'rders");
    mg_state_rows_cleanup(&rows);
}

static void
test_follower_lease_heartbeat_and_liveness(void **state)
{
    mg_state_follower_t fo;
    mg_state_beat_t b = {.lag_s = 0.25,
                         .has_source_write = true,
                         .source_write_t = 4000000002u,
                         .source_write_i = 3,
                         .has_applied = true,
                         .applied_t = 4000000001u,
                         .applied_i = 9};
    char holder[256];
    bool claimed, owner;

    OK(mg_state_follower_get(st2, 5000, &fo, &e));
    assert_false(fo.exists || fo.alive);
    OK(mg_state_follower_claim(st, "h'x:1", "h'x", 1, &claimed, holder, sizeof(holder), &e));
    assert_true(claimed);
    /* a second session cannot claim while the first holds the lock */
    OK(mg_state_follower_claim(st2, "other:2", "other", 2, &claimed, holder, sizeof(holder), &e));
    assert_false(claimed);
    assert_non_null(strstr(holder, "h'x:1 (last heartbeat"));
    OK(mg_state_follower_beat(st, "h'x:1", &b, &owner, &e));
    assert_true(owner);
    OK(mg_state_follower_get(st2, 5000, &fo, &e));
    assert_true(fo.exists && fo.running && fo.session && fo.fresh && fo.alive);
    assert_string_equal(fo.name, "h'x:1");
    assert_true(fo.lag_s >= 0.25 && fo.lag_s < 5);
    assert_int_equal(fo.source_write_t, 4000000002u);
    assert_int_equal(fo.applied_i, 9);
    /* an old heartbeat alone is not death while the session holds the lock */
    sql("UPDATE \"st \"\"Ünï\"\".$x\".follower SET beat_at = now() - interval '1 hour'");
    OK(mg_state_follower_get(st2, 5000, &fo, &e));
    assert_true(fo.alive && fo.session && !fo.fresh);
    assert_true(fo.lag_s > 3600); /* the figure ages with the heartbeat */
    /* released: another session takes over; the first finds its lease gone */
    OK(mg_state_follower_release(st, "h'x:1", "stopped", &e));
    OK(mg_state_follower_get(st, 5000, &fo, &e)); /* the probe must not keep the lock */
    assert_false(fo.alive || fo.running);
    assert_string_equal(fo.stop_reason, "stopped");
    OK(mg_state_follower_claim(st2, "other:2", "other", 2, &claimed, holder, sizeof(holder), &e));
    assert_true(claimed);
    OK(mg_state_follower_beat(st, "h'x:1", &b, &owner, &e));
    assert_false(owner);
    b.lag_s = -1; /* unknown */
    OK(mg_state_follower_beat(st2, "other:2", &b, &owner, &e));
    assert_true(owner);
    OK(mg_state_follower_get(st, 5000, &fo, &e));
    assert_true(fo.alive && fo.lag_s < 0);
    /* a holder whose session ended (kill -9) is dead once its heartbeat is older than the window */
    PQfinish(pg2);
    pg2 = mg_pg_connect(getenv("MG_TEST_PG"), &e);
    mg_state_set_conn(st2, pg2);
    OK(mg_state_follower_get(st, 60000, &fo, &e));
    assert_true(fo.alive && !fo.session && fo.fresh); /* within the window: a failover's gap */
    OK(mg_state_follower_get(st, 0, &fo, &e));
    assert_false(fo.alive);
}

static void
test_resync_and_drop(void **state)
{
    mg_strlist_t none = {(char *[]){"other.*"}, 1}, one = {(char *[]){"shop.o'r*"}, 1};
    mg_strlist_t all = {(char *[]){"*"}, 1};
    mg_state_colls_t colls;
    mg_state_migration_t mig;
    mg_buf_t ddl;
    size_t count = 9;

    assert_false(mg_state_resync(st, &none, &count, &e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_CONFIG);
    assert_non_null(strstr(e.message, "--resync pattern \"other.*\" matches no planned"));
    OK(mg_state_resync(st, &one, &count, &e));
    assert_int_equal(count, 1);
    assert_string_equal(sql("SELECT count(*) FROM app.\"o'rders\""), "0");
    OK(mg_state_collections_load(st, false, &colls, &e));
    assert_string_equal(colls.items[1].status, "planned");
    mg_state_colls_cleanup(&colls);
    /* after a lost history every collection must be re-synced, and T0 starts again */
    OK(mg_state_checkpoint_history_lost(st, &e));
    assert_false(mg_state_resync(st, &one, &count, &e));
    assert_non_null(strstr(e.message, "re-sync all of them (--resync '*'), not 1 of 2"));
    sql("CREATE TABLE app.items (_id bigint PRIMARY KEY, doc jsonb)");
    OK(mg_state_resync(st, &all, &count, &e));
    assert_int_equal(count, 2);
    OK(mg_state_migration_get(st, &mig, &e));
    assert_false(mig.has_t0);
    assert_string_equal(mig.phase, "copying");
    mg_buf_init(&ddl, 1 << 20);
    OK(mg_state_drop_ddl(st, &ddl, &e));
    assert_string_equal(ddl.data, "DROP TABLE IF EXISTS \"app\".\"items\";\n"
                                  "DROP TABLE IF EXISTS \"app\".\"o'rders\";\n"
                                  "DROP SCHEMA \"st \"\"Ünï\"\".$x\" CASCADE;\n");
    sql(ddl.data);
    mg_buf_cleanup(&ddl);
    assert_false(mg_state_require(st, &e));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_create_probe_require),
        cmocka_unit_test(test_migration_row_t0_and_phase),
        cmocka_unit_test(test_collections_partitions_and_copy_status),
        cmocka_unit_test(test_indexes_invalid_docs_progress_and_status_lists),
        cmocka_unit_test(test_checkpoint_and_changed_docs),
        cmocka_unit_test(test_validation_runs_and_mismatches),
        cmocka_unit_test(test_cutover_owner_and_guarded_writes),
        cmocka_unit_test(test_cutover_row_fence_and_report),
        cmocka_unit_test(test_preflight_lists_and_scope),
        cmocka_unit_test(test_follower_lease_heartbeat_and_liveness),
        cmocka_unit_test(test_resync_and_drop),
    };

    mg_log_init("test_state", MG_LOG_WARNING, MG_LOG_FORMAT_JSON);
    return cmocka_run_group_tests(tests, setup, teardown);
}
