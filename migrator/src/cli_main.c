/*
 * migrator/src/cli_main.c - main() of `migrate`: the command tree.
 *
 * Commands are added to the table as their issues land; `--help` lists
 * exactly what is in the table.
 */
#include "mg/core.h"
#include "mg/cutover.h"
#include "mg/migrator.h"
#include "mg/validate.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>

static void
print_versions(FILE *stream)
{
    int pq = PQlibVersion();

    fprintf(stream, "libmongoc %s, libbson %s, libpq %d.%d\n", mongoc_get_version(),
            bson_get_version(), pq / 10000, pq % 10000);
}

static const mg_cli_command_t commands[] = {
    {"init", "census the source, create the target tables and state schema, print the plan",
     "--source URI --target URI [options]", mg_migrator_cmd_init},
    {"sync", "copy every collection in parallel (resumable), then build the indexes",
     "--source URI --target URI [options]", mg_migrator_cmd_sync},
    {"status", "show the phase and progress recorded on the target", "--target URI [options]",
     mg_migrator_cmd_status},
    {"validate", "checksum both sides, name every difference, record and report it",
     "--source URI --target URI [--full | --changed] [options]", mg_validate_command},
    {"cutover", "freeze the source, drain to the fence, verify, flip the endpoint once",
     "--source URI --target URI [options]", mg_cutover_command},
};

static const mg_cli_t migrate_cli = {
    .program = "migrate",
    .env_prefix = "MIGRATE_",
    .description = "Move a live application from MongoDB to PostgreSQL.",
    .commands = commands,
    .ncommands = sizeof(commands) / sizeof(commands[0]),
    .print_version_details = print_versions,
};

int
main(int argc, char **argv)
{
    int rc;

    mg_log_init("migrate", MG_LOG_INFO, MG_LOG_FORMAT_AUTO);
    mongoc_init();
    mg_log_install_mongoc_handler();
    rc = mg_cli_main(&migrate_cli, argc, argv);
    mongoc_cleanup();
    return rc;
}
