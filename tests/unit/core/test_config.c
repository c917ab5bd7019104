/*
 * tests/unit/core/test_config.c - the config loader: precedence (defaults <
 * file < env < flags), every type and bound, and every error path, each
 * error naming the option, its source and what was expected.
 */
#include "mg/core.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

typedef struct {
    char *source;
    char *password;
    int64_t workers;
    bool follow;
    int64_t lag_ms;
    int64_t batch_bytes;
    int fidelity;
    mg_strlist_t include;
    int64_t etcd_ttl;
    char *name;
} conf_t;

static const char *const fidelity_choices[] = {"relaxed", "exact", NULL};

static const mg_config_option_t options[] = {
    {.name = "source",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(conf_t, source),
     .metavar = "URI",
     .help = "MongoDB connection string",
     .short_flag = 's'},
    {.name = "password",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(conf_t, password),
     .secret = true,
     .help = "a secret"},
    {.name = "workers",
     .type = MG_CONFIG_INT,
     .offset = offsetof(conf_t, workers),
     .default_value = "4",
     .min = 1,
     .max = 64,
     .help = "parallel workers",
     .short_flag = 'j'},
    {.name = "follow",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(conf_t, follow),
     .default_value = "false",
     .help = "keep following"},
    {.name = "max_lag",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(conf_t, lag_ms),
     .default_value = "1s",
     .min = 0,
     .max = 3600000,
     .help = "lag threshold"},
    {.name = "batch_bytes",
     .type = MG_CONFIG_SIZE,
     .offset = offsetof(conf_t, batch_bytes),
     .default_value = "16MB",
     .min = 1024,
     .max = 1LL << 30,
     .help = "batch cap"},
    {.name = "type_fidelity",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(conf_t, fidelity),
     .default_value = "relaxed",
     .choices = fidelity_choices,
     .help = "number mapping"},
    {.name = "include",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(conf_t, include),
     .help = "namespaces"},
    {.name = "etcd.ttl",
     .type = MG_CONFIG_INT,
     .offset = offsetof(conf_t, etcd_ttl),
     .default_value = "10",
     .min = 1,
     .max = 600,
     .help = "lease ttl"},
    {.name = "name",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(conf_t, name),
     .required = true,
     .help = "node name"},
};
#define NOPT (sizeof(options) / sizeof(options[0]))

typedef struct {
    conf_t conf;
    mg_config_t *config;
    mg_error_t error;
    char path[64];
    int first_positional;
} fixture_t;

static int
setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    f->config = mg_config_new(options, NOPT, &f->conf, "MIGRATE_");
    assert_non_null(f->config);
    mg_error_clear(&f->error);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture_t *f = *state;

    mg_config_destroy(f->config);
    if (f->path[0] != '\0')
        unlink(f->path);
    free(f);
    return 0;
}

