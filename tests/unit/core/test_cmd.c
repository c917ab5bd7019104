/*
 * tests/unit/core/test_cmd.c - the command framework: options from
 * defaults < file < environment < flags, argument checks, subcommands,
 * --help, acquire/release around the command, signals turned into a stop
 * request, and the final error printed exactly once.
 */
#include "mg/core.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

typedef struct {
    char *source;
    int64_t workers;
    bool fast;
} opts_t;

static const mg_config_option_t options[] = {
    {.name = "source",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(opts_t, source),
     .required = true,
     .metavar = "URI",
     .help = "where from"},
    {.name = "workers",
     .type = MG_CONFIG_INT,
     .offset = offsetof(opts_t, workers),
     .default_value = "2",
     .min = 1,
     .max = 8,
     .metavar = "N",
     .help = "how many"},
    {.name = "fast",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(opts_t, fast),
     .default_value = "false",
     .help = "go fast"},
};

/* what the last command saw */
static opts_t seen;
static int seen_nargs;
static char seen_path[64];
static int acquired, released, stop_seen;
static bool fail_acquire;

static int
copy_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const opts_t *o = ctx->opts;

    seen.workers = o->workers;
    seen.fast = o->fast;
    seen.source = o->source;
    seen_nargs = ctx->nargs;
    snprintf(seen_path, sizeof(seen_path), "%s", ctx->path);
    assert_non_null(ctx->resources);
    assert_string_equal(mg_cmd_option_string(ctx, "source"), o->source);
    assert_null(mg_cmd_option_string(ctx, "workers")); /* not a string option */
    if (o->workers == 7) {
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "could not copy \"x\": seven");
        return MG_EXIT_TARGET;
    }
    return MG_EXIT_OK;
}

static int
wait_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    raise(SIGINT);
    raise(SIGTERM);
    raise(SIGTERM);
    stop_seen = atomic_load(&ctx->stop);
    return mg_cmd_stopping(ctx) ? MG_EXIT_INTERRUPTED : MG_EXIT_OK;
}

static bool
check(const void *vo, mg_error_t *error)
{
    const opts_t *o = vo;

    if (o->fast && o->workers < 2)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "--fast needs --workers 2 or more");
    return true;
}

static bool
acquire(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    static int resource;

    acquired++;
    if (fail_acquire)
        return mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0, "could not connect to source");
    ctx->resources = &resource;
    return true;
}

static void
release(mg_cmd_ctx_t *ctx)
{
    released++;
}

static const mg_cmd_t cluster_up = {
    .name = "up",
    .summary = "start it",
    .usage = "--source URI [NAME]",
    .main = copy_main,
    .options = options,
    .noptions = 3,
    .opts_size = sizeof(opts_t),
    .needs = MG_CMD_NEEDS_STORE,
    .max_args = 1,
};
static const mg_cmd_t *const cluster_subs[] = {&cluster_up};

static const mg_cmd_t copy_cmd = {
    .name = "copy",
    .summary = "copy things",
    .usage = "--source URI [options]",
    .description = "Copy every thing.",
    .main = copy_main,
    .options = options,
    .noptions = 3,
    .opts_size = sizeof(opts_t),
    .needs = MG_CMD_NEEDS_SOURCE,
    .check = check,
};
static const mg_cmd_t wait_cmd = {
    .name = "wait",
    .summary = "wait for a signal",
    .usage = "",
    .main = wait_main,
    .opts_size = 1,
    .needs = MG_CMD_SIGNALS,
};
static const mg_cmd_t cluster_cmd = {
    .name = "cluster",
    .summary = "a group",
    .usage = "up | down",
    .subcommands = cluster_subs,
    .nsubcommands = 1,
};
static const mg_cmd_t *const cmds[] = {&copy_cmd, &wait_cmd, &cluster_cmd};

