/*
 * tests/unit/core/test_error.c - mg_error_t helpers: set, errno, bson,
 * libpq (without a server), prefix, redaction and NULL safety.
 */
#include "mg/core.h"

#include <bson/bson.h>
#include <errno.h>
#include <libpq-fe.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_set_and_clear(void **state)
{
    mg_error_t e;

    mg_error_clear(&e);
    assert_false(mg_error_is_set(&e));
    assert_false(mg_error_set(&e, MG_ERROR_DOMAIN_CORE, 42, "could not open \"%s\"", "x"));
    assert_true(mg_error_is_set(&e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_CORE);
    assert_int_equal(e.code, 42);
    assert_string_equal(e.message, "could not open \"x\"");
    assert_string_equal(e.sqlstate, "");
    mg_error_clear(&e);
    assert_false(mg_error_is_set(&e));
    assert_string_equal(e.message, "");
}

static void
test_null_error_is_allowed(void **state)
{
    assert_false(mg_error_set(NULL, MG_ERROR_DOMAIN_CORE, 1, "x"));
    assert_false(mg_error_set_errno(NULL, ENOENT, "x"));
    assert_false(mg_error_set_bson(NULL, NULL, "x"));
    assert_false(mg_error_set_pgresult(NULL, NULL, "x"));
    assert_false(mg_error_set_pgconn(NULL, NULL, "x"));
    mg_error_prefix(NULL, "x");
    mg_error_clear(NULL);
    assert_false(mg_error_is_set(NULL));
}

static void
test_errno(void **state)
{
    mg_error_t e;

    mg_error_set_errno(&e, ENOENT, "could not open file \"%s\"", "/nope");
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_SYSTEM);
    assert_int_equal(e.code, ENOENT);
    assert_string_equal(e.message, "could not open file \"/nope\": No such file or directory");
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_FAILURE);
}

static void
test_bson(void **state)
{
    bson_error_t be;
    mg_error_t e;

    bson_set_error(&be, 1, 18, "Authentication failed.");
    mg_error_set_bson(&e, &be, "could not connect to \"%s\"", "mongodb://u:hunter2@h/");
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_MONGO);
    assert_int_equal(e.code, 18);
    assert_non_null(strstr(e.message, "Authentication failed."));
    assert_null(strstr(e.message, "hunter2"));
    assert_non_null(strstr(e.message, "mongodb://u:" MG_REDACTED "@h/"));
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_SOURCE);

    mg_error_set_bson(&e, NULL, "no detail");
    assert_string_equal(e.message, "no detail");
}

static void
test_pgconn_without_server(void **state)
{
    /* An unknown conninfo keyword fails inside libpq, with no network. */
    PGconn *conn = PQconnectdb("bogus_keyword=1 password=s3cret");
    mg_error_t e;

    assert_int_equal(PQstatus(conn), CONNECTION_BAD);
    mg_error_set_pgconn(&e, conn, "could not connect to \"%s\"", "host=x password=s3cret");
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_PG);
    assert_string_equal(e.sqlstate, "08006");
    assert_non_null(strstr(e.message, "bogus_keyword"));
    assert_null(strstr(e.message, "s3cret"));
    /* libpq's message ends with a newline; it is trimmed. */
    assert_int_not_equal(e.message[strlen(e.message) - 1], '\n');
    assert_int_equal(mg_exit_code_for_error(&e), MG_EXIT_TARGET);
    PQfinish(conn);
}

static void
test_pgresult_without_fields(void **state)
{
    mg_error_t e;
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);

    mg_error_set_pgresult(&e, NULL, "could not run query");
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_PG);
    assert_string_equal(e.sqlstate, "53200");
    assert_non_null(strstr(e.message, "could not run query: no result"));

    assert_non_null(res);
    mg_error_set_pgresult(&e, res, "could not run query");
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_PG);
    assert_string_equal(e.sqlstate, "");
    assert_string_equal(e.message, "could not run query: no error message from libpq");
    PQclear(res);
}

