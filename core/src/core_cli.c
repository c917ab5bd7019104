/*
 * core/src/core_cli.c - the command framework shared by `migrate` and
 * `pgdaemon`: the static command tree, help, version, dispatch, and for
 * framework commands the config loading, argument checks, signals, the
 * acquire/release of what a command needs, and the final error printed
 * once (docs/core.md).
 */
#include "mg/core.h"
#include "mg/version.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

void
mg_cli_print_help(const mg_cli_t *cli, FILE *stream)
{
    fprintf(stream, "usage: %s <command> [options]\n", cli->program);
    fprintf(stream, "       %s --help | --version\n\n", cli->program);
    if (cli->description != NULL)
        fprintf(stream, "%s\n\n", cli->description);
    fprintf(stream, "commands:\n");
    for (size_t i = 0; i < cli->ncmds; i++)
        fprintf(stream, "  %-12s %s\n", cli->cmds[i]->name, cli->cmds[i]->summary);
    for (size_t i = 0; i < cli->ncommands; i++)
        fprintf(stream, "  %-12s %s\n", cli->commands[i].name, cli->commands[i].summary);
    fprintf(stream, "  %-12s %s\n", "help", "show this help, or a command's: help COMMAND");
    fprintf(stream, "  %-12s %s\n", "version", "show the version and the libraries in use");
    fprintf(stream, "\nglobal options (anywhere on the line):\n");
    fprintf(stream,
            "  --log-level LEVEL    debug|info|notice|warning|error|fatal [default: info]"
            " [env %sLOG_LEVEL]\n",
            cli->env_prefix ? cli->env_prefix : "");
    fprintf(stream,
            "  --log-format FORMAT  auto|json|text: JSON lines, or text on a TTY with auto"
            " [default: auto] [env %sLOG_FORMAT]\n",
            cli->env_prefix ? cli->env_prefix : "");
    fprintf(stream, "\nexit codes: see docs/exit-codes.md\n");
}

static void
print_version(const mg_cli_t *cli, FILE *stream)
{
    fprintf(stream, "%s %s\n", cli->program, MG_VERSION_STRING);
    if (cli->print_version_details != NULL)
        cli->print_version_details(stream);
}

static const mg_cli_command_t *
find_command(const mg_cli_t *cli, const char *name)
{
    for (size_t i = 0; name != NULL && i < cli->ncommands; i++)
        if (strcmp(cli->commands[i].name, name) == 0)
            return &cli->commands[i];
    return NULL;
}

static const mg_cmd_t *
find_cmd(const mg_cmd_t *const *cmds, size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n; i++)
        if (strcmp(cmds[i]->name, name) == 0)
            return cmds[i];
    return NULL;
}

void
mg_cmd_print_help(const mg_cli_t *cli, const mg_cmd_t *cmd, const char *path, FILE *stream)
{
    const char *prefix = cli->env_prefix != NULL ? cli->env_prefix : "";

    fprintf(stream, "usage: %s %s %s\n", cli->program, path, cmd->usage ? cmd->usage : "");
    if (cmd->description != NULL)
        fprintf(stream, "\n%s\n", cmd->description);
    if (cmd->nsubcommands > 0) {
        fprintf(stream, "\ncommands:\n");
        for (size_t i = 0; i < cmd->nsubcommands; i++)
            fprintf(stream, "  %-12s %s\n", cmd->subcommands[i]->name,
                    cmd->subcommands[i]->summary);
    }
    if (cmd->noptions > 0) {
        fprintf(stream, "\noptions:\n");
        mg_config_print_help(cmd->options, cmd->noptions, prefix, stream);
        fprintf(stream, "  %-34s read options from a JSON file [env %sCONFIG]\n",
                "   --config FILE", prefix);
    }
}

const char *
mg_cmd_option_string(const mg_cmd_ctx_t *ctx, const char *name)
{
    const mg_cmd_t *cmd = ctx->command;

    for (size_t i = 0; i < cmd->noptions; i++)
        if (cmd->options[i].type == MG_CONFIG_STRING && strcmp(cmd->options[i].name, name) == 0)
            return *(char **)((char *)ctx->opts + cmd->options[i].offset);
    return NULL;
}

bool
mg_cmd_stopping(mg_cmd_ctx_t *ctx)
{
    return atomic_load(&ctx->stop) > 0;
}

/* The stop counter of the running framework command (one per process). */
static atomic_int *signal_stop;

static void
on_signal(int sig)
{
    atomic_int *stop = signal_stop;

    (void)sig;
    if (stop != NULL) {
        int v = atomic_load(stop);
        atomic_store(stop, v < 2 ? v + 1 : 2);
    }
}

