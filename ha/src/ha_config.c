/*
 * ha/src/ha_config.c - pgdaemon's options: one table for the config loader
 * (defaults < JSON file < PGDAEMON_* environment < flags) and the rules that
 * span several options.
 */
#include "mg/ha.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENV_PREFIX "PGDAEMON_"

static const char *const on_stop_choices[] = {"fast", "leave", NULL};

#define OPT(field_) offsetof(mg_ha_config_t, field_)

static const mg_config_option_t options[] = {
    {.name = "name",
     .type = MG_CONFIG_STRING,
     .offset = OPT(name),
     .metavar = "NAME",
     .help = "node name, unique in the cluster ([a-z0-9_-], at most 48 characters)"},
    {.name = "address",
     .type = MG_CONFIG_STRING,
     .offset = OPT(address),
     .default_value = "127.0.0.1",
     .metavar = "ADDR",
     .help = "address other nodes and HAProxy use to reach this node"},
    {.name = "data_dir",
     .type = MG_CONFIG_STRING,
     .offset = OPT(data_dir),
     .short_flag = 'D',
     .metavar = "DIR",
     .help = "Postgres data directory"},
    {.name = "bin_dir",
     .type = MG_CONFIG_STRING,
     .offset = OPT(bin_dir),
     .default_value = "/usr/lib/postgresql/15/bin",
     .metavar = "DIR",
     .help = "directory with initdb, postgres and pg_basebackup"},
    {.name = "pg_port",
     .type = MG_CONFIG_INT,
     .offset = OPT(pg_port),
     .default_value = "5432",
     .min = 1,
     .max = 65535,
     .metavar = "PORT",
     .help = "Postgres port"},
    {.name = "pg_user",
     .type = MG_CONFIG_STRING,
     .offset = OPT(pg_user),
     .metavar = "USER",
     .help = "OS user that runs Postgres (default: postgres when run as root, else the "
             "daemon's own user)"},
    {.name = "http_port",
     .type = MG_CONFIG_INT,
     .offset = OPT(http_port),
     .default_value = "8008",
     .min = 1,
     .max = 65535,
     .metavar = "PORT",
     .help = "port of the read-only HTTP endpoints (/primary /replica /health /status /metrics)"},
    {.name = "udp_port",
     .type = MG_CONFIG_INT,
     .offset = OPT(udp_port),
     .default_value = "8009",
     .min = 1,
     .max = 65535,
     .metavar = "PORT",
     .help = "port for wake-up datagrams"},
    {.name = "etcd.endpoints",
     .type = MG_CONFIG_LIST,
     .offset = OPT(etcd_endpoints),
     .metavar = "URL",
     .help = "etcd client URLs (http:// or https://)"},
    {.name = "etcd.username",
     .type = MG_CONFIG_STRING,
     .offset = OPT(etcd_username),
     .metavar = "USER",
     .help = "etcd user (authentication)"},
    {.name = "etcd.password",
     .type = MG_CONFIG_STRING,
     .offset = OPT(etcd_password),
     .secret = true,
     .metavar = "PASSWORD",
     .help = "etcd password (config file or environment)"},
    {.name = "etcd.ca_file",
     .type = MG_CONFIG_STRING,
     .offset = OPT(etcd_ca_file),
     .metavar = "FILE",
     .help = "CA bundle to verify etcd's TLS certificate"},
    {.name = "etcd.cert_file",
     .type = MG_CONFIG_STRING,
     .offset = OPT(etcd_cert_file),
     .metavar = "FILE",
     .help = "TLS client certificate"},
    {.name = "etcd.key_file",
     .type = MG_CONFIG_STRING,
     .offset = OPT(etcd_key_file),
     .metavar = "FILE",
     .help = "TLS client key"},
    {.name = "etcd.prefix",
     .type = MG_CONFIG_STRING,
     .offset = OPT(etcd_prefix),
     .default_value = "/pgdaemon",
     .metavar = "PREFIX",
     .help = "key prefix in etcd"},
    {.name = "cluster",
     .type = MG_CONFIG_STRING,
     .offset = OPT(cluster),
     .default_value = "main",
     .metavar = "NAME",
     .help = "cluster name"},
    {.name = "ttl",
     .type = MG_CONFIG_DURATION,
     .offset = OPT(ttl_ms),
     .default_value = "10s",
     .min = 2000,
     .max = 3600000,
     .metavar = "DURATION",
     .help = "lease TTL of the leader key and node status"},
    {.name = "loop_wait",
     .type = MG_CONFIG_DURATION,
     .offset = OPT(loop_ms),
     .default_value = "1s",
     .min = 100,
     .max = 600000,
     .metavar = "DURATION",
     .help = "interval of the reconcile loop"},
    {.name = "retry_timeout",
     .type = MG_CONFIG_DURATION,
     .offset = OPT(retry_ms),
     .default_value = "3s",
     .min = 100,
     .max = 600000,
     .metavar = "DURATION",
     .help = "timeout of one etcd or Postgres attempt (loop_wait + 2 x retry_timeout <= ttl)"},
    {.name = "postgres.superuser",
     .type = MG_CONFIG_STRING,
     .offset = OPT(superuser),
     .default_value = "postgres",
     .metavar = "ROLE",
     .help = "Postgres superuser"},
    {.name = "postgres.superuser_password",
     .type = MG_CONFIG_STRING,
     .offset = OPT(superuser_password),
     .secret = true,
     .metavar = "PASSWORD",
     .help = "superuser password (scram-sha-256; config file or environment)"},
    {.name = "postgres.replication_user",
     .type = MG_CONFIG_STRING,
     .offset = OPT(replication_user),
     .default_value = "replicator",
     .metavar = "ROLE",
     .help = "replication role"},
    {.name = "postgres.replication_password",
     .type = MG_CONFIG_STRING,
     .offset = OPT(replication_password),
     .secret = true,
     .metavar = "PASSWORD",
     .help = "replication password (scram-sha-256; config file or environment)"},
    {.name = "postgres.replication_addresses",
     .type = MG_CONFIG_LIST,
     .offset = OPT(replication_addresses),
     .metavar = "ADDR",
     .help = "node addresses allowed to replicate (pg_hba.conf; default: 127.0.0.1)"},
    {.name = "postgres.client_addresses",
     .type = MG_CONFIG_LIST,
     .offset = OPT(client_addresses),
     .metavar = "ADDR",
     .help = "addresses (or CIDR) allowed ordinary connections, e.g. HAProxy's (pg_hba.conf; "
             "default: 127.0.0.1)"},
    {.name = "postgres.parameters",
     .type = MG_CONFIG_LIST,
     .offset = OPT(pg_parameters),
     .metavar = "NAME=VALUE",
     .help = "extra postgresql.conf settings"},
    {.name = "postgres.primary_init_script",
     .type = MG_CONFIG_STRING,
     .offset = OPT(primary_init_script),
     .metavar = "FILE",
     .help = "shell script run once (sh, PGHOST/PGPORT/PGUSER/PGPASSFILE set) after the "
             "primary first starts"},
    {.name = "postgres.replica_init_script",
     .type = MG_CONFIG_STRING,
     .offset = OPT(replica_init_script),
     .metavar = "FILE",
     .help = "shell script run once (sh, PG* set, local standby) after a replica first "
             "starts"},
    {.name = "max_nodes",
     .type = MG_CONFIG_INT,
     .offset = OPT(max_nodes),
     .default_value = "5",
     .min = 1,
     .max = MG_HA_MAX_NODES,
     .metavar = "N",
     .help = "most nodes in the cluster"},
    {.name = "join_timeout",
     .type = MG_CONFIG_DURATION,
     .offset = OPT(join_timeout_ms),
     .default_value = "5m",
     .min = 1000,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "how long a new node waits for a primary and its slot"},
    {.name = "max_events",
     .type = MG_CONFIG_INT,
     .offset = OPT(max_events),
     .default_value = "200",
     .min = 10,
     .max = 100000,
     .metavar = "N",
     .help = "events kept in etcd (oldest trimmed)"},
    {.name = "on_stop",
     .type = MG_CONFIG_ENUM,
     .offset = OPT(on_stop),
     .default_value = "fast",
     .choices = on_stop_choices,
     .metavar = "POLICY",
     .help = "what happens to Postgres when the daemon stops: fast (shutdown) or leave"},
    {.name = "slot_ttl",
     .type = MG_CONFIG_DURATION,
     .offset = OPT(slot_ttl_ms),
     .default_value = "30m",
     .min = 1000,
     .max = 30LL * 86400000,
     .metavar = "DURATION",
     .help = "the primary drops the replication slot of a node absent from etcd this long"},
    {.name = "max_lag",
     .type = MG_CONFIG_SIZE,
     .offset = OPT(max_lag_bytes),
     .default_value = "16MB",
     .min = 0,
     .max = 1LL << 40,
     .metavar = "BYTES",
     .help = "default replay lag bound of /replica"},
    {.name = "priority",
     .type = MG_CONFIG_INT,
     .offset = OPT(priority),
     .default_value = "100",
     .min = 0,
     .max = 1000,
     .metavar = "N",
     .help = "failover candidate priority (ties on LSN go to the higher one; 0 = never promote)"},
    {.name = "nofailover",
     .type = MG_CONFIG_BOOL,
     .offset = OPT(nofailover),
     .help = "never promote this node (failover or switchover)"},
    {.name = "synchronous_mode",
     .type = MG_CONFIG_BOOL,
     .offset = OPT(synchronous_mode),
     .help = "manage synchronous_standby_names = ANY 1 (healthy replicas); only sync members "
             "are failover candidates"},
    {.name = "failover_max_lag",
     .type = MG_CONFIG_SIZE,
     .offset = OPT(failover_max_lag),
     .default_value = "1MB",
     .min = 0,
     .max = 1LL << 40,
     .metavar = "BYTES",
     .help = "a failover candidate may lag the primary's last published LSN at most this much "
             "(spec allow_data_loss overrides)"},
    {.name = "switchover_timeout",
     .type = MG_CONFIG_DURATION,
     .offset = OPT(switchover_timeout_ms),
     .default_value = "30s",
     .min = 1000,
     .max = 3600000,
     .metavar = "DURATION",
     .help = "a switchover whose target has not replayed the final LSN by then is aborted"},
    {.name = "rewind_attempts",
     .type = MG_CONFIG_INT,
     .offset = OPT(rewind_attempts),
     .default_value = "2",
     .min = 0,
     .max = 100,
     .metavar = "N",
     .help = "pg_rewind runs of a diverged old primary before it is re-cloned"},
    {.name = "start_timeout",
     .type = MG_CONFIG_DURATION,
     .offset = OPT(start_timeout_ms),
     .default_value = "5m",
     .min = 1000,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "a primary whose Postgres has not been up and writable this long (failed starts, "
             "crash recovery) releases the leader key so a replica can take over"},
    {.name = "cluster_secret",
     .type = MG_CONFIG_STRING,
     .offset = OPT(cluster_secret),
     .secret = true,
     .metavar = "SECRET",
     .help = "shared HMAC-SHA256 key of the UDP plane (config file or environment); without it "
             "datagrams are ignored and the etcd-loss failsafe is off"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

typedef struct {
    mg_ha_config_t conf;
    mg_config_t *loader;
} holder_t;

void
mg_ha_config_print_help(FILE *stream)
{
    mg_config_print_help(options, NOPTIONS, ENV_PREFIX, stream);
}

bool
mg_ha_config_load(int argc, char **argv, char **envp, mg_ha_config_t **config_out,
                  int *first_positional, mg_error_t *error)
{
    holder_t *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, 12, "out of memory");
    h->loader = mg_config_new(options, NOPTIONS, &h->conf, ENV_PREFIX);
    if (h->loader == NULL) {
        free(h);
        return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, 12, "out of memory");
    }
    if (!mg_config_load(h->loader, argc, argv, envp, first_positional, error)) {
        mg_config_destroy(h->loader);
        free(h);
        return false;
    }
    {
        static const char *const secrets[] = {"etcd.password", "postgres.superuser_password",
                                              "postgres.replication_password"};

        for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
            if (mg_config_source(h->loader, secrets[i]) == MG_CONFIG_SOURCE_FLAG) {
                mg_config_destroy(h->loader);
                free(h);
                return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                    "option \"%s\" may not be given on the command line (other "
                                    "users can read it there): use the config file or the "
                                    "environment",
                                    secrets[i]);
            }
        }
    }
    if (h->conf.pg_user == NULL)
        h->conf.pg_user = strdup(geteuid() == 0 ? "postgres" : "");
    *config_out = &h->conf;
    return true;
}