static void
test_prefix(void **state)
{
    mg_error_t e;

    mg_error_clear(&e);
    mg_error_prefix(&e, "ignored");
    assert_false(mg_error_is_set(&e));
    mg_error_set(&e, MG_ERROR_DOMAIN_CORE, 1, "inner");
    mg_error_prefix(&e, "collection \"%s\"", "db.users");
    assert_string_equal(e.message, "collection \"db.users\": inner");
}

static void
test_message_is_redacted_and_bounded(void **state)
{
    mg_error_t e;
    char big[2000];

    mg_error_set(&e, MG_ERROR_DOMAIN_CONFIG, 1, "bad uri %s", "postgresql://app:pw123@db:5432/x");
    assert_null(strstr(e.message, "pw123"));
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    mg_error_set(&e, MG_ERROR_DOMAIN_CORE, 1, "%s", big);
    assert_int_equal(strlen(e.message), MG_ERROR_MESSAGE_SIZE - 1);
}

/*
 * A message cut to fit is cut between UTF-8 characters (the randomized test's
 * _id of 3,000 bytes of "\xc3\xa9z" cut in the middle of an e-acute made
 * PostgreSQL refuse the text), and bytes that are not UTF-8 are escaped:
 * every message is well-formed UTF-8 whatever it was built from.
 */
static void
test_message_is_utf8_when_cut_or_invalid(void **state)
{
    mg_error_t e;
    char big[3100];
    bson_error_t be;

    for (size_t lead = 0; lead < 4; lead++) {
        size_t o = 0;

        memset(big, 'a', lead);
        for (o = lead; o + 3 < sizeof(big); o += 3)
            memcpy(big + o, "\xc3\xa9z", 3);
        big[o] = '\0';
        mg_error_set(&e, MG_ERROR_DOMAIN_CORE, 1, "could not copy _id \"%s\"", big);
        assert_true(bson_utf8_validate(e.message, strlen(e.message), false));
        assert_true(strlen(e.message) > MG_ERROR_MESSAGE_SIZE - 8);
        assert_string_equal(e.message + strlen(e.message) - 3, "...");
        /* a prefix cut by the same rule */
        mg_error_set(&e, MG_ERROR_DOMAIN_CORE, 1, "inner");
        mg_error_prefix(&e, "collection \"%s\"", big);
        assert_true(bson_utf8_validate(e.message, strlen(e.message), false));
        /* the context of a libbson error, cut before the message is built */
        bson_set_error(&be, 1, 2, "server said \xc3\xa9");
        mg_error_set_bson(&e, &be, "%s", big + lead);
        assert_true(bson_utf8_validate(e.message, strlen(e.message), false));
        mg_error_set_errno(&e, ENOENT, "could not open \"%s\"", big);
        assert_true(bson_utf8_validate(e.message, strlen(e.message), false));
    }
    /* bytes that are not UTF-8, and a character cut by the caller: escaped, not passed on */
    mg_error_set(&e, MG_ERROR_DOMAIN_CORE, 1, "bad \xff\xfe key \xed\xa0\x80 and \xc3");
    assert_string_equal(e.message, "bad \\xff\\xfe key \\xed\\xa0\\x80 and \\xc3");
}

static void
test_domain_names(void **state)
{
    assert_string_equal(mg_error_domain_name(MG_ERROR_DOMAIN_PG), "pg");
    assert_string_equal(mg_error_domain_name(MG_ERROR_DOMAIN_MONGO), "mongo");
    assert_string_equal(mg_error_domain_name((mg_error_domain_t)99), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_and_clear),
        cmocka_unit_test(test_null_error_is_allowed),
        cmocka_unit_test(test_errno),
        cmocka_unit_test(test_bson),
        cmocka_unit_test(test_pgconn_without_server),
        cmocka_unit_test(test_pgresult_without_fields),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_message_is_redacted_and_bounded),
        cmocka_unit_test(test_message_is_utf8_when_cut_or_invalid),
        cmocka_unit_test(test_domain_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