static const mg_cli_t cli = {
    .program = "prog",
    .env_prefix = "CMDTEST_",
    .cmds = cmds,
    .ncmds = 3,
    .acquire = acquire,
    .release = release,
};

/* run captures what prog writes on stdout and stderr. */
static int
run(int argc, char **argv, char *out, size_t outsz, char *err, size_t errsz)
{
    FILE *o = tmpfile(), *e = tmpfile();
    int so = dup(STDOUT_FILENO), se = dup(STDERR_FILENO);
    int rc;
    size_t n;

    fflush(stdout);
    fflush(stderr);
    dup2(fileno(o), STDOUT_FILENO);
    dup2(fileno(e), STDERR_FILENO);
    rc = mg_cli_main(&cli, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, STDOUT_FILENO);
    dup2(se, STDERR_FILENO);
    close(so);
    close(se);
    rewind(o);
    rewind(e);
    n = fread(out, 1, outsz - 1, o);
    out[n] = '\0';
    n = fread(err, 1, errsz - 1, e);
    err[n] = '\0';
    fclose(o);
    fclose(e);
    return rc;
}

static int
count(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void
test_options_precedence_and_hooks(void **state)
{
    char out[4096], err[4096];
    char path[] = "/tmp/mg_test_cmd.XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    const char *json = "{\"workers\": 3, \"fast\": true}";
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    acquired = released = 0;
    /* file < env < flag */
    setenv("CMDTEST_WORKERS", "4", 1);
    char *argv[] = {"prog", "copy", "--config", path, "--source", "s://x", NULL};
    assert_int_equal(run(6, argv, out, sizeof(out), err, sizeof(err)), MG_EXIT_OK);
    assert_int_equal(seen.workers, 4);
    assert_true(seen.fast);
    assert_string_equal(seen_path, "copy");
    char *argv3[] = {"prog", "copy", "--config", path, "--source=s://y", "--workers", "5", NULL};
    assert_int_equal(run(7, argv3, out, sizeof(out), err, sizeof(err)), MG_EXIT_OK);
    assert_int_equal(seen.workers, 5);
    unsetenv("CMDTEST_WORKERS");
    assert_int_equal(acquired, 2);
    assert_int_equal(released, 2);
    assert_string_equal(err, "");
    unlink(path);
}

static void
test_errors_are_printed_once(void **state)
{
    char out[4096], err[4096];

    /* the command's own failure: its exit code, one line naming program and command */
    char *argv[] = {"prog", "copy", "--source", "s", "--workers", "7", NULL};
    assert_int_equal(run(6, argv, out, sizeof(out), err, sizeof(err)), MG_EXIT_TARGET);
    assert_string_equal(err, "prog copy: could not copy \"x\": seven\n");
    /* a bad option: usage, nothing acquired */
    acquired = 0;
    char *argv2[] = {"prog", "copy", "--source", "s", "--workers", "9", NULL};
    assert_int_equal(run(6, argv2, out, sizeof(out), err, sizeof(err)), MG_EXIT_USAGE);
    assert_int_equal(count(err, "\n"), 1);
    assert_non_null(strstr(err, "prog copy: invalid value for option \"workers\""));
    assert_int_equal(acquired, 0);
    /* a missing required option */
    char *argv3[] = {"prog", "copy", NULL};
    assert_int_equal(run(2, argv3, out, sizeof(out), err, sizeof(err)), MG_EXIT_USAGE);
    assert_int_equal(count(err, "\n"), 1);
    assert_non_null(strstr(err, "missing required option \"source\""));
    /* a positional argument the command does not take */
    char *argv4[] = {"prog", "copy", "--source", "s", "extra", NULL};
    assert_int_equal(run(5, argv4, out, sizeof(out), err, sizeof(err)), MG_EXIT_USAGE);
    assert_string_equal(err, "prog copy: unexpected argument \"extra\"\n");
    /* the check of option combinations */
    char *argv5[] = {"prog", "copy", "--source", "s", "--fast", "--workers", "1", NULL};
    assert_int_equal(run(7, argv5, out, sizeof(out), err, sizeof(err)), MG_EXIT_USAGE);
    assert_string_equal(err, "prog copy: --fast needs --workers 2 or more\n");
    /* a failed acquire: its error, released anyway, main not run */
    fail_acquire = true;
    acquired = released = 0;
    seen_path[0] = '\0';
    char *argv6[] = {"prog", "copy", "--source", "s", NULL};
    assert_int_equal(run(4, argv6, out, sizeof(out), err, sizeof(err)), MG_EXIT_SOURCE);
    assert_string_equal(err, "prog copy: could not connect to source\n");
    assert_int_equal(acquired, 1);
    assert_int_equal(released, 1);
    assert_string_equal(seen_path, "");
    fail_acquire = false;
}

static void
test_help_and_subcommands(void **state)
{
    char out[8192], err[4096];

    char *argv[] = {"prog", "--help", NULL};
    assert_int_equal(run(2, argv, out, sizeof(out), err, sizeof(err)), MG_EXIT_OK);
    assert_non_null(strstr(out, "  copy         copy things\n"));
    assert_non_null(strstr(out, "  cluster      a group\n"));
    char *argv2[] = {"prog", "copy", "--workers", "bad", "--help", NULL};
    assert_int_equal(run(5, argv2, out, sizeof(out), err, sizeof(err)), MG_EXIT_OK);
    assert_non_null(strstr(out, "usage: prog copy --source URI [options]\n\nCopy every thing.\n"));
    assert_non_null(strstr(out, "--workers N"));
    assert_non_null(strstr(out, "[env CMDTEST_WORKERS]"));
    assert_non_null(strstr(out, "--config FILE"));
    char *argv3[] = {"prog", "help", "cluster", "up", NULL};
    assert_int_equal(run(4, argv3, out, sizeof(out), err, sizeof(err)), MG_EXIT_OK);
    assert_non_null(strstr(out, "usage: prog cluster up --source URI [NAME]\n"));
    char *argv4[] = {"prog", "cluster", "--help", NULL};
    assert_int_equal(run(3, argv4, out, sizeof(out), err, sizeof(err)), MG_EXIT_OK);
    assert_non_null(strstr(out, "commands:\n  up           start it\n"));
    /* a subcommand runs with its own options and path; one positional allowed */
    char *argv5[] = {"prog", "cluster", "up", "--source", "s", "node-1", NULL};
    assert_int_equal(run(6, argv5, out, sizeof(out), err, sizeof(err)), MG_EXIT_OK);
    assert_string_equal(seen_path, "cluster up");
    assert_int_equal(seen_nargs, 1);
    char *argv6[] = {"prog", "cluster", "sideways", NULL};
    assert_int_equal(run(3, argv6, out, sizeof(out), err, sizeof(err)), MG_EXIT_USAGE);
    assert_non_null(strstr(err, "unknown command \"cluster sideways\""));
    char *argv7[] = {"prog", "nope", NULL};
    assert_int_equal(run(2, argv7, out, sizeof(out), err, sizeof(err)), MG_EXIT_USAGE);
}

static void
test_signals_become_a_stop_request(void **state)
{
    char out[1024], err[1024];
    char *argv[] = {"prog", "wait", NULL};
    struct sigaction before, after;

    sigaction(SIGINT, NULL, &before);
    assert_int_equal(run(2, argv, out, sizeof(out), err, sizeof(err)), MG_EXIT_INTERRUPTED);
    assert_int_equal(stop_seen, 2); /* three signals: capped at 2 */
    sigaction(SIGINT, NULL, &after);
    assert_ptr_equal(before.sa_handler, after.sa_handler); /* restored */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_precedence_and_hooks),
        cmocka_unit_test(test_errors_are_printed_once),
        cmocka_unit_test(test_help_and_subcommands),
        cmocka_unit_test(test_signals_become_a_stop_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