/* write_file writes text to a fresh temp file and stores its path. */
static const char *
write_file(fixture_t *f, const char *text)
{
    int fd;

    snprintf(f->path, sizeof(f->path), "/tmp/mg-test-config-XXXXXX");
    fd = mkstemp(f->path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return f->path;
}

/* load runs the loader with a NULL-terminated argv list and env list. */
static bool
load(fixture_t *f, char **argv, char **envp)
{
    int argc = 0;

    while (argv[argc] != NULL)
        argc++;
    return mg_config_load(f->config, argc, argv, envp, &f->first_positional, &f->error);
}

#define ARGV(...) ((char *[]){"cmd", __VA_ARGS__, NULL})
#define NOARGS    ((char *[]){"cmd", NULL})
#define ENV(...)  ((char *[]){__VA_ARGS__, NULL})
#define NOENV     ((char *[]){NULL})

static void
test_defaults(void **state)
{
    fixture_t *f = *state;

    assert_true(load(f, ARGV("--name", "n1"), NOENV));
    assert_int_equal(f->conf.workers, 4);
    assert_false(f->conf.follow);
    assert_int_equal(f->conf.lag_ms, 1000);
    assert_int_equal(f->conf.batch_bytes, 16 * 1024 * 1024);
    assert_int_equal(f->conf.fidelity, 0);
    assert_int_equal(f->conf.etcd_ttl, 10);
    assert_null(f->conf.source);
    assert_int_equal(f->conf.include.count, 0);
    assert_int_equal(mg_config_source(f->config, "workers"), MG_CONFIG_SOURCE_DEFAULT);
    assert_string_equal(mg_config_source_describe(f->config, "workers"), "default");
    assert_int_equal(mg_config_source(f->config, "source"), MG_CONFIG_SOURCE_UNSET);
    assert_null(mg_config_source_describe(f->config, "nope"));
}

static void
test_precedence_file_env_flag(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "{\n"
                                     "  \"workers\": 8,\n"
                                     "  \"follow\": true,\n"
                                     "  \"max_lag\": \"5s\",\n"
                                     "  \"source\": \"mongodb://file\",\n"
                                     "  \"etcd\": { \"ttl\": 30 },\n"
                                     "  \"name\": \"from-file\"\n"
                                     "}\n");
    char cfg[128];

    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    char **argv = ARGV(cfg, "--workers", "16", "positional");
    assert_true(
        load(f, argv,
             ENV("MIGRATE_WORKERS=12", "MIGRATE_SOURCE=mongodb://env", "MIGRATE_MAX_LAG=250ms")));
    /* flag beats env beats file beats default */
    assert_int_equal(f->conf.workers, 16);
    assert_string_equal(mg_config_source_describe(f->config, "workers"), "flag --workers");
    assert_string_equal(f->conf.source, "mongodb://env");
    assert_string_equal(mg_config_source_describe(f->config, "source"), "env MIGRATE_SOURCE");
    assert_int_equal(f->conf.lag_ms, 250);
    assert_true(f->conf.follow);
    char expect[160];
    snprintf(expect, sizeof(expect), "file %s line 3", path);
    assert_string_equal(mg_config_source_describe(f->config, "follow"), expect);
    assert_int_equal(f->conf.etcd_ttl, 30);
    assert_string_equal(f->conf.name, "from-file");
    assert_int_equal(mg_config_source(f->config, "name"), MG_CONFIG_SOURCE_FILE);
    /* the positional argument is left for the caller */
    assert_int_equal(f->first_positional, 4);
    assert_string_equal(argv[f->first_positional], "positional");
}

static void
test_config_path_from_env(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "{\"etcd.ttl\": 42, \"name\": \"x\"}");
    char env[128];

    snprintf(env, sizeof(env), "MIGRATE_CONFIG=%s", path);
    assert_true(load(f, NOARGS, ENV(env)));
    assert_int_equal(f->conf.etcd_ttl, 42); /* dotted key at top level works too */
}

static void
test_bool_flags_and_short_flags(void **state)
{
    fixture_t *f = *state;

    assert_true(load(f, ARGV("--follow", "-j", "3", "-s", "mongodb://x", "--name=n"),
                     ENV("MIGRATE_FOLLOW=off")));
    assert_true(f->conf.follow);
    assert_int_equal(f->conf.workers, 3);
    assert_string_equal(f->conf.source, "mongodb://x");
    assert_true(load(f, ARGV("--no-follow", "--name=n"), ENV("MIGRATE_FOLLOW=yes")));
    assert_false(f->conf.follow);
    assert_string_equal(mg_config_source_describe(f->config, "follow"), "flag --no-follow");
    assert_true(load(f, ARGV("--name=n"), ENV("MIGRATE_FOLLOW=YES")));
    assert_true(f->conf.follow);
}

static void
test_list_semantics(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "{\"include\": [\"a.*\", \"b.c\"], \"name\": \"n\"}");
    char cfg[128];

    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    assert_true(load(f, ARGV(cfg), NOENV));
    assert_int_equal(f->conf.include.count, 2);
    assert_string_equal(f->conf.include.items[1], "b.c");

    /* env replaces the file's list, comma-separated, spaces trimmed */
    assert_true(load(f, ARGV(cfg), ENV("MIGRATE_INCLUDE= x.y , z.* ,")));
    assert_int_equal(f->conf.include.count, 2);
    assert_string_equal(f->conf.include.items[0], "x.y");
    assert_string_equal(f->conf.include.items[1], "z.*");

    /* the first flag replaces, later flags append */
    assert_true(
        load(f, ARGV(cfg, "--include", "q.1", "--include", "q.2"), ENV("MIGRATE_INCLUDE=x.y")));
    assert_int_equal(f->conf.include.count, 2);
    assert_string_equal(f->conf.include.items[0], "q.1");
    assert_string_equal(f->conf.include.items[1], "q.2");
}

