/*
 * ha/src/ha_pg.c - Postgres control for one node: initdb, configuration
 * (pgdaemon.conf, pg_hba.conf, the password file), start/stop of the
 * postmaster, pg_basebackup with a slot, roles and slots on the primary,
 * and the status queries reported to etcd every loop.
 *
 * Passwords never appear on a command line: initdb reads --pwfile,
 * pg_basebackup and the standby read a password file (PGPASSFILE /
 * passfile=), and the replication role is created with a SCRAM verifier
 * computed client-side.
 */
#include "ha_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG_START_TIMEOUT_MS 120000
#define PG_STOP_TIMEOUT_MS  60000
#define PG_TOOL_TIMEOUT_MS  600000

static void
bin_path(const mg_ha_pg_t *pg, const char *tool, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", pg->conf->bin_dir, tool);
}

static void
data_path(const mg_ha_pg_t *pg, const char *file, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", pg->conf->data_dir, file);
}

/* mkdirs creates path and missing parents (0755), like mkdir -p. */
static bool
mkdirs(const char *path, mg_error_t *error)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);

    if (n >= sizeof(tmp))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_LIMIT,
                            "path too long: \"%s\"", path);
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];

            tmp[i] = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return mg_error_set_errno(error, errno, "could not create directory \"%s\"", tmp);
            tmp[i] = c;
        }
    }
    return true;
}

bool
mg_ha__pg_init(mg_ha_pg_t *pg, const mg_ha_config_t *conf, mg_error_t *error)
{
    static const char *const tools[] = {"initdb", "postgres", "pg_basebackup", "pg_controldata"};
    char path[PATH_MAX], parent[PATH_MAX];
    char *slash;

    memset(pg, 0, sizeof(*pg));
    pg->conf = conf;
    if (!mg_ha__runas_resolve(conf->pg_user, &pg->runas, error))
        return false;
    for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
        bin_path(pg, tools[i], path, sizeof(path));
        if (access(path, X_OK) != 0)
            return mg_error_set_errno(error, errno,
                                      "Postgres program \"%s\" is missing (option \"bin_dir\" "
                                      "is \"%s\")",
                                      path, conf->bin_dir);
    }
    snprintf(parent, sizeof(parent), "%s", conf->data_dir);
    while ((slash = strrchr(parent, '/')) != NULL && slash[1] == '\0' && slash != parent)
        *slash = '\0';
    snprintf(pg->log_path, sizeof(pg->log_path), "%s.log", parent);
    snprintf(pg->pgpass_path, sizeof(pg->pgpass_path), "%s.pgpass", parent);
    slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        if (!mkdirs(parent, error))
            return false;
    }
    if (pg->runas.switch_user) {
        /* every directory above the data dir must be searchable by the Postgres user */
        char *argv[] = {"/usr/bin/test", "-x", parent, NULL};
        mg_error_t ignored;

        if (access(argv[0], X_OK) == 0 &&
            !mg_ha__run(&pg->runas, argv, NULL, NULL, 10000, NULL, &ignored))
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "invalid value for option \"data_dir\": OS user \"%s\" cannot "
                                "reach directory \"%s\" (make it and its parents searchable)",
                                pg->runas.name, parent);
    }
    snprintf(pg->local_host, sizeof(pg->local_host), "%s",
             strcmp(conf->address, "0.0.0.0") == 0 ? "127.0.0.1" : conf->address);
    return true;
}

bool
mg_ha__pg_have_data(const mg_ha_pg_t *pg)
{
    char path[PATH_MAX];

    data_path(pg, "PG_VERSION", path, sizeof(path));
    return access(path, F_OK) == 0;
}

bool
mg_ha__pg_read_sysid(mg_ha_pg_t *pg, char *out, size_t outsz, mg_error_t *error)
{
    char tool[PATH_MAX];
    char *argv[] = {tool, "-D", pg->conf->data_dir, NULL};
    char *env[] = {"LC_ALL=C", NULL};
    mg_buf_t buf;
    const char *p;
    bool ok = false;

    bin_path(pg, "pg_controldata", tool, sizeof(tool));
    mg_buf_init(&buf, 64 * 1024);
    if (!mg_ha__run(&pg->runas, argv, env, pg->log_path, 30000, &buf, error))
        goto done;
    p = buf.data ? strstr(buf.data, "Database system identifier:") : NULL;
    if (p == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "could not read the system identifier of \"%s\" from pg_controldata",
                     pg->conf->data_dir);
        goto done;
    }
    p += strlen("Database system identifier:");
    while (*p == ' ')
        p++;
    snprintf(out, outsz, "%.*s", (int)strspn(p, "0123456789"), p);
    ok = out[0] != '\0';
    if (!ok)
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "pg_controldata printed no system identifier for \"%s\"", pg->conf->data_dir);
done:
    mg_buf_cleanup(&buf);
    return ok;
}

/* make_data_dir creates an empty data dir owned by the Postgres user. */
static bool
make_data_dir(mg_ha_pg_t *pg, mg_error_t *error)
{
    if (mkdir(pg->conf->data_dir, 0700) != 0) {
        if (errno != EEXIST)
            return mg_error_set_errno(error, errno, "could not create data directory \"%s\"",
                                      pg->conf->data_dir);
    }
    if (pg->runas.switch_user && chown(pg->conf->data_dir, pg->runas.uid, pg->runas.gid) != 0)
        return mg_error_set_errno(error, errno, "could not chown data directory \"%s\"",
                                  pg->conf->data_dir);
    if (chmod(pg->conf->data_dir, 0700) != 0)
        return mg_error_set_errno(error, errno, "could not chmod data directory \"%s\"",
                                  pg->conf->data_dir);
    return true;
}

