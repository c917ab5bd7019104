/*
 * tests/unit/core/test_log.c - the JSON-lines logger: every line parses back
 * as JSON with the documented fields; levels, redaction, UTF-8, text mode,
 * journald priority prefix, the libmongoc bridge and concurrent writers.
 */
#include "mg/core.h"

#include <math.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* Captured output: a temp file the logger writes to. */
static FILE *capture;

static int
setup(void **state)
{
    capture = tmpfile();
    assert_non_null(capture);
    mg_log_init("unit", MG_LOG_DEBUG, MG_LOG_FORMAT_JSON);
    mg_log_set_stream(capture);
    return 0;
}

static int
teardown(void **state)
{
    mg_log_set_stream(NULL);
    fclose(capture);
    unsetenv("JOURNAL_STREAM");
    return 0;
}

/* read_all returns everything written so far (malloc'd) and truncates. */
static char *
read_all(void)
{
    long n;
    char *buf;

    fflush(capture);
    n = ftell(capture);
    buf = calloc(1, (size_t)n + 1);
    rewind(capture);
    assert_int_equal(fread(buf, 1, (size_t)n, capture), (size_t)n);
    rewind(capture);
    assert_int_equal(ftruncate(fileno(capture), 0), 0);
    return buf;
}

/* parse_line parses one JSON object line (no trailing newline). */
static yajl_val
parse_line(const char *line)
{
    char err[256];
    yajl_val v = yajl_tree_parse(line, err, sizeof(err));

    if (v == NULL)
        fail_msg("line is not JSON: %s (%s)", line, err);
    assert_true(YAJL_IS_OBJECT(v));
    return v;
}

static const char *
get_str(yajl_val obj, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_string);

    return v ? YAJL_GET_STRING(v) : NULL;
}

static yajl_val
get_any(yajl_val obj, const char *key)
{
    const char *path[] = {key, NULL};

    return yajl_tree_get(obj, path, yajl_t_any);
}

static void
test_json_line_fields(void **state)
{
    char *out;
    yajl_val v;
    regex_t re;

    MG_LOG_EVENT(MG_LOG_NOTICE, "cutover", "cutover.step",
                 MG_LOG_FIELDS(MG_LOG_STR("table", "app.users"), MG_LOG_INT("lsn", -5),
                               MG_LOG_UINT("docs", 18446744073709551615ULL),
                               MG_LOG_DOUBLE("rate", 1.5), MG_LOG_BOOL("ok", true),
                               MG_LOG_DOUBLE("bad", NAN)),
                 "step %s done", "freeze");
    out = read_all();
    assert_non_null(strchr(out, '\n'));
    assert_int_equal(out[strlen(out) - 1], '\n');
    out[strlen(out) - 1] = '\0';
    assert_null(strchr(out, '\n')); /* exactly one line */
    v = parse_line(out);

    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_int_equal(regexec(&re, get_str(v, "timestamp"), 0, NULL, 0), 0);
    regfree(&re);
    assert_true(YAJL_IS_INTEGER(get_any(v, "pid")));
    assert_int_equal(YAJL_GET_INTEGER(get_any(v, "pid")), getpid());
    assert_string_equal(get_str(v, "level"), "notice");
    assert_string_equal(get_str(v, "program"), "unit");
    assert_string_equal(get_str(v, "module"), "cutover");
    assert_string_equal(get_str(v, "event"), "cutover.step");
    assert_string_equal(get_str(v, "message"), "step freeze done");
    assert_string_equal(get_str(v, "table"), "app.users");
    assert_int_equal(YAJL_GET_INTEGER(get_any(v, "lsn")), -5);
    /* uint64 max is written as a number, exactly */
    assert_true(YAJL_IS_NUMBER(get_any(v, "docs")));
    assert_string_equal(YAJL_GET_NUMBER(get_any(v, "docs")), "18446744073709551615");
    assert_true(YAJL_GET_DOUBLE(get_any(v, "rate")) == 1.5);
    assert_true(YAJL_IS_TRUE(get_any(v, "ok")));
    assert_string_equal(get_str(v, "bad"), "NaN");
    yajl_tree_free(v);
    free(out);
}

