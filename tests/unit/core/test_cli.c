/*
 * tests/unit/core/test_cli.c - the command tree: dispatch, help that lists
 * exactly the table's commands, version, unknown commands, and the global
 * --log-level/--log-format options taken from anywhere on the line.
 */
#include "mg/core.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static int last_argc;
static char last_argv1[64];

static int
run_copy(const mg_cli_command_t *command, int argc, char **argv)
{
    last_argc = argc;
    snprintf(last_argv1, sizeof(last_argv1), "%s", argc > 1 ? argv[1] : "");
    assert_string_equal(argv[0], command->name);
    return 42;
}

static const mg_cli_command_t commands[] = {
    {"copy", "copy things", "[options]", run_copy},
};

static const mg_cli_t cli = {
    .program = "prog",
    .env_prefix = "PROGTEST_",
    .description = "A test program.",
    .commands = commands,
    .ncommands = 1,
};

/* capture_stdout runs mg_cli_main with stdout sent to a temp file. */
static int
run_captured(int argc, char **argv, char *out, size_t outsz)
{
    FILE *tmp = tmpfile();
    int saved = dup(STDOUT_FILENO);
    int rc;
    size_t n;

    fflush(stdout);
    dup2(fileno(tmp), STDOUT_FILENO);
    rc = mg_cli_main(&cli, argc, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    n = fread(out, 1, outsz - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return rc;
}

static void
test_dispatch(void **state)
{
    char *argv[] = {"prog", "copy", "--fast", NULL};

    last_argc = 0;
    assert_int_equal(mg_cli_main(&cli, 3, argv), 42);
    assert_int_equal(last_argc, 2);
    assert_string_equal(last_argv1, "--fast");
}

static void
test_help_lists_table(void **state)
{
    char out[4096];
    char *argv[] = {"prog", "--help", NULL};

    assert_int_equal(run_captured(2, argv, out, sizeof(out)), MG_EXIT_OK);
    assert_non_null(strstr(out, "usage: prog <command>"));
    assert_non_null(strstr(out, "  copy         copy things\n"));
    assert_non_null(strstr(out, "  help "));
    assert_non_null(strstr(out, "  version "));
    assert_non_null(strstr(out, "[env PROGTEST_LOG_LEVEL]"));
}

static void
test_help_command_runs_command_help(void **state)
{
    char *argv[] = {"prog", "help", "copy", NULL};

    assert_int_equal(mg_cli_main(&cli, 3, argv), 42);
    assert_string_equal(last_argv1, "--help");
}

static void
test_version(void **state)
{
    char out[1024];
    char *argv[] = {"prog", "--version", NULL};

    assert_int_equal(run_captured(2, argv, out, sizeof(out)), MG_EXIT_OK);
    assert_memory_equal(out, "prog ", 5);
}

static void
test_unknown_and_missing_command(void **state)
{
    char *argv[] = {"prog", "cpoy", NULL};
    char *argv2[] = {"prog", "help", "nope", NULL};
    char *argv3[] = {"prog", NULL};

    assert_int_equal(mg_cli_main(&cli, 2, argv), MG_EXIT_USAGE);
    assert_int_equal(mg_cli_main(&cli, 3, argv2), MG_EXIT_USAGE);
    assert_int_equal(mg_cli_main(&cli, 1, argv3), MG_EXIT_USAGE);
}

static void
test_take_log_options(void **state)
{
    char *argv[] = {"prog", "--log-level", "debug",       "copy", "--log-format=text",
                    "x",    "--",          "--log-level", NULL};
    int argc = 8;
    mg_error_t e;

    assert_true(mg_cli_take_log_options("prog", "PROGTEST_", &argc, argv, &e));
    assert_int_equal(argc, 5);
    assert_string_equal(argv[1], "copy");
    assert_string_equal(argv[2], "x");
    assert_string_equal(argv[3], "--"); /* after "--" nothing is taken */
    assert_string_equal(argv[4], "--log-level");
    assert_null(argv[5]);
    assert_true(mg_log_enabled(MG_LOG_DEBUG));
}

static void
test_log_options_errors(void **state)
{
    char *argv[] = {"prog", "--log-level=chatty", NULL};
    char *argv2[] = {"prog", "--log-format", NULL};
    int argc = 2;
    mg_error_t e;

    assert_false(mg_cli_take_log_options("prog", "PROGTEST_", &argc, argv, &e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_CONFIG);
    assert_non_null(strstr(e.message, "\"log-level\" from flag --log-level: \"chatty\""));
    assert_int_equal(argc, 2);

    assert_false(mg_cli_take_log_options("prog", "PROGTEST_", &argc, argv2, &e));
    assert_non_null(strstr(e.message, "\"--log-format\" needs a value"));

    setenv("PROGTEST_LOG_FORMAT", "yaml", 1);
    char *argv3[] = {"prog", "copy", NULL};
    argc = 2;
    assert_false(mg_cli_take_log_options("prog", "PROGTEST_", &argc, argv3, &e));
    assert_non_null(strstr(e.message, "from env PROGTEST_LOG_FORMAT: \"yaml\""));
    unsetenv("PROGTEST_LOG_FORMAT");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_help_lists_table),
        cmocka_unit_test(test_help_command_runs_command_help),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_unknown_and_missing_command),
        cmocka_unit_test(test_take_log_options),
        cmocka_unit_test(test_log_options_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