/* pgpass_escape appends s with ':' and '\' escaped, as .pgpass wants. */
static bool
pgpass_escape(mg_buf_t *b, const char *s, mg_error_t *error)
{
    for (; *s; s++) {
        if ((*s == ':' || *s == '\\') && !mg_buf_append(b, "\\", 1, error))
            return false;
        if (!mg_buf_append(b, s, 1, error))
            return false;
    }
    return true;
}

static bool
write_pgpass(mg_ha_pg_t *pg, mg_error_t *error)
{
    const mg_ha_config_t *c = pg->conf;
    mg_buf_t b;
    bool ok;

    mg_buf_init(&b, 64 * 1024);
    ok = mg_buf_append_str(&b, "*:*:*:", error) && pgpass_escape(&b, c->replication_user, error) &&
         mg_buf_append_str(&b, ":", error) && pgpass_escape(&b, c->replication_password, error) &&
         mg_buf_append_str(&b, "\n*:*:*:", error) && pgpass_escape(&b, c->superuser, error) &&
         mg_buf_append_str(&b, ":", error) && pgpass_escape(&b, c->superuser_password, error) &&
         mg_buf_append_str(&b, "\n", error) &&
         mg_ha__write_file(pg->pgpass_path, b.data, b.len, 0600, &pg->runas, error);
    if (b.data != NULL)
        memset(b.data, 0, b.len);
    mg_buf_cleanup(&b);
    return ok;
}

bool
mg_ha__pg_initdb(mg_ha_pg_t *pg, mg_error_t *error)
{
    const mg_ha_config_t *c = pg->conf;
    char tool[PATH_MAX], pwfile[PATH_MAX], pwopt[PATH_MAX + 16], useropt[128];
    char *argv[] = {tool,    "-D",  c->data_dir,       "--data-checksums",  "--auth=scram-sha-256",
                    useropt, pwopt, "--encoding=UTF8", "--no-instructions", NULL};
    char *env[] = {"LC_ALL=C.UTF-8", NULL};
    bool ok;

    bin_path(pg, "initdb", tool, sizeof(tool));
    snprintf(pwfile, sizeof(pwfile), "%s.pwfile", pg->pgpass_path);
    snprintf(pwopt, sizeof(pwopt), "--pwfile=%s", pwfile);
    snprintf(useropt, sizeof(useropt), "--username=%s", c->superuser);
    if (!make_data_dir(pg, error))
        return false;
    if (!mg_ha__write_file(pwfile, c->superuser_password, strlen(c->superuser_password), 0600,
                           &pg->runas, error)) {
        mg_ha__rmtree(c->data_dir);
        return false;
    }
    ok = mg_ha__run(&pg->runas, argv, env, pg->log_path, PG_TOOL_TIMEOUT_MS, NULL, error);
    unlink(pwfile);
    if (!ok) {
        mg_error_prefix(error, "initdb of \"%s\" failed", c->data_dir);
        mg_ha__rmtree(c->data_dir); /* no half-initialised data dir */
        return false;
    }
    return true;
}

bool
mg_ha__conf_quote(mg_buf_t *b, const char *what, const char *value, mg_error_t *error)
{
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "could not write %s into a configuration file: it holds a "
                                "control character (0x%02x)",
                                what, *p);
    if (!mg_buf_append(b, "'", 1, error))
        return false;
    for (const char *p = value; *p != '\0'; p++) {
        /* postgresql.conf: '' is a quote; a backslash starts an escape, so it is doubled */
        const char *out = *p == '\'' ? "''" : *p == '\\' ? "\\\\" : NULL;

        if (!(out != NULL ? mg_buf_append_str(b, out, error) : mg_buf_append(b, p, 1, error)))
            return false;
    }
    return mg_buf_append(b, "'", 1, error);
}

bool
mg_ha__conninfo_append(mg_buf_t *b, const char *key, const char *value, mg_error_t *error)
{
    /* libpq conninfo: key='value' with \ and ' escaped by a backslash */
    if (!mg_buf_printf(b, error, "%s%s='", b->len > 0 ? " " : "", key))
        return false;
    for (const char *p = value; *p != '\0'; p++)
        if ((*p == '\'' || *p == '\\') && !mg_buf_append(b, "\\", 1, error))
            return false;
        else if (!mg_buf_append(b, p, 1, error))
            return false;
    return mg_buf_append(b, "'", 1, error);
}

/* guc_name_valid: a setting name of postgres.parameters (a-z, 0-9, '_', '.' for extensions). */
static bool
guc_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
              (name[i] >= '0' && name[i] <= '9') || name[i] == '_' || name[i] == '.'))
            return false;
    return true;
}

/* include_our_conf makes postgresql.conf include pgdaemon.conf (once). */
static bool
include_our_conf(mg_ha_pg_t *pg, mg_error_t *error)
{
    char path[PATH_MAX], line[1024];
    bool found = false;
    FILE *f;

    data_path(pg, "postgresql.conf", path, sizeof(path));
    f = fopen(path, "r");
    if (f == NULL)
        return mg_error_set_errno(error, errno, "could not open \"%s\"", path);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, "include_if_exists = 'pgdaemon.conf'") != NULL)
            found = true;
    fclose(f);
    if (found)
        return true;
    f = fopen(path, "a");
    if (f == NULL || fputs("\ninclude_if_exists = 'pgdaemon.conf'\n", f) < 0) {
        mg_error_set_errno(error, errno, "could not append to \"%s\"", path);
        if (f != NULL)
            fclose(f);
        return false;
    }
    fclose(f);
    return true;
}

