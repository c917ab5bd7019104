/*
 * tests/unit/core/test_pg_strip.c - mg_pg_conninfo_strip_password: what the
 * state records of a PostgreSQL connection string holds no password, a URI
 * keeps its form, and libpq reads the same connection from it.
 */
#include "mg/core.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* check strips in, compares with want and had, and has libpq find no password in it. */
static void
check(const char *in, const char *want, bool want_had)
{
    bool had = !want_had;
    char *out = mg_pg_conninfo_strip_password(in, &had);
    PQconninfoOption *opts;

    assert_non_null(out);
    if (strcmp(out, want) != 0)
        fail_msg("strip(%s)\n  got  %s\n  want %s", in, out, want);
    assert_int_equal(had, want_had);
    opts = PQconninfoParse(out, NULL);
    assert_non_null(opts);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "password") == 0)
            assert_null(o->val);
    PQconninfoFree(opts);
    free(out);
}

static void
test_uris_keep_their_form(void **state)
{
    (void)state;
    check("postgresql://app:pw@127.0.0.1:5000/app", "postgresql://app@127.0.0.1:5000/app", true);
    check("postgres://app:p%40ss@h1:5432,h2:5432/db?sslmode=disable&target_session_attrs=any",
          "postgres://app@h1:5432,h2:5432/db?sslmode=disable&target_session_attrs=any", true);
    check("postgresql://app@h/db?password=s3cret&sslmode=require",
          "postgresql://app@h/db?sslmode=require", true);
    check("postgresql://app@h/db?sslmode=require&password=s3cret",
          "postgresql://app@h/db?sslmode=require", true);
    check("postgresql://app@127.0.0.1:5000/app?target_session_attrs=read-write",
          "postgresql://app@127.0.0.1:5000/app?target_session_attrs=read-write", false);
    check("postgresql:///db", "postgresql:///db", false);
}

static void
test_conninfo_becomes_pairs(void **state)
{
    (void)state;
    check("host=h port=5432 user=app password='it\\'s' dbname=db",
          "user='app' dbname='db' host='h' port='5432'", true);
    check("host=h dbname=db", "dbname='db' host='h'", false);
}

static void
test_unparseable_is_null(void **state)
{
    (void)state;
    assert_null(mg_pg_conninfo_strip_password("host='unterminated", NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uris_keep_their_form),
        cmocka_unit_test(test_conninfo_becomes_pairs),
        cmocka_unit_test(test_unparseable_is_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
