/*
 * tests/unit/core/test_exit.c - the exit-code table is consistent and
 * docs/exit-codes.md documents every code with the same name.
 */
#include "mg/core.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_table_unique(void **state)
{
    size_t n;
    const mg_exit_code_info_t *t = mg_exit_code_table(&n);

    assert_true(n >= 9);
    assert_int_equal(t[0].code, MG_EXIT_OK);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(t[i].name);
        assert_non_null(t[i].meaning);
        assert_true(t[i].code >= 0 && t[i].code < 126); /* shells reserve 126+ */
        for (size_t j = i + 1; j < n; j++) {
            assert_int_not_equal(t[i].code, t[j].code);
            assert_string_not_equal(t[i].name, t[j].name);
        }
        assert_string_equal(mg_exit_code_name(t[i].code), t[i].name);
    }
    assert_string_equal(mg_exit_code_name(99), "unknown");
}

static void
test_error_mapping(void **state)
{
    mg_error_t e;

    mg_error_clear(&e);
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_OK);
    assert_int_equal(mg_exit_code_for_error(NULL), MG_EXIT_OK);
    mg_error_set(&e, MG_ERROR_DOMAIN_CONFIG, 1, "x");
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_USAGE);
    mg_error_set(&e, MG_ERROR_DOMAIN_MONGO, 18, "x");
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_SOURCE);
    mg_error_set(&e, MG_ERROR_DOMAIN_PG, 0, "x");
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_TARGET);
    mg_error_set(&e, MG_ERROR_DOMAIN_SYSTEM, 2, "x");
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_FAILURE);
    mg_error_set(&e, MG_ERROR_DOMAIN_STATE, 0, "x");
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_STATE);
}

static void
test_docs_list_every_code(void **state)
{
    const char *src = getenv("MG_SOURCE_DIR");
    char path[1024], row[128];
    size_t n, len;
    const mg_exit_code_info_t *t = mg_exit_code_table(&n);
    FILE *fp;
    char *doc;

    assert_non_null(src);
    snprintf(path, sizeof(path), "%s/docs/exit-codes.md", src);
    fp = fopen(path, "r");
    assert_non_null(fp);
    doc = calloc(1, 65536);
    len = fread(doc, 1, 65535, fp);
    fclose(fp);
    assert_true(len > 0);
    for (size_t i = 0; i < n; i++) {
        snprintf(row, sizeof(row), "| %d | `%s` |", t[i].code, t[i].name);
        if (strstr(doc, row) == NULL)
            fail_msg("docs/exit-codes.md lacks the row \"%s\"", row);
    }
    free(doc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_unique),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_docs_list_every_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
