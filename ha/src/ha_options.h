/*
 * ha/src/ha_options.h - pgdaemon's node options as one list, shared by the
 * config loader (mg_ha_config_load) and the option tables of the commands
 * that read a node config (run, status, events, switchover, override, ...):
 * each command's options struct starts with an mg_ha_config_t at offset
 * base, and MG_HA_NODE_OPTIONS(base) expands to its entries.
 */
#ifndef MG_HA_OPTIONS_H
#define MG_HA_OPTIONS_H

#include "mg/ha.h"

#include <stddef.h>

#define MG_HA__OPT(base, field_) ((base) + offsetof(mg_ha_config_t, field_))

extern const char *const mg_ha__on_stop_choices[];

/* MG_HA_NODE_OPTIONS(base): the node options, for a mg_ha_config_t at offset base. */
#define MG_HA_NODE_OPTIONS(base)                                                                   \
    {.name = "name",                                                                               \
     .type = MG_CONFIG_STRING,                                                                     \
     .offset = MG_HA__OPT(base, name),                                                             \
     .metavar = "NAME",                                                                            \
     .help = "node name, unique in the cluster ([a-z0-9_-], at most 48 characters)"},              \
        {.name = "address",                                                                        \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, address),                                                      \
         .default_value = "127.0.0.1",                                                             \
         .metavar = "ADDR",                                                                        \
         .help = "address other nodes and HAProxy use to reach this node"},                        \
        {.name = "data_dir",                                                                       \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, data_dir),                                                     \
         .short_flag = 'D',                                                                        \
         .metavar = "DIR",                                                                         \
         .help = "Postgres data directory"},                                                       \
        {.name = "bin_dir",                                                                        \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, bin_dir),                                                      \
         .default_value = "/usr/lib/postgresql/15/bin",                                            \
         .metavar = "DIR",                                                                         \
         .help = "directory with initdb, postgres and pg_basebackup"},                             \
        {.name = "pg_port",                                                                        \
         .type = MG_CONFIG_INT,                                                                    \
         .offset = MG_HA__OPT(base, pg_port),                                                      \
         .default_value = "5432",                                                                  \
         .min = 1,                                                                                 \
         .max = 65535,                                                                             \
         .metavar = "PORT",                                                                        \
         .help = "Postgres port"},                                                                 \
        {.name = "pg_user",                                                                        \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, pg_user),                                                      \
         .metavar = "USER",                                                                        \
         .help = "OS user that runs Postgres (default: postgres when run as root, else the "       \
                 "daemon's own user)"},                                                            \
        {.name = "http_port",                                                                      \
         .type = MG_CONFIG_INT,                                                                    \
         .offset = MG_HA__OPT(base, http_port),                                                    \
         .default_value = "8008",                                                                  \
         .min = 1,                                                                                 \
         .max = 65535,                                                                             \
         .metavar = "PORT",                                                                        \
         .help =                                                                                   \
             "port of the read-only HTTP endpoints (/primary /replica /health /status /metrics)"}, \
        {.name = "udp_port",                                                                       \
         .type = MG_CONFIG_INT,                                                                    \
         .offset = MG_HA__OPT(base, udp_port),                                                     \
         .default_value = "8009",                                                                  \
         .min = 1,                                                                                 \
         .max = 65535,                                                                             \
         .metavar = "PORT",                                                                        \
         .help = "port for wake-up datagrams"},                                                    \
        {.name = "etcd.endpoints",                                                                 \
         .type = MG_CONFIG_LIST,                                                                   \
         .offset = MG_HA__OPT(base, etcd_endpoints),                                               \
         .metavar = "URL",                                                                         \
         .help = "etcd client URLs (http:// or https://)"},                                        \
        {.name = "etcd.username",                                                                  \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, etcd_username),                                                \
         .metavar = "USER",                                                                        \
         .help = "etcd user (authentication)"},                                                    \
        {.name = "etcd.password",                                                                  \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, etcd_password),                                                \
         .secret = true,                                                                           \
         .metavar = "PASSWORD",                                                                    \
         .help = "etcd password (config file or environment)"},                                    \
        {.name = "etcd.ca_file",                                                                   \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, etcd_ca_file),                                                 \
         .metavar = "FILE",                                                                        \
         .help = "CA bundle to verify etcd's TLS certificate"},                                    \
        {.name = "etcd.cert_file",                                                                 \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, etcd_cert_file),                                               \
         .metavar = "FILE",                                                                        \
         .help = "TLS client certificate"},                                                        \
        {.name = "etcd.key_file",                                                                  \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, etcd_key_file),                                                \
         .metavar = "FILE",                                                                        \
         .help = "TLS client key"},                                                                \
        {.name = "etcd.prefix",                                                                    \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, etcd_prefix),                                                  \
         .default_value = "/pgdaemon",                                                             \
         .metavar = "PREFIX",                                                                      \
         .help = "key prefix in etcd"},                                                            \
        {.name = "cluster",                                                                        \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, cluster),                                                      \
         .default_value = "main",                                                                  \
         .metavar = "NAME",                                                                        \
         .help = "cluster name"},                                                                  \
        {.name = "ttl",                                                                            \
         .type = MG_CONFIG_DURATION,                                                               \
         .offset = MG_HA__OPT(base, ttl_ms),                                                       \
         .default_value = "10s",                                                                   \
         .min = 2000,                                                                              \
         .max = 3600000,                                                                           \
         .metavar = "DURATION",                                                                    \
         .help = "lease TTL of the leader key and node status"},                                   \
        {.name = "loop_wait",                                                                      \
         .type = MG_CONFIG_DURATION,                                                               \
         .offset = MG_HA__OPT(base, loop_ms),                                                      \
         .default_value = "1s",                                                                    \
         .min = 100,                                                                               \
         .max = 600000,                                                                            \
         .metavar = "DURATION",                                                                    \
         .help = "interval of the reconcile loop"},                                                \
        {.name = "retry_timeout",                                                                  \
         .type = MG_CONFIG_DURATION,                                                               \
         .offset = MG_HA__OPT(base, retry_ms),                                                     \
         .default_value = "3s",                                                                    \
         .min = 100,                                                                               \
         .max = 600000,                                                                            \
         .metavar = "DURATION",                                                                    \
         .help =                                                                                   \
             "timeout of one etcd or Postgres attempt (loop_wait + 2 x retry_timeout <= ttl)"},    \
        {.name = "postgres.superuser",                                                             \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, superuser),                                                    \
         .default_value = "postgres",                                                              \
         .metavar = "ROLE",                                                                        \
         .help = "Postgres superuser"},                                                            \
        {.name = "postgres.superuser_password",                                                    \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, superuser_password),                                           \
         .secret = true,                                                                           \
         .metavar = "PASSWORD",                                                                    \
         .help = "superuser password (scram-sha-256; config file or environment)"},                \
        {.name = "postgres.replication_user",                                                      \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, replication_user),                                             \
         .default_value = "replicator",                                                            \
         .metavar = "ROLE",                                                                        \
         .help = "replication role"},                                                              \
        {.name = "postgres.replication_password",                                                  \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, replication_password),                                         \
         .secret = true,                                                                           \
         .metavar = "PASSWORD",                                                                    \
         .help = "replication password (scram-sha-256; config file or environment)"},              \
        {.name = "postgres.replication_addresses",                                                 \
         .type = MG_CONFIG_LIST,                                                                   \
         .offset = MG_HA__OPT(base, replication_addresses),                                        \
         .metavar = "ADDR",                                                                        \
         .help = "node addresses allowed to replicate (pg_hba.conf; default: 127.0.0.1)"},         \
        {.name = "postgres.client_addresses",                                                      \
         .type = MG_CONFIG_LIST,                                                                   \
         .offset = MG_HA__OPT(base, client_addresses),                                             \
         .metavar = "ADDR",                                                                        \
         .help = "addresses (or CIDR) allowed ordinary connections, e.g. HAProxy's (pg_hba.conf; " \
                 "default: 127.0.0.1)"},                                                           \
        {.name = "postgres.parameters",                                                            \
         .type = MG_CONFIG_LIST,                                                                   \
         .offset = MG_HA__OPT(base, pg_parameters),                                                \
         .metavar = "NAME=VALUE",                                                                  \
         .help = "extra postgresql.conf settings"},                                                \
        {.name = "postgres.primary_init_script",                                                   \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, primary_init_script),                                          \
         .metavar = "FILE",                                                                        \
         .help = "shell script run once (sh, PGHOST/PGPORT/PGUSER/PGPASSFILE set) after the "      \
                 "primary first starts"},                                                          \
        {.name = "postgres.replica_init_script",                                                   \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, replica_init_script),                                          \
         .metavar = "FILE",                                                                        \
         .help = "shell script run once (sh, PG* set, local standby) after a replica first "       \
                 "starts"},                                                                        \
        {.name = "max_nodes",                                                                      \
         .type = MG_CONFIG_INT,                                                                    \
         .offset = MG_HA__OPT(base, max_nodes),                                                    \
         .default_value = "5",                                                                     \
         .min = 1,                                                                                 \
         .max = MG_HA_MAX_NODES,                                                                   \
         .metavar = "N",                                                                           \
         .help = "most nodes in the cluster"},                                                     \
        {.name = "join_timeout",                                                                   \
         .type = MG_CONFIG_DURATION,                                                               \
         .offset = MG_HA__OPT(base, join_timeout_ms),                                              \
         .default_value = "5m",                                                                    \
         .min = 1000,                                                                              \
         .max = 86400000,                                                                          \
         .metavar = "DURATION",                                                                    \
         .help = "how long a new node waits for a primary and its slot"},                          \
        {.name = "max_events",                                                                     \
         .type = MG_CONFIG_INT,                                                                    \
         .offset = MG_HA__OPT(base, max_events),                                                   \
         .default_value = "200",                                                                   \
         .min = 10,                                                                                \
         .max = 100000,                                                                            \
         .metavar = "N",                                                                           \
         .help = "events kept in etcd (oldest trimmed)"},                                          \
        {.name = "on_stop",                                                                        \
         .type = MG_CONFIG_ENUM,                                                                   \
         .offset = MG_HA__OPT(base, on_stop),                                                      \
         .default_value = "fast",                                                                  \
         .choices = mg_ha__on_stop_choices,                                                        \
         .metavar = "POLICY",                                                                      \
         .help = "what happens to Postgres when the daemon stops: fast (shutdown) or leave"},      \
        {.name = "slot_ttl",                                                                       \
         .type = MG_CONFIG_DURATION,                                                               \
         .offset = MG_HA__OPT(base, slot_ttl_ms),                                                  \
         .default_value = "30m",                                                                   \
         .min = 1000,                                                                              \
         .max = 30LL * 86400000,                                                                   \
         .metavar = "DURATION",                                                                    \
         .help = "the primary drops the replication slot of a node absent from etcd this long"},   \
        {.name = "max_lag",                                                                        \
         .type = MG_CONFIG_SIZE,                                                                   \
         .offset = MG_HA__OPT(base, max_lag_bytes),                                                \
         .default_value = "16MB",                                                                  \
         .min = 0,                                                                                 \
         .max = 1LL << 40,                                                                         \
         .metavar = "BYTES",                                                                       \
         .help = "default replay lag bound of /replica"},                                          \
        {.name = "priority",                                                                       \
         .type = MG_CONFIG_INT,                                                                    \
         .offset = MG_HA__OPT(base, priority),                                                     \
         .default_value = "100",                                                                   \
         .min = 0,                                                                                 \
         .max = 1000,                                                                              \
         .metavar = "N",                                                                           \
         .help =                                                                                   \
             "failover candidate priority (ties on LSN go to the higher one; 0 = never promote)"}, \
        {.name = "nofailover",                                                                     \
         .type = MG_CONFIG_BOOL,                                                                   \
         .offset = MG_HA__OPT(base, nofailover),                                                   \
         .help = "never promote this node (failover or switchover)"},                              \
        {.name = "synchronous_mode",                                                               \
         .type = MG_CONFIG_BOOL,                                                                   \
         .offset = MG_HA__OPT(base, synchronous_mode),                                             \
         .help = "manage synchronous_standby_names = ANY 1 (healthy replicas); only sync members " \
                 "are failover candidates"},                                                       \
        {.name = "failover_max_lag",                                                               \
         .type = MG_CONFIG_SIZE,                                                                   \
         .offset = MG_HA__OPT(base, failover_max_lag),                                             \
         .default_value = "1MB",                                                                   \
         .min = 0,                                                                                 \
         .max = 1LL << 40,                                                                         \
         .metavar = "BYTES",                                                                       \
         .help =                                                                                   \
             "a failover candidate may lag the primary's last published LSN at most this much "    \
             "(spec allow_data_loss overrides)"},                                                  \
        {.name = "switchover_timeout",                                                             \
         .type = MG_CONFIG_DURATION,                                                               \
         .offset = MG_HA__OPT(base, switchover_timeout_ms),                                        \
         .default_value = "30s",                                                                   \
         .min = 1000,                                                                              \
         .max = 3600000,                                                                           \
         .metavar = "DURATION",                                                                    \
         .help = "a switchover whose target has not replayed the final LSN by then is aborted"},   \
        {.name = "rewind_attempts",                                                                \
         .type = MG_CONFIG_INT,                                                                    \
         .offset = MG_HA__OPT(base, rewind_attempts),                                              \
         .default_value = "2",                                                                     \
         .min = 0,                                                                                 \
         .max = 100,                                                                               \
         .metavar = "N",                                                                           \
         .help = "pg_rewind runs of a diverged old primary before it is re-cloned"},               \
        {.name = "start_timeout",                                                                  \
         .type = MG_CONFIG_DURATION,                                                               \
         .offset = MG_HA__OPT(base, start_timeout_ms),                                             \
         .default_value = "5m",                                                                    \
         .min = 1000,                                                                              \
         .max = 86400000,                                                                          \
         .metavar = "DURATION",                                                                    \
         .help =                                                                                   \
             "a primary whose Postgres has not been up and writable this long (failed starts, "    \
             "crash recovery) releases the leader key so a replica can take over"},                \
        {.name = "cluster_secret",                                                                 \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, cluster_secret),                                               \
         .secret = true,                                                                           \
         .metavar = "SECRET",                                                                      \
         .help =                                                                                   \
             "shared HMAC-SHA256 key of the UDP plane (config file or environment); without it "   \
             "datagrams are ignored and the etcd-loss failsafe is off"},                           \
        {.name = "cluster_secret_file",                                                            \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, cluster_secret_file),                                          \
         .metavar = "FILE",                                                                        \
         .help =                                                                                   \
             "read cluster_secret from FILE (its first line; the file must not be readable by "    \
             "everyone)"},                                                                         \
        {.name = "etcd.password_file",                                                             \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, etcd_password_file),                                           \
         .metavar = "FILE",                                                                        \
         .help = "read etcd.password from FILE (its first line; the file must not be readable by " \
                 "everyone)"},                                                                     \
        {.name = "postgres.superuser_password_file",                                               \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, superuser_password_file),                                      \
         .metavar = "FILE",                                                                        \
         .help = "read postgres.superuser_password from FILE (its first line; the file must not "  \
                 "be readable by "                                                                 \
                 "everyone)"},                                                                     \
        {.name = "postgres.replication_password_file",                                             \
         .type = MG_CONFIG_STRING,                                                                 \
         .offset = MG_HA__OPT(base, replication_password_file),                                    \
         .metavar = "FILE",                                                                        \
         .help = "read postgres.replication_password from FILE (its first line; the file must "    \
                 "not be readable by "                                                             \
                 "everyone)"},

#define MG_HA_NODE_NOPTIONS 46 /* checked against the table in ha_config.c */

/*
 * mg_ha__config_finish completes a node config that loader filled: a
 * secret option (a password, cluster_secret) given as a flag is refused
 * (other users can read command lines: issue 17, item 7), and pg_user
 * defaults to postgres when run as root. false with error naming the option.
 */
bool mg_ha__config_finish(mg_ha_config_t *conf, const mg_config_t *loader, mg_error_t *error);

#endif /* MG_HA_OPTIONS_H */