/* fail_usage fills error (domain config) and returns MG_EXIT_USAGE. */
static int fail_usage(mg_error_t *error, const char *fmt, ...) MG_PRINTF(2, 3);

static int
fail_usage(mg_error_t *error, const char *fmt, ...)
{
    va_list ap;
    char text[MG_ERROR_MESSAGE_SIZE];

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT, "%s", text);
    return MG_EXIT_USAGE;
}

/* load_options fills ctx->opts from defaults, file, environment and flags; checks arguments. */
static int
load_options(mg_cmd_ctx_t *ctx, int argc, char **argv, mg_error_t *error)
{
    const mg_cmd_t *cmd = ctx->command;
    int first = argc;

    ctx->opts = calloc(1, cmd->opts_size > 0 ? cmd->opts_size : 1);
    if (ctx->opts != NULL)
        ctx->config = mg_config_new(cmd->options, cmd->noptions, ctx->opts, ctx->cli->env_prefix);
    if (ctx->config == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return MG_EXIT_FAILURE;
    }
    if (!mg_config_load(ctx->config, argc, argv, NULL, &first, error))
        return MG_EXIT_USAGE;
    ctx->args = argv + first;
    ctx->nargs = argc - first;
    if (ctx->nargs > cmd->max_args)
        return fail_usage(error, "unexpected argument \"%s\"", ctx->args[cmd->max_args]);
    if (ctx->nargs < cmd->min_args)
        return fail_usage(error, "missing argument: usage: %s %s %s", ctx->cli->program, ctx->path,
                          cmd->usage ? cmd->usage : "");
    if (cmd->check != NULL && !cmd->check(ctx->opts, error))
        return mg_exit_code_for_error(error);
    return MG_EXIT_OK;
}

/* run_main runs a framework command whose options are loaded: signals, acquire, main, release. */
static int
run_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const mg_cmd_t *cmd = ctx->command;
    struct sigaction sa, old_int, old_term;
    bool handlers = (cmd->needs & MG_CMD_SIGNALS) != 0;
    bool acquired = false;
    int rc = MG_EXIT_OK;

    if (handlers) {
        signal_stop = &ctx->stop;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
    }
    if ((cmd->needs & ~(unsigned)MG_CMD_SIGNALS) != 0 && ctx->cli->acquire != NULL) {
        acquired = true;
        if (!ctx->cli->acquire(ctx, error))
            rc = mg_exit_code_for_error(error);
    }
    if (rc == MG_EXIT_OK)
        rc = cmd->main(ctx, error);
    if (acquired && ctx->cli->release != NULL)
        ctx->cli->release(ctx);
    if (handlers) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        signal_stop = NULL;
    }
    return rc;
}

/*
 * run_framework runs cmd (or the subcommand argv[1] names) with argv[0] its
 * name: help, options, arguments, needs, main; prints the error once.
 */
static int
run_framework(const mg_cli_t *cli, const mg_cmd_t *cmd, const char *parent, int argc, char **argv)
{
    char path[256];
    mg_cmd_ctx_t ctx;
    mg_error_t error;
    int rc;

    snprintf(path, sizeof(path), "%s%s%s", parent ? parent : "", parent ? " " : "", cmd->name);
    if (cmd->nsubcommands > 0 && argc >= 2) {
        const mg_cmd_t *sub = find_cmd(cmd->subcommands, cmd->nsubcommands, argv[1]);
        if (sub != NULL)
            return run_framework(cli, sub, path, argc - 1, argv + 1);
    }
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            mg_cmd_print_help(cli, cmd, path, stdout);
            return MG_EXIT_OK;
        }
    }
    memset(&ctx, 0, sizeof(ctx));
    atomic_init(&ctx.stop, 0);
    mg_error_clear(&error);
    ctx.cli = cli;
    ctx.command = cmd;
    ctx.path = path;
    if (cmd->main == NULL) {
        rc = argc >= 2
                 ? fail_usage(&error, "unknown command \"%s %s\"; run \"%s %s --help\"", path,
                              argv[1], cli->program, path)
                 : fail_usage(&error, "missing command; run \"%s %s --help\"", cli->program, path);
    } else {
        rc = load_options(&ctx, argc, argv, &error);
        if (rc == MG_EXIT_OK)
            rc = run_main(&ctx, &error);
    }
    if (rc != MG_EXIT_OK && mg_error_is_set(&error)) {
        if (error.sqlstate[0] != '\0')
            fprintf(stderr, "%s %s: %s (SQLSTATE %s)\n", cli->program, path, error.message,
                    error.sqlstate);
        else
            fprintf(stderr, "%s %s: %s\n", cli->program, path, error.message);
    }
    mg_config_destroy(ctx.config);
    free(ctx.opts);
    return rc;
}