/* write_hba writes pg_hba.conf: scram everywhere; replication only from node addresses. */
static bool
write_hba(mg_ha_pg_t *pg, mg_buf_t *b, mg_error_t *error)
{
    const mg_ha_config_t *c = pg->conf;
    char path[PATH_MAX];

    if (!mg_buf_printf(b, error,
                       "# pg_hba.conf - written by pgdaemon\n"
                       "local all all scram-sha-256\n"
                       "host all all 127.0.0.1/32 scram-sha-256\n"))
        return false;
    for (size_t i = 0; i < c->client_addresses.count; i++) {
        const char *a = c->client_addresses.items[i];

        if (!mg_buf_printf(b, error, "host all all %s%s scram-sha-256\n", a,
                           strchr(a, '/') ? "" : "/32"))
            return false;
    }
    if (c->replication_addresses.count == 0 &&
        !mg_buf_printf(b, error, "host replication %s 127.0.0.1/32 scram-sha-256\n",
                       c->replication_user))
        return false;
    for (size_t i = 0; i < c->replication_addresses.count; i++) {
        const char *a = c->replication_addresses.items[i];

        if (!mg_buf_printf(b, error, "host replication %s %s%s scram-sha-256\n",
                           c->replication_user, a, strchr(a, '/') ? "" : "/32"))
            return false;
    }
    data_path(pg, "pg_hba.conf", path, sizeof(path));
    return mg_ha__write_file(path, b->data, b->len, 0600, &pg->runas, error);
}

bool
mg_ha__pg_configure(mg_ha_pg_t *pg, bool standby, const char *primary_host, int64_t primary_port,
                    mg_error_t *error)
{
    const mg_ha_config_t *c = pg->conf;
    char path[PATH_MAX], slot[MG_HA_NAME_SIZE];
    mg_buf_t b;
    bool ok = false;

    mg_buf_init(&b, 1024 * 1024);
    if (!include_our_conf(pg, error))
        goto done;
    /*
     * pgdaemon.conf: everything pgdaemon sets, rewritten every start. Every
     * string is quoted by postgresql.conf's rules and the conninfo by
     * libpq's: a host read from etcd cannot add a setting (issue 17, item 2).
     */
    if (!mg_buf_printf(&b, error,
                       "# pgdaemon.conf - written by pgdaemon at every start; do not edit\n"
                       "listen_addresses = ") ||
        !mg_ha__conf_quote(&b, "option \"address\"", c->address, error) ||
        !mg_buf_printf(&b, error,
                       "\nport = %lld\n"
                       "unix_socket_directories = ''\n"
                       "wal_level = replica\n"
                       "hot_standby = on\n"
                       "hot_standby_feedback = on\n"
                       "max_wal_senders = %lld\n"
                       "max_replication_slots = %lld\n"
                       "wal_keep_size = '256MB'\n"
                       "wal_log_hints = on\n"
                       "wal_retrieve_retry_interval = '500ms'\n"
                       "password_encryption = 'scram-sha-256'\n"
                       "cluster_name = ",
                       (long long)c->pg_port, (long long)(c->max_nodes * 2 + 4),
                       (long long)(c->max_nodes * 2 + 4)) ||
        !mg_ha__conf_quote(&b, "option \"name\"", c->name, error) ||
        !mg_buf_printf(&b, error, "\ninclude_if_exists = 'pgdaemon.sync.conf'\n"))
        goto done;
    for (size_t i = 0; i < c->pg_parameters.count; i++) {
        const char *p = c->pg_parameters.items[i];
        const char *eq = strchr(p, '=');

        if (eq == NULL || !guc_name_valid(p, (size_t)(eq - p))) {
            mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                         "invalid value for option \"postgres.parameters\": \"%s\" (expected "
                         "NAME=VALUE with a setting name of letters, digits, '_' and '.')",
                         p);
            goto done;
        }
        if (!mg_buf_printf(&b, error, "%.*s = ", (int)(eq - p), p) ||
            !mg_ha__conf_quote(&b, "option \"postgres.parameters\"", eq + 1, error) ||
            !mg_buf_append(&b, "\n", 1, error))
            goto done;
    }
    if (standby && primary_host == NULL) {
        if (!mg_buf_printf(&b, error, "recovery_target_timeline = 'latest'\n"))
            goto done;
    } else if (standby) {
        mg_buf_t ci;
        char port[24];
        bool ci_ok;

        mg_ha_slot_name(c->name, slot, sizeof(slot));
        snprintf(port, sizeof(port), "%lld", (long long)primary_port);
        mg_buf_init(&ci, 64 * 1024);
        ci_ok = mg_ha__conninfo_append(&ci, "host", primary_host, error) &&
                mg_ha__conninfo_append(&ci, "port", port, error) &&
                mg_ha__conninfo_append(&ci, "user", c->replication_user, error) &&
                mg_ha__conninfo_append(&ci, "passfile", pg->pgpass_path, error) &&
                mg_ha__conninfo_append(&ci, "application_name", c->name, error) &&
                mg_ha__conninfo_append(&ci, "connect_timeout", "5", error) &&
                mg_buf_append(&ci, "", 1, error) &&
                mg_buf_printf(&b, error, "primary_conninfo = ") &&
                mg_ha__conf_quote(&b, "the primary's connection string", ci.data, error) &&
                mg_buf_printf(&b, error,
                              "\nprimary_slot_name = '%s'\n"
                              "recovery_target_timeline = 'latest'\n",
                              slot);
        mg_buf_cleanup(&ci);
        if (!ci_ok)
            goto done;
    }
    data_path(pg, "pgdaemon.conf", path, sizeof(path));
    if (!mg_ha__write_file(path, b.data, b.len, 0600, &pg->runas, error))
        goto done;
    /* a standby has no sync standbys; a primary starts with what the daemon chose */
    if (standby)
        pg->sync_names[0] = '\0';
    if (!mg_ha__pg_write_sync(pg, pg->sync_names, error))
        goto done;
    mg_buf_reset(&b);
    if (!write_hba(pg, &b, error))
        goto done;
    /* standby.signal */
    data_path(pg, "standby.signal", path, sizeof(path));
    if (standby) {
        if (!mg_ha__write_file(path, "", 0, 0600, &pg->runas, error))
            goto done;
    } else {
        unlink(path);
    }
    ok = write_pgpass(pg, error);
