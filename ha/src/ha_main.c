/*
 * ha/src/ha_main.c - main() of `pgdaemon`, the failover daemon: the command
 * tree.
 */
#include "ha_internal.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <microhttpd.h>

static void
print_versions(FILE *stream)
{
    int pq = PQlibVersion();

    fprintf(stream, "libpq %d.%d\n", pq / 10000, pq % 10000);
    fprintf(stream, "libcurl %s\n", curl_version_info(CURLVERSION_NOW)->version);
    fprintf(stream, "libmicrohttpd %s\n", MHD_get_version());
}

static const mg_cmd_t *const cmds[] = {
    &mg_ha_cmd_run,        &mg_ha_cmd_status,   &mg_ha_cmd_events,
    &mg_ha_cmd_switchover, &mg_ha_cmd_override, &mg_ha_cmd_cluster,
};

static const mg_cli_t pgdaemon_cli = {
    .program = "pgdaemon",
    .env_prefix = "PGDAEMON_",
    .description = "Run one node of a highly available PostgreSQL cluster (state in etcd).",
    .cmds = cmds,
    .ncmds = sizeof(cmds) / sizeof(cmds[0]),
    .print_version_details = print_versions,
    .acquire = mg_ha__store_acquire,
    .release = mg_ha__store_release,
};

int
main(int argc, char **argv)
{
    mg_log_init("pgdaemon", MG_LOG_INFO, MG_LOG_FORMAT_AUTO);
    return mg_cli_main(&pgdaemon_cli, argc, argv);
}
