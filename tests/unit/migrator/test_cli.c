/*
 * tests/unit/migrator/test_cli.c - the `migrate` command tree without a
 * server: every command is in --help and answers its own --help from its
 * options table; bad options, combinations and arguments are refused with
 * exit code 2 before anything is opened; an error is printed exactly once
 * (one plain line, never also as a JSON log line); what each command needs
 * opened; and the cutover's in-process verification runs with the same
 * defaults as `migrate validate`.
 */
#include "mg/core.h"
#include "mg/migrator.h"
#include "mg/validate.h"

#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

typedef struct {
    int rc;
    char out[16384];
    char err[8192];
} result_t;

/* run runs migrate with argv (NULL-terminated, without the program) and captures its output. */
static void
run(result_t *r, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    FILE *o = tmpfile(), *e = tmpfile();
    int so = dup(STDOUT_FILENO), se = dup(STDERR_FILENO);
    size_t n;

    argv[argc++] = "migrate";
    argv[argc++] = "--log-format=json";
    for (int i = 0; args[i] != NULL; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    dup2(fileno(o), STDOUT_FILENO);
    dup2(fileno(e), STDERR_FILENO);
    mg_log_set_stream(NULL);
    r->rc = mg_migrator_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, STDOUT_FILENO);
    dup2(se, STDERR_FILENO);
    close(so);
    close(se);
    rewind(o);
    rewind(e);
    n = fread(r->out, 1, sizeof(r->out) - 1, o);
    r->out[n] = '\0';
    n = fread(r->err, 1, sizeof(r->err) - 1, e);
    r->err[n] = '\0';
    fclose(o);
    fclose(e);
}

/* lines counts the lines of s that are not JSON log lines below level error. */
static int
error_lines(const char *s)
{
    int n = 0;

    for (const char *p = s; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        bool json = len > 0 && p[0] == '{';
        bool err = memmem(p, len, "\"level\":\"error\"", 15) != NULL;
        if (!json || err)
            n++;
        p += len + (nl ? 1 : 0);
    }
    return n;
}

static const char *const commands[] = {"init",    "sync",     "status",   "validate",
                                       "cutover", "fallback", "translate"};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
test_help_lists_every_command_and_its_options(void **state)
{
    result_t top, r;
    const char *targs[] = {"--help", NULL};

    run(&top, targs);
    assert_int_equal(top.rc, MG_EXIT_OK);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char line[64];
        const char *args[] = {commands[i], "--help", NULL};
        snprintf(line, sizeof(line), "\n  %-12s ", commands[i]);
        assert_non_null(strstr(top.out, line));
        run(&r, args);
        assert_int_equal(r.rc, MG_EXIT_OK);
        assert_memory_equal(r.out, "usage: migrate ", 15);
        assert_non_null(strstr(r.out, "--target URI"));
        assert_non_null(strstr(r.out, "--state-schema NAME"));
        assert_non_null(strstr(r.out, "--config FILE"));
        assert_string_equal(r.err, "");
    }
}

/* refused runs args and checks: exit 2, exactly one error line holding want. */
static void
refused(const char *const *args, const char *want)
{
    result_t r;

    run(&r, args);
    assert_int_equal(r.rc, MG_EXIT_USAGE);
    assert_int_equal(error_lines(r.err), 1);
    if (strstr(r.err, want) == NULL)
        fail_msg("stderr has no \"%s\": %s", want, r.err);
    assert_string_equal(r.out, "");
}

static void
test_bad_options_are_refused_before_anything_opens(void **state)
{
    const char *a1[] = {"init", "--source", "mongodb://h", "--target", "t", "--reset", NULL};
    const char *a2[] = {"init", "--source",  "mongodb://h", "--target",
                        "t",    "--include", "nodot",       NULL};
    const char *a3[] = {"init", "--source",        "mongodb://h", "--target",
                        "t",    "--target-schema", "Bad Name",    NULL};
    const char *a4[] = {"validate", "--source", "s", "--target", "t", "--full", "--changed", NULL};
    const char *a5[] = {"validate", "--source", "s", "--target", "t", "--every", "1s", NULL};
    const char *a6[] = {"cutover", "--source", "s", "--target", "t", "--freeze", "freeze", NULL};
    const char *a7[] = {"sync", "--target", "t", NULL};
    const char *a8[] = {"status", "--target", "t", "extra", NULL};
    const char *a9[] = {"sync", "--source", "s", "--target", "t", "--workers", "0", NULL};

    refused(a1, "migrate init: --reset drops the tables and state of the earlier init; add "
                "--yes to confirm\n");
    refused(a2, "migrate init: invalid include pattern \"nodot\"");
    refused(a3, "invalid value for option \"target_schema\": \"Bad Name\"");
    refused(a4, "migrate validate: --full and --changed exclude each other\n");
    refused(a5, "migrate validate: --every repeats --changed runs; add --changed\n");
    refused(a6, "migrate cutover: invalid --freeze \"freeze\": write-block, hook:CMD or none\n");
    refused(a7, "migrate sync: missing required option \"source\"");
    refused(a8, "migrate status: unexpected argument \"extra\"\n");
    refused(a9, "migrate sync: invalid value for option \"workers\"");
}