done:
    mg_buf_cleanup(&b);
    return ok;
}

pid_t
mg_ha__pg_running(mg_ha_pg_t *pg)
{
    pid_t pid;

    if (pg->child > 0 && waitpid(pg->child, NULL, WNOHANG) == pg->child)
        pg->child = 0; /* reaped: it exited */
    if (pg->child > 0 && mg_ha__proc_alive(pg->child, 0))
        return pg->child;
    pid = mg_ha__postmaster_pid(pg->conf->data_dir);
    if (pid > 0 && mg_ha__proc_alive(pid, 0)) {
        char path[64], exe[PATH_MAX];
        ssize_t n;

        /* make sure the pid is a postgres process (pid files outlive crashes) */
        snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
        n = readlink(path, exe, sizeof(exe) - 1);
        if (n > 0) {
            exe[n] = '\0';
            if (strstr(exe, "postgres") == NULL)
                return 0;
        }
        return pid;
    }
    return 0;
}

static PGconn *
connect_local(mg_ha_pg_t *pg, int timeout_s)
{
    char port[16], timeout[16];
    const char *keys[] = {
        "host", "port", "user", "password", "dbname", "connect_timeout", "application_name", NULL};
    const char *vals[8];

    snprintf(port, sizeof(port), "%lld", (long long)pg->conf->pg_port);
    snprintf(timeout, sizeof(timeout), "%d", timeout_s);
    vals[0] = pg->local_host;
    vals[1] = port;
    vals[2] = pg->conf->superuser;
    vals[3] = pg->conf->superuser_password;
    vals[4] = "postgres";
    vals[5] = timeout;
    vals[6] = "pgdaemon";
    vals[7] = NULL;
    return PQconnectdbParams(keys, vals, 0);
}

bool
mg_ha__pg_start(mg_ha_pg_t *pg, mg_error_t *error)
{
    char tool[PATH_MAX];
    char *argv[] = {tool, "-D", pg->conf->data_dir, NULL};
    int64_t deadline = mg_ha__now_ms() + PG_START_TIMEOUT_MS;
    char port[16];
    const char *keys[] = {"host", "port", "dbname", "connect_timeout", NULL};
    const char *vals[] = {pg->local_host, port, "postgres", "2", NULL};

    if (mg_ha__pg_running(pg) > 0)
        return true;
    bin_path(pg, "postgres", tool, sizeof(tool));
    snprintf(port, sizeof(port), "%lld", (long long)pg->conf->pg_port);
    pg->child = mg_ha__spawn(&pg->runas, argv, NULL, pg->log_path, error);
    if (pg->child < 0) {
        pg->child = 0;
        return false;
    }
    for (;;) {
        PGPing ping = PQpingParams(keys, vals, 0);
        struct timespec ts = {0, 100 * 1000000L};

        if (ping == PQPING_OK)
            return true;
        /* a standby still short of consistency is started: it waits for WAL, not for us */
        if (ping == PQPING_REJECT && mg_ha__pg_is_standby_dir(pg))
            return true;
        if (waitpid(pg->child, NULL, WNOHANG) == pg->child) {
            pg->child = 0;
            return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                                "Postgres exited during startup; see \"%s\"", pg->log_path);
        }
        if (mg_ha__now_ms() > deadline)
            return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                                "Postgres did not accept connections within %ds; see \"%s\"",
                                PG_START_TIMEOUT_MS / 1000, pg->log_path);
        nanosleep(&ts, NULL);
    }
}

static bool
wait_gone(mg_ha_pg_t *pg, pid_t pid, int64_t timeout_ms)
{
    int64_t deadline = mg_ha__now_ms() + timeout_ms;

    while (mg_ha__now_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000L};

        if (pg->child == pid && waitpid(pid, NULL, WNOHANG) == pid) {
            pg->child = 0;
            return true;
        }
        if (!mg_ha__proc_alive(pid, 0))
            return true;
        nanosleep(&ts, NULL);
    }
    return false;
}

bool
mg_ha__pg_stop(mg_ha_pg_t *pg, mg_error_t *error)
{
    pid_t pid = mg_ha__pg_running(pg);

    if (pid <= 0)
        return true;
    kill(pid, SIGINT); /* fast shutdown */
    if (wait_gone(pg, pid, PG_STOP_TIMEOUT_MS))
        return true;
    kill(pid, SIGQUIT); /* immediate shutdown */
    if (wait_gone(pg, pid, 10000))
        return true;
    return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "Postgres (pid %d) did not stop", (int)pid);
}

bool
mg_ha__pg_check_slot(mg_ha_pg_t *pg, const char *host, int64_t port, const char *slot,
                     mg_error_t *error)
{
    char portbuf[16], cmd[128];
    const char *keys[] = {
        "host", "port", "user", "password", "replication", "dbname", "connect_timeout", NULL};
    const char *vals[8];
    PGconn *conn;
    PGresult *res;
    bool ok = false;

    snprintf(portbuf, sizeof(portbuf), "%lld", (long long)port);
    vals[0] = host;
    vals[1] = portbuf;
    vals[2] = pg->conf->replication_user;
    vals[3] = pg->conf->replication_password;
    vals[4] = "true";
    vals[5] = "replication";
    vals[6] = "5";
    vals[7] = NULL;
    conn = PQconnectdbParams(keys, vals, 0);
    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(error, conn, "could not connect to primary %s:%lld for replication",
                            host, (long long)port);
        PQfinish(conn);
        return false;
    }
    snprintf(cmd, sizeof(cmd), "READ_REPLICATION_SLOT %s", slot);
    res = PQexec(conn, cmd);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        mg_error_set_pgresult(error, res, "could not read slot \"%s\" on the primary", slot);
    else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_NOT_FOUND,
                     "replication slot \"%s\" does not exist on the primary %s:%lld", slot, host,
                     (long long)port);
    else
        ok = true;
    PQclear(res);
    PQfinish(conn);
    return ok;
}

