/*
 * ha/src/ha_main.c - main() of `pgdaemon`, the failover daemon: the command
 * tree. Commands are added to the table as their issues land.
 */
#include "mg/core.h"

#include <libpq-fe.h>

static void
print_versions(FILE *stream)
{
    int pq = PQlibVersion();

    fprintf(stream, "libpq %d.%d\n", pq / 10000, pq % 10000);
}

static const mg_cli_t pgdaemon_cli = {
    .program = "pgdaemon",
    .env_prefix = "PGDAEMON_",
    .description = "Run one node of a highly available PostgreSQL cluster (state in etcd).",
    .commands = NULL,
    .ncommands = 0,
    .print_version_details = print_versions,
};

int
main(int argc, char **argv)
{
    mg_log_init("pgdaemon", MG_LOG_INFO, MG_LOG_FORMAT_AUTO);
    return mg_cli_main(&pgdaemon_cli, argc, argv);
}