static void
test_enum_size_duration(void **state)
{
    fixture_t *f = *state;

    assert_true(load(
        f,
        ARGV("--type-fidelity", "exact", "--batch-bytes", "64kB", "--max-lag", "2m", "--name", "n"),
        NOENV));
    assert_int_equal(f->conf.fidelity, 1);
    assert_int_equal(f->conf.batch_bytes, 65536);
    assert_int_equal(f->conf.lag_ms, 120000);
}

/* expect_error loads and checks that the error message contains each needle. */
static void
expect_error(fixture_t *f, char **argv, char **envp, const char *n1, const char *n2)
{
    assert_false(load(f, argv, envp));
    assert_int_equal(f->error.domain, MG_ERROR_DOMAIN_CONFIG);
    if (strstr(f->error.message, n1) == NULL || (n2 && strstr(f->error.message, n2) == NULL))
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", f->error.message, n1, n2 ? n2 : "");
    assert_int_equal(mg_exit_code_for_error(&f->error), MG_EXIT_USAGE);
}

static void
test_error_bad_int_from_env(void **state)
{
    fixture_t *f = *state;

    expect_error(f, NOARGS, ENV("MIGRATE_WORKERS=many"),
                 "invalid value for option \"workers\" from env MIGRATE_WORKERS",
                 "\"many\" is not an integer");
}

static void
test_error_out_of_range_flag(void **state)
{
    fixture_t *f = *state;

    expect_error(f, ARGV("--workers", "0"), NOENV, "option \"workers\" from flag --workers",
                 "between 1 and 64");
    expect_error(f, ARGV("--max-lag", "2h"), NOENV, "\"max_lag\" from flag --max-lag",
                 "between 0 and 3600000");
}

static void
test_error_bad_duration_size_bool_enum(void **state)
{
    fixture_t *f = *state;

    expect_error(f, ARGV("--max-lag", "soon"), NOENV, "\"soon\" is not a duration", NULL);
    expect_error(f, ARGV("--batch-bytes", "10 parsecs"), NOENV, "is not a size", NULL);
    expect_error(f, NOARGS, ENV("MIGRATE_FOLLOW=maybe"), "env MIGRATE_FOLLOW", "is not a boolean");
    expect_error(f, ARGV("--type-fidelity", "fuzzy"), NOENV,
                 "\"fuzzy\" is not one of:", "relaxed exact");
}

static void
test_error_unknown_flag_and_missing_value(void **state)
{
    fixture_t *f = *state;

    expect_error(f, ARGV("--wrkers", "3"), NOENV, "unknown option \"--wrkers\"", NULL);
    expect_error(f, ARGV("-q"), NOENV, "unknown option \"-q\"", NULL);
    expect_error(f, ARGV("--workers"), NOENV, "option \"--workers\" needs a value", NULL);
}

static void
test_error_missing_required(void **state)
{
    fixture_t *f = *state;

    expect_error(f, NOARGS, NOENV, "missing required option \"name\"",
                 "flag --name, env MIGRATE_NAME");
}

static void
test_error_file_unknown_key_with_line(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "{\n  \"workers\": 2,\n\n  \"wrokers\": 3\n}\n");
    char cfg[128], expect[160];

    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    snprintf(expect, sizeof(expect), "unknown option \"wrokers\" in file %s line 4", path);
    expect_error(f, ARGV(cfg), NOENV, expect, NULL);
}

static void
test_error_file_wrong_type(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "{\"workers\": \"eight\"}");
    char cfg[128];

    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    expect_error(f, ARGV(cfg), NOENV, "option \"workers\" from file",
                 "expected an integer, got a string");

    path = write_file(f, "{\"workers\": {\"a\": 1}}");
    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    expect_error(f, ARGV(cfg), NOENV, "expected an integer, got an object", NULL);

    path = write_file(f, "{\"include\": [\"a\", 3]}");
    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    expect_error(f, ARGV(cfg), NOENV, "option \"include\"", "got a number in the list");

    path = write_file(f, "{\"follow\": [true]}");
    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    expect_error(f, ARGV(cfg), NOENV, "option \"follow\"", "got a list");
}

static void
test_error_file_out_of_range(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "{\"etcd\": {\n \"ttl\": 9999}}");
    char cfg[128], expect[160];

    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    snprintf(expect, sizeof(expect), "\"etcd.ttl\" from file %s line 2", path);
    expect_error(f, ARGV(cfg), NOENV, expect, "between 1 and 600");
}

static void
test_error_malformed_json(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "{\n  \"workers\": 2,\n  \"follow\": tru\n}\n");
    char cfg[128], expect[160];

    snprintf(cfg, sizeof(cfg), "--config=%s", path);
    snprintf(expect, sizeof(expect), "could not parse config file \"%s\" at line 3", path);
    expect_error(f, ARGV(cfg), NOENV, expect, NULL);
}