static void
test_levels_filter(void **state)
{
    char *out;

    mg_log_set_level(MG_LOG_WARNING);
    assert_false(mg_log_enabled(MG_LOG_INFO));
    assert_true(mg_log_enabled(MG_LOG_ERROR));
    MG_LOG(MG_LOG_INFO, "core", "hidden");
    MG_LOG(MG_LOG_DEBUG, "core", "hidden");
    MG_LOG(MG_LOG_ERROR, "core", "shown");
    mg_log_set_level(MG_LOG_DEBUG);
    out = read_all();
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "shown"));
    free(out);
}

static void
test_level_and_format_parse(void **state)
{
    mg_log_level_t l;
    mg_log_format_t f;

    assert_true(mg_log_level_parse("warn", &l));
    assert_int_equal(l, MG_LOG_WARNING);
    assert_true(mg_log_level_parse("fatal", &l));
    assert_int_equal(l, MG_LOG_FATAL);
    assert_false(mg_log_level_parse("loud", &l));
    assert_true(mg_log_format_parse("text", &f));
    assert_int_equal(f, MG_LOG_FORMAT_TEXT);
    assert_false(mg_log_format_parse("xml", &f));
    assert_string_equal(mg_log_level_name(MG_LOG_NOTICE), "notice");
}

static void
test_secrets_redacted(void **state)
{
    char *out;
    yajl_val v;

    MG_LOG_EVENT(MG_LOG_INFO, "migrator", NULL,
                 MG_LOG_FIELDS(MG_LOG_STR("source", "mongodb://admin:topsecret@h1:27017/?x=1"),
                               MG_LOG_STR("target", "host=pg user=app password='p w'")),
                 "connecting to %s", "postgresql://app:alsosecret@pg:5432/db");
    out = read_all();
    assert_null(strstr(out, "topsecret"));
    assert_null(strstr(out, "alsosecret"));
    assert_null(strstr(out, "p w"));
    out[strlen(out) - 1] = '\0';
    v = parse_line(out);
    assert_string_equal(get_str(v, "source"), "mongodb://admin:" MG_REDACTED "@h1:27017/?x=1");
    assert_string_equal(get_str(v, "target"), "host=pg user=app password=" MG_REDACTED);
    yajl_tree_free(v);
    free(out);
}

static void
test_invalid_utf8_and_control_chars(void **state)
{
    char *out;
    yajl_val v;

    MG_LOG(MG_LOG_INFO, "core", "bad \xff\xfe bytes \x01 and \"quotes\"\nnewline");
    out = read_all();
    out[strlen(out) - 1] = '\0';
    assert_null(strchr(out, '\n'));
    v = parse_line(out);
    assert_string_equal(get_str(v, "message"),
                        "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes \x01 and \"quotes\"\nnewline");
    yajl_tree_free(v);
    free(out);
}

static void
test_long_message(void **state)
{
    char *big = malloc(5000);
    char *out;
    yajl_val v;

    memset(big, 'x', 4999);
    big[4999] = '\0';
    MG_LOG(MG_LOG_INFO, "core", "%s", big);
    out = read_all();
    out[strlen(out) - 1] = '\0';
    v = parse_line(out);
    assert_int_equal(strlen(get_str(v, "message")), 4999);
    yajl_tree_free(v);
    free(out);
    free(big);
}

