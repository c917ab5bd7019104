/*
 * ha/src/ha_main.c - main() of `pgdaemon`, the failover daemon: the command
 * tree.
 */
#include "mg/core.h"
#include "mg/ha.h"

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

static int
run_cmd(const mg_cli_command_t *command, int argc, char **argv)
{
    (void)command;
    return mg_ha_cmd_run(argc, argv);
}

static int
status_cmd(const mg_cli_command_t *command, int argc, char **argv)
{
    (void)command;
    return mg_ha_cmd_status(argc, argv);
}

static int
events_cmd(const mg_cli_command_t *command, int argc, char **argv)
{
    (void)command;
    return mg_ha_cmd_events(argc, argv);
}

static int
cluster_cmd(const mg_cli_command_t *command, int argc, char **argv)
{
    (void)command;
    return mg_ha_cmd_cluster(argc, argv);
}

static int
switchover_cmd(const mg_cli_command_t *command, int argc, char **argv)
{
    (void)command;
    return mg_ha_cmd_switchover(argc, argv);
}

static int
override_cmd(const mg_cli_command_t *command, int argc, char **argv)
{
    (void)command;
    return mg_ha_cmd_override(argc, argv);
}

static const mg_cli_command_t commands[] = {
    {"run", "run one node: bootstrap or join, keep Postgres and etcd in step",
     "[--config FILE] [options]", run_cmd},
    {"status", "show the cluster: nodes, roles, health, lag, slots, leader",
     "[--json] [--config FILE]", status_cmd},
    {"events", "show the cluster's recent events from etcd", "[--json] [--limit N] [--config FILE]",
     events_cmd},
    {"cluster", "start or stop a local cluster (etcd + N nodes + HAProxy) for development",
     "up --nodes N --dir DIR | down --dir DIR", cluster_cmd},
    {"switchover", "move the primary role to another node with no data loss",
     "[--to NODE] [--timeout SECONDS] [--json] --config FILE", switchover_cmd},
    {"override", "allow (or forbid) a failover past the lag limit",
     "--allow-data-loss on|off --config FILE", override_cmd},
};

static const mg_cli_t pgdaemon_cli = {
    .program = "pgdaemon",
    .env_prefix = "PGDAEMON_",
    .description = "Run one node of a highly available PostgreSQL cluster (state in etcd).",
    .commands = commands,
    .ncommands = sizeof(commands) / sizeof(commands[0]),
    .print_version_details = print_versions,
};

int
main(int argc, char **argv)
{
    mg_log_init("pgdaemon", MG_LOG_INFO, MG_LOG_FORMAT_AUTO);
    return mg_cli_main(&pgdaemon_cli, argc, argv);
}
