/*
 * tests/unit/validate/test_report.c - the validation report: JSON that
 * parses and carries every count and mismatch, HTML that escapes what it
 * shows and references nothing outside itself.
 */
#include "mg/validate.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static mg_validate_field_diff_t diff = {.path = "a.<b>",
                                        .source_value = "\"<script>x</script>\"",
                                        .target_value = NULL,
                                        .source_type = "string",
                                        .target_type = "absent"};

static mg_validate_mismatch_t mismatches[2] = {
    {.kind = MG_VALIDATE_DIFFERENT,
     .id_json = "\"k&1\"",
     .doc_id = "k&1",
     .diffs = &diff,
     .ndiffs = 1,
     .persisted = true,
     .first_seen_at = "2026-11-26T08:00:00.000Z"},
    {.kind = MG_VALIDATE_MISSING,
     .id_json = "{\"$oid\": \"0123456789abcdef01234567\"}",
     .doc_id = "0123456789abcdef01234567"},
};

static void
make_report(mg_validate_report_t *rep, mg_validate_report_coll_t *colls, mg_validate_result_t *r)
{
    memset(r, 0, sizeof(*r));
    r->source_docs = 10;
    r->target_docs = 9;
    r->segments = 16;
    r->segments_mismatched = 2;
    r->segments_drilled = 2;
    r->missing = 1;
    r->different = 1;
    r->mismatches = mismatches;
    r->nmismatches = 2;
    r->source_s = 0.5;
    r->target_s = 0.25;
    r->elapsed_s = 0.6;
    colls[0] = (mg_validate_report_coll_t){"db", "people", "db", "people", "mismatch", NULL, r};
    colls[1] = (mg_validate_report_coll_t){
        "db", "broken", "db", "broken", "failed", "could not read <table>", NULL};
    *rep = (mg_validate_report_t){.run_id = 7,
                                  .mode = "full",
                                  .started_at = "2026-11-26T08:00:00.000Z",
                                  .finished_at = "2026-11-26T08:00:01.000Z",
                                  .status = "persistent_mismatch",
                                  .elapsed_s = 1.0,
                                  .persistent = 1,
                                  .colls = colls,
                                  .ncolls = 2};
}

static void
test_json_report(void **state)
{
    mg_validate_report_t rep;
    mg_validate_report_coll_t colls[2];
    mg_validate_result_t r;
    mg_buf_t out;
    mg_error_t error;
    char err[256];

    make_report(&rep, colls, &r);
    mg_buf_init(&out, 1 << 20);
    assert_true(mg_validate_report_json(&rep, &out, &error));
    yajl_val root = yajl_tree_parse(out.data, err, sizeof(err));
    if (root == NULL)
        fail_msg("report does not parse: %s: %s", err, out.data);
    const char *p_status[] = {"status", NULL};
    const char *p_missing[] = {"missing", NULL};
    const char *p_colls[] = {"collections", NULL};
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(root, p_status, yajl_t_string)),
                        "persistent_mismatch");
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_missing, yajl_t_number)), 1);
    yajl_val cs = yajl_tree_get(root, p_colls, yajl_t_array);
    assert_int_equal(YAJL_GET_ARRAY(cs)->len, 2);
    yajl_val c0 = YAJL_GET_ARRAY(cs)->values[0];
    const char *p_ms[] = {"mismatches", NULL};
    yajl_val ms = yajl_tree_get(c0, p_ms, yajl_t_array);
    assert_int_equal(YAJL_GET_ARRAY(ms)->len, 2);
    yajl_val m0 = YAJL_GET_ARRAY(ms)->values[0];
    const char *p_id[] = {"_id", NULL}, *p_pers[] = {"persisted", NULL};
    const char *p_fields[] = {"fields", NULL};
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(m0, p_id, yajl_t_string)), "\"k&1\"");
    assert_true(YAJL_IS_TRUE(yajl_tree_get(m0, p_pers, yajl_t_true)));
    yajl_val f0 = YAJL_GET_ARRAY(yajl_tree_get(m0, p_fields, yajl_t_array))->values[0];
    const char *p_target[] = {"target", NULL}, *p_path[] = {"path", NULL};
    assert_true(YAJL_IS_NULL(yajl_tree_get(f0, p_target, yajl_t_null)));
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(f0, p_path, yajl_t_string)), "a.<b>");
    yajl_val c1 = YAJL_GET_ARRAY(cs)->values[1];
    const char *p_error[] = {"error", NULL};
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(c1, p_error, yajl_t_string)),
                        "could not read <table>");
    yajl_tree_free(root);
    mg_buf_cleanup(&out);
}

static void
test_html_report(void **state)
{
    mg_validate_report_t rep;
    mg_validate_report_coll_t colls[2];
    mg_validate_result_t r;
    mg_buf_t out;
    mg_error_t error;

    make_report(&rep, colls, &r);
    mg_buf_init(&out, 1 << 20);
    assert_true(mg_validate_report_html(&rep, &out, &error));
    assert_non_null(strstr(out.data, "<!DOCTYPE html>"));
    assert_non_null(strstr(out.data, "<h1>Validation report</h1>"));
    assert_non_null(strstr(out.data, "<h2>Collections</h2>"));
    assert_non_null(strstr(out.data, "<h2>Mismatches</h2>"));
    assert_non_null(strstr(out.data, "<svg"));
    /* escaped, never raw */
    assert_null(strstr(out.data, "<script>"));
    assert_non_null(strstr(out.data, "&lt;script&gt;"));
    assert_non_null(strstr(out.data, "a.&lt;b&gt;"));
    assert_non_null(strstr(out.data, "&quot;k&amp;1&quot;"));
    assert_non_null(strstr(out.data, "could not read &lt;table&gt;"));
    /* self-contained: no external reference */
    assert_null(strstr(out.data, "src="));
    assert_null(strstr(out.data, "href="));
    assert_null(strstr(out.data, "@import"));
    /* a report without collections still renders */
    rep.ncolls = 0;
    mg_buf_reset(&out);
    assert_true(mg_validate_report_html(&rep, &out, &error));
    assert_non_null(strstr(out.data, "No mismatch."));
    /* the cap is an error, not a truncated page */
    mg_buf_t small;
    mg_buf_init(&small, 64);
    rep.ncolls = 2;
    assert_false(mg_validate_report_html(&rep, &small, &error));
    mg_buf_cleanup(&small);
    mg_buf_cleanup(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_report),
        cmocka_unit_test(test_html_report),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