bool
mg_ha__pg_basebackup(mg_ha_pg_t *pg, const char *host, int64_t port, const char *slot,
                     mg_error_t *error)
{
    const mg_ha_config_t *c = pg->conf;
    char tool[PATH_MAX], portbuf[16], passenv[PATH_MAX + 16];
    char *argv[] = {tool,     "-D",         c->data_dir,
                    "-h",     (char *)host, "-p",
                    portbuf,  "-U",         c->replication_user,
                    "-S",     (char *)slot, "-X",
                    "stream", "-c",         "fast",
                    "-w",     NULL};
    char *env[] = {passenv, NULL};

    bin_path(pg, "pg_basebackup", tool, sizeof(tool));
    snprintf(portbuf, sizeof(portbuf), "%lld", (long long)port);
    snprintf(passenv, sizeof(passenv), "PGPASSFILE=%s", pg->pgpass_path);
    if (!write_pgpass(pg, error))
        return false;
    if (mg_ha__pg_have_data(pg))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "data directory \"%s\" is not empty", c->data_dir);
    if (!make_data_dir(pg, error))
        return false;
    if (!mg_ha__run(&pg->runas, argv, env, pg->log_path, PG_TOOL_TIMEOUT_MS, NULL, error)) {
        mg_error_prefix(error, "pg_basebackup from %s:%lld failed", host, (long long)port);
        mg_ha__rmtree(c->data_dir); /* no half-copied data dir */
        return false;
    }
    return true;
}

static bool
exec_ok(PGconn *conn, PGresult *res, const char *what, mg_error_t *error)
{
    ExecStatusType st = PQresultStatus(res);

    (void)conn;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return true;
    return mg_error_set_pgresult(error, res, "could not %s", what);
}

bool
mg_ha__pg_ensure_roles(mg_ha_pg_t *pg, mg_error_t *error)
{
    const mg_ha_config_t *c = pg->conf;
    PGconn *conn = connect_local(pg, 5);
    PGresult *res = NULL;
    const char *params[1] = {c->replication_user};
    char *verifier = NULL, *ident = NULL, *lit = NULL;
    mg_buf_t sql;
    bool ok = false;

    mg_buf_init(&sql, 64 * 1024);
    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(error, conn, "could not connect to the local Postgres");
        goto done;
    }
    res = PQexecParams(conn, "SELECT 1 FROM pg_roles WHERE rolname = $1", 1, NULL, params, NULL,
                       NULL, 0);
    if (!exec_ok(conn, res, "look up the replication role", error))
        goto done;
    if (PQntuples(res) == 1) {
        ok = true;
        goto done;
    }
    PQclear(res);
    res = NULL;
    verifier =
        PQencryptPasswordConn(conn, c->replication_password, c->replication_user, "scram-sha-256");
    ident = PQescapeIdentifier(conn, c->replication_user, strlen(c->replication_user));
    if (verifier == NULL || ident == NULL) {
        mg_error_set_pgconn(error, conn, "could not prepare the replication role");
        goto done;
    }
    lit = PQescapeLiteral(conn, verifier, strlen(verifier));
    if (lit == NULL ||
        !mg_buf_printf(&sql, error, "CREATE ROLE %s WITH LOGIN REPLICATION PASSWORD %s", ident,
                       lit))
        goto done;
    res = PQexec(conn, sql.data);
    ok = exec_ok(conn, res, "create the replication role", error);
done:
    PQclear(res);
    PQfreemem(verifier);
    PQfreemem(ident);
    PQfreemem(lit);
    mg_buf_cleanup(&sql);
    PQfinish(conn);
    return ok;
}

bool
mg_ha__pg_current_lsn(mg_ha_pg_t *pg, uint64_t *lsn, mg_error_t *error)
{
    PGresult *res;
    bool ok = false;

    if (pg->lsn_conn != NULL && PQstatus(pg->lsn_conn) != CONNECTION_OK)
        mg_ha__pg_close(pg);
    if (pg->lsn_conn == NULL) {
        pg->lsn_conn = connect_local(pg, 2);
        if (PQstatus(pg->lsn_conn) != CONNECTION_OK) {
            mg_error_set_pgconn(error, pg->lsn_conn, "could not connect to the local Postgres");
            mg_ha__pg_close(pg);
            return false;
        }
    }
    res = PQexec(pg->lsn_conn,
                 "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        mg_error_set_pgresult(error, res, "could not read the current WAL position");
    else if (PQgetisnull(res, 0, 0))
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "Postgres is in recovery");
    else
        ok = mg_ha_lsn_parse(PQgetvalue(res, 0, 0), lsn) ||
             mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "could not parse the WAL position \"%s\"",
                          PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!ok)
        mg_ha__pg_close(pg);
    return ok;
}

void
mg_ha__pg_close(mg_ha_pg_t *pg)
{
    if (pg->lsn_conn != NULL)
        PQfinish(pg->lsn_conn);
    pg->lsn_conn = NULL;
}

