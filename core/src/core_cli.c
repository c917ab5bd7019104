/*
 * core/src/core_cli.c - the static command tree shared by `migrate` and
 * `pgdaemon`: help, version and dispatch.
 */
#include "mg/core.h"
#include "mg/version.h"

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

int
mg_cli_main(const mg_cli_t *cli, int argc, char **argv)
{
    const mg_cli_command_t *cmd;
    const char *name;

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
