/*
 * core/src/core_cli.c - the static command tree shared by `migrate` and
 * `pgdaemon`: help, version and dispatch.
 */
#include "mg/core.h"
#include "mg/version.h"

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
    for (size_t i = 0; i < cli->ncommands; i++)
        if (strcmp(cli->commands[i].name, name) == 0)
            return &cli->commands[i];
    return NULL;
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
    const mg_cli_command_t *cmd;
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
        cmd = find_command(cli, argv[2]);
        if (cmd == NULL) {
            fprintf(stderr, "%s: unknown command \"%s\"; run \"%s --help\" for the list\n",
                    cli->program, argv[2], cli->program);
            return MG_EXIT_USAGE;
        }
        char *help_argv[] = {(char *)cmd->name, "--help", NULL};
        return cmd->run(cmd, 2, help_argv);
    }
    cmd = find_command(cli, name);
    if (cmd == NULL) {
        fprintf(stderr, "%s: unknown command \"%s\"; run \"%s --help\" for the list\n",
                cli->program, name, cli->program);
        return MG_EXIT_USAGE;
    }
    return cmd->run(cmd, argc - 1, argv + 1);
}
