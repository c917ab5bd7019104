/*
 * tests/unit/core/test_redact.c - passwords never survive redaction: URIs
 * (MongoDB, PostgreSQL), libpq conninfo, URI query parameters and JSON.
 */
#include "mg/core.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* check redacts in and compares with want, and checks the count. */
static void
check(const char *in, const char *want, size_t secrets)
{
    char out[512];
    char *dup;

    assert_int_equal(mg_redact_copy(in, out, sizeof(out)), secrets);
    if (strcmp(out, want) != 0)
        fail_msg("redact(%s)\n  got  %s\n  want %s", in, out, want);
    dup = mg_redact_dup(in);
    assert_string_equal(dup, want);
    free(dup);
}

static void
test_uris(void **state)
{
    check("mongodb://admin:s3cr3t@h1:27017,h2:27017/app?replicaSet=rs0",
          "mongodb://admin:" MG_REDACTED "@h1:27017,h2:27017/app?replicaSet=rs0", 1);
    check("mongodb+srv://u:p%40ss@cluster0.example.net/",
          "mongodb+srv://u:" MG_REDACTED "@cluster0.example.net/", 1);
    check("postgresql://app:pw@127.0.0.1:5432/db?sslmode=disable",
          "postgresql://app:" MG_REDACTED "@127.0.0.1:5432/db?sslmode=disable", 1);
    /* an unescaped '@' inside the password is still hidden */
    check("postgres://app:p@ss@host/db", "postgres://app:" MG_REDACTED "@host/db", 1);
    /* user without password and no userinfo are left alone */
    check("mongodb://admin@h1/", "mongodb://admin@h1/", 0);
    check("postgresql://h1:5432/db", "postgresql://h1:5432/db", 0);
    check("http://127.0.0.1:2379/v3/kv/range", "http://127.0.0.1:2379/v3/kv/range", 0);
}

static void
test_uri_query_and_conninfo(void **state)
{
    check("postgresql://h/db?user=app&password=pw&sslmode=require",
          "postgresql://h/db?user=app&password=" MG_REDACTED "&sslmode=require", 1);
    check("host=127.0.0.1 port=5432 user=app password=hunter2 dbname=x",
          "host=127.0.0.1 port=5432 user=app password=" MG_REDACTED " dbname=x", 1);
    /* libpq quoting: single quotes, backslash escapes */
    check("host=h password = 'it\\'s quoted' dbname=x",
          "host=h password = " MG_REDACTED " dbname=x", 1);
    check("PASSWORD=abc", "PASSWORD=" MG_REDACTED, 1);
    check("secret=xyz passwd=abc", "secret=" MG_REDACTED " passwd=" MG_REDACTED, 2);
    /* words that merely contain the key, or prose without '=', are not touched */
    check("mypassword=1 password authentication failed for user \"app\"",
          "mypassword=1 password authentication failed for user \"app\"", 0);
}

static void
test_json(void **state)
{
    check("{\"user\":\"app\",\"password\":\"p\\\"w\",\"port\":5}",
          "{\"user\":\"app\",\"password\":\"" MG_REDACTED "\",\"port\":5}", 1);
    check("{\"password\" : \"x\", \"uri\": \"mongodb://a:b@h/\"}",
          "{\"password\" : \"" MG_REDACTED "\", \"uri\": \"mongodb://a:" MG_REDACTED "@h/\"}", 2);
    check("{\"password\": 5}", "{\"password\": 5}", 0);
}

static void
test_several_in_one_string(void **state)
{
    const char *in = "could not copy from mongodb://u:one@h/ to postgresql://v:two@p/ "
                     "(conninfo host=p password=three)";
    char out[512];

    assert_int_equal(mg_redact_copy(in, out, sizeof(out)), 3);
    assert_null(strstr(out, "one"));
    assert_null(strstr(out, "two"));
    assert_null(strstr(out, "three"));
}

static void
test_truncation_and_null(void **state)
{
    char out[20];

    mg_redact_copy("postgresql://app:pw@host/db", out, sizeof(out));
    assert_int_equal(strlen(out), sizeof(out) - 1);
    assert_null(strstr(out, "pw@"));
    assert_int_equal(mg_redact_copy(NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_null(mg_redact_dup(NULL));
    assert_int_equal(mg_redact_copy("x", NULL, 0), 0);
}

static void
test_growth_in_dup(void **state)
{
    /* A one-character password becomes eight characters: dup must size for it. */
    char *d = mg_redact_dup("a://u:p@h b://u:p@h c://u:p@h");

    assert_string_equal(d,
                        "a://u:" MG_REDACTED "@h b://u:" MG_REDACTED "@h c://u:" MG_REDACTED "@h");
    free(d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uris),
        cmocka_unit_test(test_uri_query_and_conninfo),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_several_in_one_string),
        cmocka_unit_test(test_truncation_and_null),
        cmocka_unit_test(test_growth_in_dup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