/* dispatch runs the command argv[0] names, of either kind; usage error when none. */
static int
dispatch(const mg_cli_t *cli, int argc, char **argv)
{
    const mg_cli_command_t *legacy = find_command(cli, argv[0]);
    const mg_cmd_t *cmd = find_cmd(cli->cmds, cli->ncmds, argv[0]);

    if (legacy != NULL)
        return legacy->run(legacy, argc, argv);
    if (cmd != NULL)
        return run_framework(cli, cmd, NULL, argc, argv);
    fprintf(stderr, "%s: unknown command \"%s\"; run \"%s --help\" for the list\n", cli->program,
            argv[0], cli->program);
    return MG_EXIT_USAGE;
}

/*
 * take_value matches argv[i] against --NAME VALUE or --NAME=VALUE; returns
 * the number of argv slots used (0 = no match) and the value in *value.
 */
static int
take_value(int argc, char **argv, int i, const char *name, const char **value)
{
    size_t n = strlen(name);

    if (strncmp(argv[i], name, n) != 0)
        return 0;
    if (argv[i][n] == '=') {
        *value = argv[i] + n + 1;
        return 1;
    }
    if (argv[i][n] == '\0') {
        *value = i + 1 < argc ? argv[i + 1] : NULL;
        return i + 1 < argc ? 2 : 1;
    }
    return 0;
}

bool
mg_cli_take_log_options(const char *program, const char *env_prefix, int *argc, char **argv,
                        mg_error_t *error)
{
    char var[128];
    const char *level_text, *format_text;
    const char *level_from, *format_from;
    char level_desc[160], format_desc[160];
    mg_log_level_t level = MG_LOG_INFO;
    mg_log_format_t format = MG_LOG_FORMAT_AUTO;
    int out = 1;

    snprintf(var, sizeof(var), "%sLOG_LEVEL", env_prefix ? env_prefix : "");
    level_text = getenv(var);
    snprintf(level_desc, sizeof(level_desc), "env %s", var);
    level_from = level_desc;
    snprintf(var, sizeof(var), "%sLOG_FORMAT", env_prefix ? env_prefix : "");
    format_text = getenv(var);
    snprintf(format_desc, sizeof(format_desc), "env %s", var);
    format_from = format_desc;

    for (int i = 1; i < *argc;) {
        const char *value = NULL;
        int used;

        if (strcmp(argv[i], "--") == 0) {
            /* everything after "--" belongs to the command */
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if ((used = take_value(*argc, argv, i, "--log-level", &value)) > 0) {
            if (value == NULL)
                return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                    "option \"--log-level\" needs a value");
            level_text = value;
            level_from = "flag --log-level";
        } else if ((used = take_value(*argc, argv, i, "--log-format", &value)) > 0) {
            if (value == NULL)
                return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                    "option \"--log-format\" needs a value");
            format_text = value;
            format_from = "flag --log-format";
        } else {
            argv[out++] = argv[i++];
            continue;
        }
        i += used;
    }
    if (level_text != NULL && !mg_log_level_parse(level_text, &level))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid value for option \"log-level\" from %s: \"%s\" is not one "
                            "of: debug info notice warning error fatal",
                            level_from, level_text);
    if (format_text != NULL && !mg_log_format_parse(format_text, &format))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid value for option \"log-format\" from %s: \"%s\" is not "
                            "one of: auto json text",
                            format_from, format_text);
    *argc = out;
    argv[out] = NULL;
    mg_log_init(program, level, format);
    return true;
}

int
mg_cli_main(const mg_cli_t *cli, int argc, char **argv)
{
    const char *name;
    mg_error_t error;

    if (!mg_cli_take_log_options(cli->program, cli->env_prefix, &argc, argv, &error)) {
        fprintf(stderr, "%s: %s\n", cli->program, error.message);
        return MG_EXIT_USAGE;
    }
    if (argc < 2) {
        mg_cli_print_help(cli, stderr);
        return MG_EXIT_USAGE;
    }
    name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
        (strcmp(name, "help") == 0 && argc == 2)) {
        mg_cli_print_help(cli, stdout);
        return MG_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 || strcmp(name, "version") == 0) {
        print_version(cli, stdout);
        return MG_EXIT_OK;
    }
    if (strcmp(name, "help") == 0) {
        /* help COMMAND [SUBCOMMAND]: the command's own --help */
        char *help_argv[4] = {argv[2], argc > 3 ? argv[3] : "--help", "--help", NULL};
        return dispatch(cli, argc > 3 ? 3 : 2, help_argv);
    }
    return dispatch(cli, argc - 1, argv + 1);
}