static void
test_a_failure_is_printed_once_with_its_exit_code(void **state)
{
    const char *args[] = {"status", "--target", "nosuchoption=1 password=Secr3t", NULL};
    result_t r;

    run(&r, args);
    assert_int_equal(r.rc, MG_EXIT_TARGET);
    assert_int_equal(error_lines(r.err), 1);
    assert_non_null(strstr(r.err, "migrate status: could not connect to target \""));
    assert_null(strstr(r.err, "Secr3t")); /* the message is redacted */
    assert_string_equal(r.out, "");
}

static const mg_cmd_t *
entry(const char *name)
{
    const mg_cli_t *cli = mg_migrator_cli();

    for (size_t i = 0; i < cli->ncmds; i++)
        if (strcmp(cli->cmds[i]->name, name) == 0)
            return cli->cmds[i];
    fail_msg("no command %s", name);
    return NULL;
}

static void
test_what_each_command_needs(void **state)
{
    const unsigned src = MG_CMD_NEEDS_SOURCE, tgt = MG_CMD_NEEDS_TARGET, st = MG_CMD_NEEDS_STATE,
                   sig = MG_CMD_SIGNALS;

    assert_int_equal(mg_migrator_cli()->ncmds, NCOMMANDS);
    assert_int_equal(entry("init")->needs, src | tgt); /* the state may not exist yet */
    assert_int_equal(entry("sync")->needs, src | st | sig);
    assert_int_equal(entry("status")->needs, tgt | st);
    assert_int_equal(entry("validate")->needs, tgt | st | sig);
    assert_int_equal(entry("cutover")->needs, src | st | sig);
    assert_int_equal(entry("fallback")->needs, src | st | sig);
    assert_int_equal(entry("translate")->needs, tgt | st); /* no source: nothing runs on it */
    for (size_t i = 0; i < NCOMMANDS; i++)
        assert_int_equal(entry(commands[i])->max_args, strcmp(commands[i], "translate") == 0);
    assert_int_equal(entry("translate")->min_args, 1);
}

/* option_default returns the default text of option name of command cmd. */
static const char *
option_default(const char *cmd, const char *name)
{
    const mg_cmd_t *c = entry(cmd);

    for (size_t i = 0; i < c->noptions; i++)
        if (strcmp(c->options[i].name, name) == 0)
            return c->options[i].default_value;
    fail_msg("%s has no option %s", cmd, name);
    return NULL;
}

static void
test_the_cutover_verifies_with_validate_defaults(void **state)
{
    mg_validate_settings_t s;
    int64_t bytes;

    mg_validate_settings_init(&s);
    assert_int_equal(strtoll(option_default("validate", "segments"), NULL, 10), s.segments);
    assert_int_equal(strtoll(option_default("validate", "max_named"), NULL, 10), s.max_named);
    assert_int_equal(strtoll(option_default("validate", "max_fields"), NULL, 10), s.max_fields);
    assert_int_equal(strtoll(option_default("validate", "batch_docs"), NULL, 10), s.batch_docs);
    assert_int_equal(strtoll(option_default("validate", "source_threads"), NULL, 10),
                     s.source_threads);
    assert_int_equal(strtoll(option_default("validate", "shadow_repeat"), NULL, 10),
                     s.shadow_repeat);
    assert_int_equal(strtoll(option_default("validate", "profiler_max"), NULL, 10), s.profiler_max);
    assert_true(mg_parse_size_bytes(option_default("validate", "drilldown_memory"), &bytes));
    assert_int_equal(bytes, s.drilldown_bytes);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_every_command_and_its_options),
        cmocka_unit_test(test_bad_options_are_refused_before_anything_opens),
        cmocka_unit_test(test_a_failure_is_printed_once_with_its_exit_code),
        cmocka_unit_test(test_what_each_command_needs),
        cmocka_unit_test(test_the_cutover_verifies_with_validate_defaults),
    };
    int rc;

    /* the environment must not choose options for the tests */
    unsetenv("MIGRATE_SOURCE");
    unsetenv("MIGRATE_TARGET");
    unsetenv("MIGRATE_CONFIG");
    mongoc_init();
    mg_log_init("migrate", MG_LOG_INFO, MG_LOG_FORMAT_JSON);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    mongoc_cleanup();
    return rc;
}