bool
mg_ha__pg_ensure_slots(mg_ha_pg_t *pg, char names[][MG_HA_NAME_SIZE], size_t n, mg_error_t *error)
{
    PGconn *conn;
    bool ok = true;

    if (n == 0)
        return true;
    conn = connect_local(pg, 5);
    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(error, conn, "could not connect to the local Postgres");
        PQfinish(conn);
        return false;
    }
    for (size_t i = 0; i < n && ok; i++) {
        const char *params[1] = {names[i]};
        PGresult *res =
            PQexecParams(conn,
                         "SELECT pg_create_physical_replication_slot($1) WHERE NOT EXISTS "
                         "(SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                         1, NULL, params, NULL, NULL, 0);

        ok = exec_ok(conn, res, "create a replication slot", error);
        if (!ok)
            mg_error_prefix(error, "slot \"%s\"", names[i]);
        PQclear(res);
    }
    PQfinish(conn);
    return ok;
}

bool
mg_ha__pg_drop_slot(mg_ha_pg_t *pg, const char *name, bool *dropped, mg_error_t *error)
{
    PGconn *conn = connect_local(pg, 5);
    const char *params[1] = {name};
    PGresult *res;
    bool ok;

    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(error, conn, "could not connect to the local Postgres");
        PQfinish(conn);
        return false;
    }
    /* only an inactive slot: a node streaming on it is not gone after all */
    res = PQexecParams(conn,
                       "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = $1 AND NOT active",
                       1, NULL, params, NULL, NULL, 0);
    ok = exec_ok(conn, res, "drop a replication slot", error);
    *dropped = ok && PQntuples(res) == 1;
    PQclear(res);
    PQfinish(conn);
    return ok;
}

static void
copy_val(PGresult *res, int row, int col, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

static double
dbl_val(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? -1 : atof(PQgetvalue(res, row, col));
}

void
mg_ha__pg_collect(mg_ha_pg_t *pg, mg_ha_node_t *node, bool *in_recovery)
{
    PGconn *conn;
    PGresult *res = NULL;
    mg_error_t error;
    int timeout_s = (int)(pg->conf->retry_ms / 1000);

    node->pg_running = mg_ha__pg_running(pg) > 0;
    node->pg_reachable = node->pg_queries_ok = false;
    node->streaming = false;
    node->nslots = node->nreplication = 0;
    node->current_lsn[0] = node->receive_lsn[0] = node->replay_lsn[0] = '\0';
    snprintf(node->role, sizeof(node->role), "unknown");
    *in_recovery = false;
    if (!node->pg_running) {
        snprintf(node->pg_error, sizeof(node->pg_error), "Postgres is not running");
        return;
    }
    conn = connect_local(pg, timeout_s < 2 ? 2 : timeout_s);
    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(&error, conn, "cannot connect to Postgres");
        snprintf(node->pg_error, sizeof(node->pg_error), "%s", error.message);
        PQfinish(conn);
        return;
    }
    node->pg_reachable = true;
    res =
        PQexec(conn, "SELECT pg_is_in_recovery(), (SELECT system_identifier::text FROM "
                     "pg_control_system()), "
                     "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, "
                     "pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
                     "CASE WHEN pg_is_in_recovery() THEN (SELECT COALESCE(max(received_tli), 0) "
                     "FROM pg_stat_wal_receiver) ELSE (SELECT timeline_id FROM "
                     "pg_control_checkpoint()) END, "
                     "COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver LIMIT 1), "
                     "false)");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        mg_error_set_pgresult(&error, res, "connected but the status query failed");
        snprintf(node->pg_error, sizeof(node->pg_error), "%s", error.message);
        goto done;
    }
    *in_recovery = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    snprintf(node->role, sizeof(node->role), "%s", *in_recovery ? "replica" : "primary");
    copy_val(res, 0, 1, node->system_identifier, sizeof(node->system_identifier));
    copy_val(res, 0, 2, node->current_lsn, sizeof(node->current_lsn));
    copy_val(res, 0, 3, node->receive_lsn, sizeof(node->receive_lsn));
    copy_val(res, 0, 4, node->replay_lsn, sizeof(node->replay_lsn));
    node->timeline = atoll(PQgetvalue(res, 0, 5));
    node->streaming = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
    PQclear(res);
    res = PQexec(conn, "SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical' "
                       "ORDER BY 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mg_error_set_pgresult(&error, res, "connected but the slot query failed");
        snprintf(node->pg_error, sizeof(node->pg_error), "%s", error.message);
        goto done;
    }
    for (int i = 0; i < PQntuples(res) && node->nslots < MG_HA_MAX_SLOTS; i++)
        copy_val(res, i, 0, node->slots[node->nslots++], MG_HA_NAME_SIZE);
    PQclear(res);
    res = PQexec(conn, "SELECT application_name, state, sent_lsn::text, write_lsn::text, "
                       "flush_lsn::text, replay_lsn::text, extract(epoch FROM write_lag), "
                       "extract(epoch FROM flush_lag), extract(epoch FROM replay_lag), "
                       "to_char(reply_time AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
                       "FROM pg_stat_replication ORDER BY application_name");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mg_error_set_pgresult(&error, res, "connected but the replication query failed");
        snprintf(node->pg_error, sizeof(node->pg_error), "%s", error.message);
        goto done;
    }
    for (int i = 0; i < PQntuples(res) && node->nreplication < MG_HA_MAX_NODES; i++) {
        mg_ha_replication_t *r = &node->replication[node->nreplication++];

        copy_val(res, i, 0, r->application_name, sizeof(r->application_name));
        copy_val(res, i, 1, r->state, sizeof(r->state));
        copy_val(res, i, 2, r->sent_lsn, sizeof(r->sent_lsn));
        copy_val(res, i, 3, r->write_lsn, sizeof(r->write_lsn));
        copy_val(res, i, 4, r->flush_lsn, sizeof(r->flush_lsn));
        copy_val(res, i, 5, r->replay_lsn, sizeof(r->replay_lsn));
        r->write_lag_s = dbl_val(res, i, 6);
        r->flush_lag_s = dbl_val(res, i, 7);
        r->replay_lag_s = dbl_val(res, i, 8);
        copy_val(res, i, 9, r->reply_time, sizeof(r->reply_time));
    }
    node->pg_queries_ok = true;
    node->pg_error[0] = '\0';