static void
test_error_missing_file(void **state)
{
    fixture_t *f = *state;

    assert_false(load(f, ARGV("--config", "/nonexistent/mg.json"), NOENV));
    assert_int_equal(f->error.domain, MG_ERROR_DOMAIN_SYSTEM);
    assert_string_equal(f->error.message,
                        "could not open config file \"/nonexistent/mg.json\": No such file or "
                        "directory");
}

static void
test_secret_never_echoed(void **state)
{
    fixture_t *f = *state;
    static const mg_config_option_t secret_int[] = {
        {.name = "pin", .type = MG_CONFIG_INT, .offset = 0, .secret = true, .min = 1, .max = 9},
    };
    int64_t pin = 0;
    mg_config_t *c = mg_config_new(secret_int, 1, &pin, "MIGRATE_");
    mg_error_t e;
    char *argv[] = {"cmd", "--pin", "12345", NULL};

    assert_false(mg_config_load(c, 3, argv, NOENV, NULL, &e));
    assert_null(strstr(e.message, "12345"));
    assert_non_null(strstr(e.message, MG_REDACTED));
    mg_config_destroy(c);
    (void)f;
}

static void
test_dump_json_redacts(void **state)
{
    fixture_t *f = *state;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);

    assert_true(load(f,
                     ARGV("--password", "hunter2", "--source", "mongodb://u:pw@h/", "--name", "n",
                          "--include", "a.b"),
                     NOENV));
    mg_config_dump_json(f->config, m);
    fclose(m);
    assert_null(strstr(buf, "hunter2"));
    assert_null(strstr(buf, ":pw@"));
    assert_non_null(strstr(buf, "\"password\":\"" MG_REDACTED "\""));
    assert_non_null(strstr(buf, "\"workers\":4"));
    assert_non_null(strstr(buf, "\"include\":[\"a.b\"]"));
    assert_non_null(strstr(buf, "\"type_fidelity\":\"relaxed\""));
    free(buf);
}

static void
test_help_lists_flags_and_env(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);

    mg_config_print_help(options, NOPT, "MIGRATE_", m);
    fclose(m);
    assert_non_null(strstr(buf, "-j, --workers VALUE"));
    assert_non_null(strstr(buf, "[default: 4] [env MIGRATE_WORKERS]"));
    assert_non_null(strstr(buf, "--[no-]follow"));
    assert_non_null(strstr(buf, "--etcd-ttl"));
    assert_non_null(strstr(buf, "[env MIGRATE_ETCD_TTL]"));
    assert_non_null(strstr(buf, "(relaxed|exact)"));
    assert_non_null(strstr(buf, "--name VALUE"));
    assert_non_null(strstr(buf, "[required]"));
    free(buf);
}

static void
test_parse_helpers(void **state)
{
    int64_t v;

    assert_true(mg_parse_duration_ms("1500", &v));
    assert_int_equal(v, 1500);
    assert_true(mg_parse_duration_ms("3h", &v));
    assert_int_equal(v, 3 * 3600 * 1000);
    assert_false(mg_parse_duration_ms("-1s", &v));
    assert_false(mg_parse_duration_ms("", &v));
    assert_false(mg_parse_duration_ms("99999999999999999999d", &v));
    assert_true(mg_parse_size_bytes("1GiB", &v));
    assert_int_equal(v, 1024LL * 1024 * 1024);
    assert_false(mg_parse_size_bytes("9999999999999TB", &v));
    assert_false(mg_parse_size_bytes("12 bananas", &v));
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_precedence_file_env_flag),
        T(test_config_path_from_env),
        T(test_bool_flags_and_short_flags),
        T(test_list_semantics),
        T(test_enum_size_duration),
        T(test_error_bad_int_from_env),
        T(test_error_out_of_range_flag),
        T(test_error_bad_duration_size_bool_enum),
        T(test_error_unknown_flag_and_missing_value),
        T(test_error_missing_required),
        T(test_error_file_unknown_key_with_line),
        T(test_error_file_wrong_type),
        T(test_error_file_out_of_range),
        T(test_error_malformed_json),
        T(test_error_missing_file),
        T(test_secret_never_echoed),
        T(test_dump_json_redacts),
        cmocka_unit_test(test_help_lists_flags_and_env),
        cmocka_unit_test(test_parse_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
