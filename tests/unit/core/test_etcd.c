/*
 * tests/unit/core/test_etcd.c - the etcd v3 gateway parsers on answers
 * recorded from etcd 3.4.23 (tests/unit/core/etcd_fixtures): omitted default
 * fields, a failed txn without "succeeded", int64 and uint64 as strings,
 * base64 keys and values, streamed watch messages, error objects; plus
 * malformed input and client option checks. No network.
 */
#include "mg/core.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static char *
load(const char *name, size_t *len)
{
    const char *src = getenv("MG_SOURCE_DIR");
    char path[1024];
    FILE *f;
    char *data;
    long n;

    snprintf(path, sizeof(path), "%s/tests/unit/core/etcd_fixtures/%s", src ? src : ".", name);
    f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return data;
}

static void
test_range_prefix(void **state)
{
    size_t len;
    char *json = load("range_prefix.json", &len);
    mg_etcd_range_t r;
    mg_error_t error;

    assert_true(mg_etcd_parse_range(json, len, &r, &error));
    assert_int_equal(r.header.revision, 5);
    assert_int_equal(r.header.raft_term, 2);
    assert_true(r.header.cluster_id == 7801232528081817440ULL);
    assert_true(r.header.member_id == 13458989633860879742ULL); /* > INT64_MAX */
    assert_int_equal(r.count, 2);
    assert_false(r.more);
    assert_int_equal(r.nkvs, 2);
    assert_string_equal(r.kvs[0].key, "/t/a");
    assert_int_equal(r.kvs[0].key_len, 4);
    assert_string_equal(r.kvs[0].value, "hello");
    assert_int_equal(r.kvs[0].value_len, 5);
    assert_int_equal(r.kvs[0].create_revision, 4);
    assert_int_equal(r.kvs[0].mod_revision, 4);
    assert_int_equal(r.kvs[0].version, 1);
    assert_int_equal(r.kvs[0].lease, 0); /* omitted: no lease */
    /* an empty value is omitted by etcd */
    assert_string_equal(r.kvs[1].key, "/t/b");
    assert_string_equal(r.kvs[1].value, "");
    assert_int_equal(r.kvs[1].value_len, 0);
    mg_etcd_range_cleanup(&r);
    free(json);
}

static void
test_range_empty_and_limited(void **state)
{
    size_t len;
    char *json = load("range_empty.json", &len);
    mg_etcd_range_t r;
    mg_error_t error;

    /* no "kvs", no "count": both default */
    assert_true(mg_etcd_parse_range(json, len, &r, &error));
    assert_int_equal(r.nkvs, 0);
    assert_null(r.kvs);
    assert_int_equal(r.count, 0);
    mg_etcd_range_cleanup(&r);
    free(json);

    json = load("range_limited.json", &len);
    assert_true(mg_etcd_parse_range(json, len, &r, &error));
    assert_int_equal(r.nkvs, 1);
    assert_int_equal(r.count, 2);
    assert_true(r.more);
    mg_etcd_range_cleanup(&r);
    free(json);
}

static void
test_txn(void **state)
{
    size_t len;
    char *json = load("txn_failed.json", &len);
    mg_etcd_txn_result_t t;
    mg_error_t error;

    /* a failed txn has no "succeeded" field */
    assert_true(mg_etcd_parse_txn(json, len, &t, &error));
    assert_false(t.succeeded);
    assert_int_equal(t.header.revision, 5);
    assert_int_equal(t.nranges, 1);
    assert_int_equal(t.ranges[0].nkvs, 1);
    assert_string_equal(t.ranges[0].kvs[0].value, "hello");
    assert_int_equal(t.ranges[0].header.raft_term, 0); /* inner headers carry revision only */
    mg_etcd_txn_result_cleanup(&t);
    free(json);

    json = load("txn_succeeded.json", &len);
    assert_true(mg_etcd_parse_txn(json, len, &t, &error));
    assert_true(t.succeeded);
    assert_int_equal(t.header.revision, 6);
    assert_int_equal(t.nranges, 0); /* response_put is not a range */
    mg_etcd_txn_result_cleanup(&t);
    free(json);
}