done:
    PQclear(res);
    PQfinish(conn);
}

bool
mg_ha__pg_run_init_script(mg_ha_pg_t *pg, const char *script, mg_error_t *error)
{
    char host[128], port[32], user[128], pass[PATH_MAX + 16];
    char *argv[] = {"/bin/sh", (char *)script, NULL};
    char *env[] = {host, port, user, pass, "PGDATABASE=postgres", NULL};

    snprintf(host, sizeof(host), "PGHOST=%s", pg->local_host);
    snprintf(port, sizeof(port), "PGPORT=%lld", (long long)pg->conf->pg_port);
    snprintf(user, sizeof(user), "PGUSER=%s", pg->conf->superuser);
    snprintf(pass, sizeof(pass), "PGPASSFILE=%s", pg->pgpass_path);
    return mg_ha__run(&pg->runas, argv, env, pg->log_path, PG_TOOL_TIMEOUT_MS, NULL, error);
}

bool
mg_ha__sync_setting(const char *names, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_t list;
    const char *p = names;
    bool ok = true;

    if (names[0] == '\0')
        return mg_buf_append_str(out, "''", error);
    mg_buf_init(&list, 64 * 1024);
    ok = mg_buf_append_str(&list, "ANY 1 (", error);
    /* every standby name as a double-quoted identifier ("" inside) */
    while (ok && *p != '\0') {
        size_t len = strcspn(p, ",");

        while (len > 0 && p[len - 1] == ' ')
            len--;
        ok = mg_buf_append_str(&list, list.len > 7 ? ", \"" : "\"", error);
        for (size_t i = 0; ok && i < len; i++)
            ok = p[i] == '"' ? mg_buf_append_str(&list, "\"\"", error)
                             : mg_buf_append(&list, &p[i], 1, error);
        ok = ok && mg_buf_append(&list, "\"", 1, error);
        p += strcspn(p, ",");
        while (*p == ',' || *p == ' ')
            p++;
    }
    ok = ok && mg_buf_append(&list, ")", 2, error) &&
         mg_ha__conf_quote(out, "the synchronous standby names", list.data, error);
    mg_buf_cleanup(&list);
    return ok;
}

bool
mg_ha__pg_write_sync(mg_ha_pg_t *pg, const char *names, mg_error_t *error)
{
    char path[PATH_MAX];
    mg_buf_t b;
    bool ok;

    mg_buf_init(&b, 64 * 1024);
    ok = mg_buf_append_str(&b,
                           "# pgdaemon.sync.conf - written by pgdaemon\n"
                           "synchronous_standby_names = ",
                           error) &&
         mg_ha__sync_setting(names, &b, error) && mg_buf_append(&b, "\n", 1, error);
    if (ok) {
        if (names != pg->sync_names)
            snprintf(pg->sync_names, sizeof(pg->sync_names), "%s", names);
        data_path(pg, "pgdaemon.sync.conf", path, sizeof(path));
        ok = mg_ha__write_file(path, b.data, b.len, 0600, &pg->runas, error);
    }
    mg_buf_cleanup(&b);
    return ok;
}

bool
mg_ha__pg_apply_sync(mg_ha_pg_t *pg, const char *names, mg_error_t *error)
{
    char applied[sizeof(pg->sync_names)];

    snprintf(applied, sizeof(applied), "%s", pg->sync_names);
    if (!mg_ha__pg_write_sync(pg, names, error))
        return false;
    if (mg_ha__pg_running(pg) > 0 && !mg_ha__pg_reload(pg, error)) {
        /* written but not in force: say so, the next loop writes and reloads again */
        snprintf(pg->sync_names, sizeof(pg->sync_names), "%s", applied);
        return false;
    }
    return true;
}

/* exec_local runs one statement on the local Postgres. */
static bool
exec_local(mg_ha_pg_t *pg, const char *sql, const char *what, mg_error_t *error)
{
    PGconn *conn = connect_local(pg, 5);
    PGresult *res;
    bool ok;

    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(error, conn, "could not connect to the local Postgres");
        PQfinish(conn);
        return false;
    }
    res = PQexec(conn, sql);
    ok = exec_ok(conn, res, what, error);
    if (ok && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
        strcmp(PQgetvalue(res, 0, 0), "f") == 0)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "could not %s: it returned false", what);
    PQclear(res);
    PQfinish(conn);
    return ok;
}

bool
mg_ha__pg_reload(mg_ha_pg_t *pg, mg_error_t *error)
{
    return exec_local(pg, "SELECT pg_reload_conf()", "reload the configuration", error);
}

bool
mg_ha__pg_promote(mg_ha_pg_t *pg, mg_error_t *error)
{
    char path[PATH_MAX];

    if (!exec_local(pg, "SELECT pg_promote(true, 60)", "promote the standby", error))
        return false;
    data_path(pg, "standby.signal", path, sizeof(path));
    unlink(path); /* Postgres removed it; a restart must not come back as a standby */
    return true;
}

bool
mg_ha__pg_stop_now(mg_ha_pg_t *pg, bool immediate, mg_error_t *error)
{
    pid_t pid = mg_ha__pg_running(pg);

    if (pid <= 0)
        return true;
    kill(pid, immediate ? SIGQUIT : SIGINT);
    if (wait_gone(pg, pid, immediate ? 10000 : 20000))
        return true;
    kill(pid, SIGQUIT);
    if (wait_gone(pg, pid, 5000))
        return true;
    kill(pid, SIGKILL);
    if (wait_gone(pg, pid, 5000))
        return true;
    return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "Postgres (pid %d) did not stop", (int)pid);
}