void
mg_ha_config_destroy(mg_ha_config_t *config)
{
    holder_t *h = (holder_t *)config; /* conf is the first member */

    if (h == NULL)
        return;
    mg_config_destroy(h->loader); /* frees the strings it wrote */
    free(h);
}

bool
mg_ha_config_check(const mg_ha_config_t *c, mg_error_t *error)
{
    if (c->name == NULL || c->name[0] == '\0')
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"name\" is required (flag --name, PGDAEMON_NAME, or the "
                            "config file)");
    if (!mg_ha_name_valid(c->name))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid value for option \"name\": \"%s\" must be 1-48 characters "
                            "of a-z, 0-9, '_' and '-'",
                            c->name);
    if (!mg_ha_name_valid(c->cluster))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid value for option \"cluster\": \"%s\" must be 1-48 "
                            "characters of a-z, 0-9, '_' and '-'",
                            c->cluster);
    if (c->data_dir == NULL || c->data_dir[0] != '/')
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"data_dir\" is required and must be an absolute path");
    if (c->etcd_endpoints.count == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"etcd.endpoints\" is required");
    if (c->etcd_prefix == NULL || c->etcd_prefix[0] != '/')
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid value for option \"etcd.prefix\": must start with '/'");
    if (c->loop_ms + 2 * c->retry_ms > c->ttl_ms)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "options \"loop_wait\" (%lldms) + 2 x \"retry_timeout\" (%lldms) "
                            "must not exceed \"ttl\" (%lldms)",
                            (long long)c->loop_ms, (long long)c->retry_ms, (long long)c->ttl_ms);
    if (c->start_timeout_ms < c->ttl_ms)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"start_timeout\" (%lldms) must be at least \"ttl\" (%lldms): "
                            "a primary restarting in place gets at least as long as a lost node "
                            "takes to be replaced",
                            (long long)c->start_timeout_ms, (long long)c->ttl_ms);
    if (c->pg_port == c->http_port)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "options \"pg_port\" and \"http_port\" must differ (both %lld)",
                            (long long)c->pg_port);
    if (c->superuser_password == NULL || c->superuser_password[0] == '\0')
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"postgres.superuser_password\" is required (config file "
                            "or PGDAEMON_POSTGRES_SUPERUSER_PASSWORD)");
    if (c->replication_password == NULL || c->replication_password[0] == '\0')
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"postgres.replication_password\" is required (config file "
                            "or PGDAEMON_POSTGRES_REPLICATION_PASSWORD)");
    for (size_t i = 0; i < c->pg_parameters.count; i++) {
        const char *p = c->pg_parameters.items[i];
        const char *eq = strchr(p, '=');

        if (eq == NULL || eq == p || strchr(p, '\n') != NULL || strchr(p, '\'') != NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "invalid value for option \"postgres.parameters\": \"%s\" is "
                                "not NAME=VALUE (no quotes or newlines)",
                                p);
    }
    return true;
}