static void
test_lease(void **state)
{
    size_t len;
    char *json = load("lease_grant.json", &len);
    mg_etcd_header_t h;
    int64_t id = 0, ttl = 0;
    mg_error_t error;

    assert_true(mg_etcd_parse_lease(json, len, &h, &id, &ttl, &error));
    assert_true(id == 5007618054385947158LL);
    assert_int_equal(ttl, 5);
    free(json);

    json = load("lease_keepalive.json", &len); /* wrapped in "result" */
    assert_true(mg_etcd_parse_lease(json, len, &h, &id, &ttl, &error));
    assert_true(id == 5007618054385947158LL);
    assert_int_equal(ttl, 5);
    assert_int_equal(h.revision, 6);
    free(json);

    json = load("lease_keepalive_expired.json", &len); /* TTL omitted = expired */
    assert_true(mg_etcd_parse_lease(json, len, &h, &id, &ttl, &error));
    assert_int_equal(id, 123);
    assert_int_equal(ttl, 0);
    free(json);
}

static void
test_error_objects(void **state)
{
    size_t len;
    char *json = load("error_lease_not_found.json", &len);
    mg_etcd_header_t h;
    mg_error_t error;

    assert_false(mg_etcd_parse_header_only(json, len, &h, NULL, &error));
    assert_int_equal(error.domain, MG_ERROR_DOMAIN_ETCD);
    assert_int_equal(error.code, MG_ETCD_ERR_LEASE_NOT_FOUND);
    assert_non_null(strstr(error.message, "requested lease not found"));
    free(json);

    json = load("error_nospace.json", &len);
    assert_false(mg_etcd_parse_header_only(json, len, &h, NULL, &error));
    assert_int_equal(error.code, MG_ETCD_ERR_NOSPACE);
    free(json);
}

static void
test_delete_none(void **state)
{
    size_t len;
    char *json = load("delete_none.json", &len);
    mg_etcd_header_t h;
    int64_t deleted = 99;
    mg_error_t error;

    /* "deleted" omitted when nothing was deleted */
    assert_true(mg_etcd_parse_header_only(json, len, &h, &deleted, &error));
    assert_int_equal(deleted, 0);
    assert_int_equal(h.revision, 6);
    free(json);
}

/* split_lines hands each line of a recorded stream to the watch parser. */
static void
test_watch_stream(void **state)
{
    size_t len;
    char *json = load("watch_events.json", &len);
    char *line, *save = NULL;
    mg_etcd_watch_response_t w[3];
    mg_error_t error;
    int n = 0;

    for (line = strtok_r(json, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        assert_true(n < 3);
        assert_true(mg_etcd_parse_watch(line, strlen(line), &w[n], &error));
        n++;
    }
    assert_int_equal(n, 3);
    assert_true(w[0].created);
    assert_int_equal(w[0].nevents, 0);
    assert_int_equal(w[1].nevents, 1);
    assert_int_equal(w[1].events[0].type, MG_ETCD_EVENT_PUT); /* type omitted */
    assert_string_equal(w[1].events[0].kv.value, "world");
    assert_int_equal(w[1].events[0].kv.mod_revision, 8);
    assert_int_equal(w[2].events[0].type, MG_ETCD_EVENT_DELETE);
    assert_string_equal(w[2].events[0].kv.key, "/t/b");
    assert_int_equal(w[2].events[0].kv.value_len, 0);
    while (n-- > 0)
        mg_etcd_watch_response_cleanup(&w[n]);
    free(json);

    json = load("watch_compacted.json", &len);
    line = strchr(json, '\n');
    assert_non_null(line);
    assert_true(mg_etcd_parse_watch(line + 1, strlen(line + 1), &w[0], &error));
    assert_true(w[0].canceled);
    assert_int_equal(w[0].compact_revision, 6);
    assert_int_equal(w[0].header.revision, 0); /* omitted in the cancel message */
    mg_etcd_watch_response_cleanup(&w[0]);
    free(json);
}

static void
test_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[1,2]",
        "{\"header\":{\"revision\":\"12x\"}}",
        "{\"header\":{\"revision\":true}}",
        "{\"kvs\":{}}",
        "{\"kvs\":[{\"key\":\"***\"}]}",
        "{\"kvs\":[{\"key\":\"L3QvYQ=\"}]}",
        "{\"kvs\":[1]}",
        "{\"kvs\":[{\"key\":5}]}",
        "{\"count\":\"99999999999999999999999\"}",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mg_etcd_range_t r;
        mg_error_t error;

        mg_error_clear(&error);
        assert_false(mg_etcd_parse_range(bad[i], strlen(bad[i]), &r, &error));
        assert_int_equal(error.domain, MG_ERROR_DOMAIN_ETCD);
        assert_int_equal(error.code, MG_ETCD_ERR_PROTOCOL);
    }
}