static void
test_text_mode(void **state)
{
    char *out;

    mg_log_init("unit", MG_LOG_DEBUG, MG_LOG_FORMAT_TEXT);
    mg_log_set_stream(capture);
    MG_LOG_EVENT(MG_LOG_WARNING, "ha", "ha.transition",
                 MG_LOG_FIELDS(MG_LOG_STR("ha_state", "demoting old"), MG_LOG_INT("term", 3)),
                 "state changed");
    out = read_all();
    assert_non_null(strstr(out, "warning ha: state changed event=ha.transition "
                                "ha_state=\"demoting old\" term=3\n"));
    assert_int_not_equal(out[0], '{');
    free(out);
    mg_log_init("unit", MG_LOG_DEBUG, MG_LOG_FORMAT_JSON);
    mg_log_set_stream(capture);
}

static void
test_journald_priority_prefix(void **state)
{
    struct stat st;
    char js[64];
    char *out;

    assert_int_equal(fstat(fileno(capture), &st), 0);
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    mg_log_set_stream(capture); /* re-detects */
    MG_LOG(MG_LOG_ERROR, "core", "to the journal");
    MG_LOG(MG_LOG_INFO, "core", "info line");
    out = read_all();
    assert_memory_equal(out, "<3>{", 4);
    assert_non_null(strstr(out, "\n<6>{"));
    free(out);

    /* A JOURNAL_STREAM naming another file means no prefix. */
    setenv("JOURNAL_STREAM", "1:1", 1);
    mg_log_set_stream(capture);
    MG_LOG(MG_LOG_ERROR, "core", "not the journal");
    out = read_all();
    assert_int_equal(out[0], '{');
    free(out);
    unsetenv("JOURNAL_STREAM");
    mg_log_set_stream(capture);
}

static void
test_mongoc_bridge(void **state)
{
    char *out;
    yajl_val v;

    mongoc_init();
    mg_log_install_mongoc_handler();
    mongoc_log(MONGOC_LOG_LEVEL_WARNING, "cluster", "server %s unreachable", "h1:27017");
    out = read_all();
    out[strlen(out) - 1] = '\0';
    v = parse_line(out);
    assert_string_equal(get_str(v, "module"), "mongoc");
    assert_string_equal(get_str(v, "level"), "warning");
    assert_string_equal(get_str(v, "log_domain"), "cluster");
    assert_string_equal(get_str(v, "message"), "server h1:27017 unreachable");
    yajl_tree_free(v);
    free(out);
    mongoc_log_set_handler(NULL, NULL);
    mongoc_cleanup();
}

static void
test_log_error(void **state)
{
    mg_error_t e;
    char *out;
    yajl_val v;

    mg_error_set(&e, MG_ERROR_DOMAIN_PG, 0, "could not insert into \"t\"");
    snprintf(e.sqlstate, sizeof(e.sqlstate), "23505");
    mg_log_error(MG_LOG_ERROR, "migrator", &e);
    out = read_all();
    out[strlen(out) - 1] = '\0';
    v = parse_line(out);
    assert_string_equal(get_str(v, "sqlstate"), "23505");
    assert_string_equal(get_str(v, "domain"), "pg");
    assert_string_equal(get_str(v, "message"), "could not insert into \"t\"");
    yajl_tree_free(v);
    free(out);
}

#define THREADS 4
#define LINES   500

static void *
writer(void *arg)
{
    for (int i = 0; i < LINES; i++)
        MG_LOG_EVENT(MG_LOG_INFO, "core", NULL,
                     MG_LOG_FIELDS(MG_LOG_INT("thread", (intptr_t)arg), MG_LOG_INT("i", i)),
                     "line %d of a concurrent writer with some padding text", i);
    return NULL;
}

static void
test_concurrent_lines_not_interleaved(void **state)
{
    pthread_t t[THREADS];
    char *out, *save = NULL;
    int n = 0;

    for (intptr_t i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, writer, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    out = read_all();
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        yajl_val v = parse_line(line);
        yajl_tree_free(v);
        n++;
    }
    assert_int_equal(n, THREADS * LINES);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_line_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels_filter, setup, teardown),
        cmocka_unit_test(test_level_and_format_parse),
        cmocka_unit_test_setup_teardown(test_secrets_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_and_control_chars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journald_priority_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mongoc_bridge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lines_not_interleaved, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