bool
mg_ha__pg_is_standby_dir(const mg_ha_pg_t *pg)
{
    char path[PATH_MAX];

    data_path(pg, "standby.signal", path, sizeof(path));
    return access(path, F_OK) == 0;
}

/* controldata_field copies the value of "NAME:" from pg_controldata output; false if absent. */
static bool
controldata_field(const char *text, const char *name, char *out, size_t outsz)
{
    size_t n = strlen(name);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            size_t len;

            p += n + 1;
            while (*p == ' ' || *p == '\t')
                p++;
            len = strcspn(p, "\n");
            while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\r'))
                len--;
            if (len == 0 || len >= outsz)
                return false;
            memcpy(out, p, len);
            out[len] = '\0';
            return true;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return false;
}

bool
mg_ha__controldata_final_lsn(const char *text, char *lsn, size_t lsnsz, mg_error_t *error)
{
    char state[64], loc[MG_HA_LSN_SIZE];
    uint64_t parsed;

    if (!controldata_field(text, "Database cluster state", state, sizeof(state)))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "pg_controldata printed no cluster state");
    if (strcmp(state, "shut down") != 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "the cluster state is \"%s\", not \"shut down\": its last "
                            "checkpoint is not the end of its WAL",
                            state);
    if (!controldata_field(text, "Latest checkpoint location", loc, sizeof(loc)) ||
        !mg_ha_lsn_parse(loc, &parsed) || strlen(loc) >= lsnsz)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "pg_controldata printed no valid checkpoint location");
    snprintf(lsn, lsnsz, "%s", loc);
    return true;
}

bool
mg_ha__pg_final_lsn(mg_ha_pg_t *pg, char *out, size_t outsz, mg_error_t *error)
{
    char tool[PATH_MAX];
    char *argv[] = {tool, "-D", pg->conf->data_dir, NULL};
    char *env[] = {"LC_ALL=C", NULL};
    mg_buf_t buf;
    bool ok;

    bin_path(pg, "pg_controldata", tool, sizeof(tool));
    mg_buf_init(&buf, 64 * 1024);
    ok = mg_ha__run(&pg->runas, argv, env, pg->log_path, 30000, &buf, error) &&
         mg_buf_append(&buf, "", 1, error) &&
         mg_ha__controldata_final_lsn(buf.data, out, outsz, error);
    if (!ok)
        mg_error_prefix(error, "could not read the final LSN of \"%s\"", pg->conf->data_dir);
    mg_buf_cleanup(&buf);
    return ok;
}

bool
mg_ha__pg_rewind(mg_ha_pg_t *pg, const char *host, int64_t port, mg_error_t *error)
{
    const mg_ha_config_t *c = pg->conf;
    char tool[PATH_MAX], source[PATH_MAX + 256], passenv[PATH_MAX + 16];
    char *argv[] = {tool, "--target-pgdata", c->data_dir, "--source-server", source, NULL};
    char *env[] = {passenv, "LC_ALL=C", NULL};

    bin_path(pg, "pg_rewind", tool, sizeof(tool));
    {
        mg_buf_t ci;
        char portbuf[24];
        bool ok;

        snprintf(portbuf, sizeof(portbuf), "%lld", (long long)port);
        mg_buf_init(&ci, sizeof(source));
        ok = mg_ha__conninfo_append(&ci, "host", host, error) &&
             mg_ha__conninfo_append(&ci, "port", portbuf, error) &&
             mg_ha__conninfo_append(&ci, "user", c->superuser, error) &&
             mg_ha__conninfo_append(&ci, "dbname", "postgres", error) &&
             mg_ha__conninfo_append(&ci, "passfile", pg->pgpass_path, error) &&
             mg_ha__conninfo_append(&ci, "connect_timeout", "5", error) &&
             mg_buf_append(&ci, "", 1, error);
        if (ok)
            snprintf(source, sizeof(source), "%s", ci.data);
        mg_buf_cleanup(&ci);
        if (!ok)
            return false;
    }
    snprintf(passenv, sizeof(passenv), "PGPASSFILE=%s", pg->pgpass_path);
    if (!write_pgpass(pg, error))
        return false;
    if (!mg_ha__run(&pg->runas, argv, env, pg->log_path, PG_TOOL_TIMEOUT_MS, NULL, error)) {
        mg_error_prefix(error, "pg_rewind from %s:%lld failed", host, (long long)port);
        return false;
    }
    return true;
}

bool
mg_ha__pg_checkpoint_remote(mg_ha_pg_t *pg, const char *host, int64_t port, mg_error_t *error)
{
    char portbuf[16];
    const char *keys[] = {"host", "port", "user", "password", "dbname", "connect_timeout", NULL};
    const char *vals[7];
    PGconn *conn;
    PGresult *res;
    bool ok;

    snprintf(portbuf, sizeof(portbuf), "%lld", (long long)port);
    vals[0] = host;
    vals[1] = portbuf;
    vals[2] = pg->conf->superuser;
    vals[3] = pg->conf->superuser_password;
    vals[4] = "postgres";
    vals[5] = "5";
    vals[6] = NULL;
    conn = PQconnectdbParams(keys, vals, 0);
    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(error, conn, "could not connect to %s:%lld", host, (long long)port);
        PQfinish(conn);
        return false;
    }
    res = PQexec(conn, "CHECKPOINT");
    ok = exec_ok(conn, res, "run a checkpoint on the new primary", error);
    PQclear(res);
    PQfinish(conn);
    return ok;
}