static void
test_int64_as_number_also_accepted(void **state)
{
    const char *json = "{\"header\":{\"revision\":42,\"raft_term\":\"3\"},\"count\":1,"
                       "\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":7,\"lease\":\"-1\"}]}";
    mg_etcd_range_t r;
    mg_error_t error;

    assert_true(mg_etcd_parse_range(json, strlen(json), &r, &error));
    assert_int_equal(r.header.revision, 42);
    assert_int_equal(r.header.raft_term, 3);
    assert_string_equal(r.kvs[0].key, "a");
    assert_int_equal(r.kvs[0].mod_revision, 7);
    assert_int_equal(r.kvs[0].lease, -1);
    mg_etcd_range_cleanup(&r);
}

static void
test_client_options(void **state)
{
    const char *bad[] = {"127.0.0.1:2379"};
    const char *good[] = {"http://127.0.0.1:1/"};
    mg_etcd_options_t opts = {0};
    mg_etcd_t *etcd;
    mg_etcd_txn_t *txn;
    mg_error_t error;
    int i;

    assert_null(mg_etcd_new(&opts, &error));
    assert_int_equal(error.domain, MG_ERROR_DOMAIN_CONFIG);
    opts.endpoints = bad;
    opts.nendpoints = 1;
    assert_null(mg_etcd_new(&opts, &error));
    assert_non_null(strstr(error.message, "127.0.0.1:2379"));
    opts.endpoints = good;
    opts.timeout_ms = 300;
    etcd = mg_etcd_new(&opts, &error);
    assert_non_null(etcd);
    mg_etcd_destroy(etcd);
    mg_etcd_destroy(NULL);

    txn = mg_etcd_txn_new();
    for (i = 0; i < 16; i++)
        assert_true(
            mg_etcd_txn_compare_int(txn, "k", MG_ETCD_TARGET_MOD, MG_ETCD_CMP_EQUAL, i, &error));
    assert_false(
        mg_etcd_txn_compare_int(txn, "k", MG_ETCD_TARGET_MOD, MG_ETCD_CMP_EQUAL, 1, &error));
    assert_int_equal(error.code, MG_ERROR_CODE_LIMIT);
    assert_false(
        mg_etcd_txn_compare_int(txn, "k", MG_ETCD_TARGET_VALUE, MG_ETCD_CMP_EQUAL, 1, &error));
    mg_etcd_txn_destroy(txn);
    mg_etcd_txn_destroy(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_prefix),
        cmocka_unit_test(test_range_empty_and_limited),
        cmocka_unit_test(test_txn),
        cmocka_unit_test(test_lease),
        cmocka_unit_test(test_error_objects),
        cmocka_unit_test(test_delete_none),
        cmocka_unit_test(test_watch_stream),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_int64_as_number_also_accepted),
        cmocka_unit_test(test_client_options),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
