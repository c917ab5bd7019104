/*
 * tests/unit/ha/test_config.c - pgdaemon's options: a valid configuration
 * from file + environment + flags, and each invalid option rejected with
 * a message naming it.
 */
#include "mg/ha.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* load runs the loader + checks on flags and env; returns true on success. */
static bool
load(char **flags, char **env, mg_ha_config_t **conf, mg_error_t *error)
{
    char *argv[32] = {"run"};
    int argc = 1, first = 0;

    for (; flags != NULL && *flags != NULL; flags++)
        argv[argc++] = *flags;
    argv[argc] = NULL;
    *conf = NULL;
    if (!mg_ha_config_load(argc, argv, env, conf, &first, error))
        return false;
    if (!mg_ha_config_check(*conf, error)) {
        mg_ha_config_destroy(*conf);
        *conf = NULL;
        return false;
    }
    return true;
}

#define BASE_ENV                                            \
    "PGDAEMON_NAME=node1", "PGDAEMON_DATA_DIR=/tmp/x/data", \
        "PGDAEMON_ETCD_ENDPOINTS=http://127.0.0.1:2379",    \
        "PGDAEMON_POSTGRES_SUPERUSER_PASSWORD=su-secret",   \
        "PGDAEMON_POSTGRES_REPLICATION_PASSWORD=repl-secret"

static void
test_valid(void **state)
{
    char *env[] = {BASE_ENV, "PGDAEMON_TTL=20s", NULL};
    char *flags[] = {"--pg-port", "6543", "--loop-wait", "2s", NULL};
    mg_ha_config_t *c;
    mg_error_t error;

    if (!load(flags, env, &c, &error))
        fail_msg("%s", error.message);
    assert_string_equal(c->name, "node1");
    assert_int_equal(c->pg_port, 6543);
    assert_int_equal(c->ttl_ms, 20000);
    assert_int_equal(c->loop_ms, 2000);
    assert_int_equal(c->retry_ms, 3000);
    assert_int_equal(c->etcd_endpoints.count, 1);
    assert_string_equal(c->etcd_prefix, "/pgdaemon");
    assert_string_equal(c->cluster, "main");
    assert_int_equal(c->max_nodes, 5);
    assert_int_equal(c->on_stop, MG_HA_ON_STOP_FAST);
    assert_int_equal(c->start_timeout_ms, 300000);
    assert_string_equal(c->superuser_password, "su-secret");
    mg_ha_config_destroy(c);
}

static void
test_file(void **state)
{
    char path[] = "/tmp/test_ha_config_XXXXXX";
    int fd = mkstemp(path);
    const char *json = "{\"name\":\"n2\",\"data_dir\":\"/d\",\"etcd\":{\"endpoints\":"
                       "[\"http://127.0.0.1:1\",\"http://127.0.0.1:2\"]},\"postgres\":"
                       "{\"superuser_password\":\"a\",\"replication_password\":\"b\","
                       "\"parameters\":[\"shared_buffers=64MB\"]},\"max_nodes\":3,"
                       "\"join_timeout\":\"30s\",\"on_stop\":\"leave\","
                       "\"start_timeout\":\"10s\"}";
    char *flags[] = {"--config", path, NULL};
    char *env[] = {NULL};
    mg_ha_config_t *c;
    mg_error_t error;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    if (!load(flags, env, &c, &error))
        fail_msg("%s", error.message);
    assert_string_equal(c->name, "n2");
    assert_int_equal(c->etcd_endpoints.count, 2);
    assert_int_equal(c->pg_parameters.count, 1);
    assert_int_equal(c->max_nodes, 3);
    assert_int_equal(c->join_timeout_ms, 30000);
    assert_int_equal(c->on_stop, MG_HA_ON_STOP_LEAVE);
    assert_int_equal(c->start_timeout_ms, 10000); /* = ttl: the lowest accepted */
    mg_ha_config_destroy(c);
    unlink(path);
}

typedef struct {
    const char *what;
    char *extra_env;  /* appended to BASE_ENV (overrides), or NULL */
    char *flag;       /* one flag (with value after '=' when needed), or NULL */
    const char *want; /* substring of the error */
} bad_t;

static void
test_invalid(void **state)
{
    static const bad_t bad[] = {
        {"ttl too short for loop + 2 x retry", "PGDAEMON_TTL=5s", NULL, "loop_wait"},
        {"ttl not a duration", "PGDAEMON_TTL=soon", NULL, "ttl"},
        {"ttl below its bound", "PGDAEMON_TTL=1s", NULL, "ttl"},
        {"invalid node name", "PGDAEMON_NAME=Node One", NULL, "name"},
        {"empty node name", "PGDAEMON_NAME=", NULL, "name"},
        {"relative data dir", "PGDAEMON_DATA_DIR=data", NULL, "data_dir"},
        {"pg port out of range", NULL, "--pg-port=70000", "pg_port"},
        {"http port not a number", NULL, "--http-port=http", "http_port"},
        {"same pg and http port", NULL, "--http-port=5432", "http_port"},
        {"etcd prefix without slash", "PGDAEMON_ETCD_PREFIX=pg", NULL, "etcd.prefix"},
        {"max nodes zero", "PGDAEMON_MAX_NODES=0", NULL, "max_nodes"},
        {"unknown on_stop policy", "PGDAEMON_ON_STOP=explode", NULL, "on_stop"},
        {"pg parameter without value", "PGDAEMON_POSTGRES_PARAMETERS=fsync", NULL,
         "postgres.parameters"},
        {"pg parameter with a quote", "PGDAEMON_POSTGRES_PARAMETERS=a=b'c", NULL,
         "postgres.parameters"},
        {"password on the command line", NULL, "--postgres-superuser-password=x", "command line"},
        {"unknown flag", NULL, "--no-such-option=1", "no-such-option"},
        {"invalid cluster name", "PGDAEMON_CLUSTER=a/b", NULL, "cluster"},
        {"start timeout below the ttl", NULL, "--start-timeout=5s", "start_timeout"},
        {"start timeout not a duration", NULL, "--start-timeout=later", "start_timeout"},
        {"start timeout zero", NULL, "--start-timeout=0s", "start_timeout"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *env[] = {bad[i].extra_env ? bad[i].extra_env : "PGDAEMON_X_UNUSED=1", BASE_ENV, NULL};
        char *flags[] = {bad[i].flag, NULL};
        mg_ha_config_t *c;
        mg_error_t error;

        mg_error_clear(&error);
        if (load(flags, env, &c, &error)) {
            mg_ha_config_destroy(c);
            fail_msg("case \"%s\" was accepted", bad[i].what);
        }
        assert_null(c);
        if (strstr(error.message, bad[i].want) == NULL)
            fail_msg("case \"%s\": error \"%s\" does not name \"%s\"", bad[i].what, error.message,
                     bad[i].want);
        assert_null(strstr(error.message, "su-secret"));
    }
}

static void
test_missing_required(void **state)
{
    static char *const envs[][5] = {
        {"PGDAEMON_DATA_DIR=/d", "PGDAEMON_ETCD_ENDPOINTS=http://127.0.0.1:1",
         "PGDAEMON_POSTGRES_SUPERUSER_PASSWORD=a", "PGDAEMON_POSTGRES_REPLICATION_PASSWORD=b",
         NULL},
        {"PGDAEMON_NAME=n", "PGDAEMON_ETCD_ENDPOINTS=http://127.0.0.1:1",
         "PGDAEMON_POSTGRES_SUPERUSER_PASSWORD=a", "PGDAEMON_POSTGRES_REPLICATION_PASSWORD=b",
         NULL},
        {"PGDAEMON_NAME=n", "PGDAEMON_DATA_DIR=/d", "PGDAEMON_POSTGRES_SUPERUSER_PASSWORD=a",
         "PGDAEMON_POSTGRES_REPLICATION_PASSWORD=b", NULL},
        {"PGDAEMON_NAME=n", "PGDAEMON_DATA_DIR=/d", "PGDAEMON_ETCD_ENDPOINTS=http://127.0.0.1:1",
         "PGDAEMON_POSTGRES_REPLICATION_PASSWORD=b", NULL},
        {"PGDAEMON_NAME=n", "PGDAEMON_DATA_DIR=/d", "PGDAEMON_ETCD_ENDPOINTS=http://127.0.0.1:1",
         "PGDAEMON_POSTGRES_SUPERUSER_PASSWORD=a", NULL},
    };
    static const char *const want[] = {"\"name\"", "\"data_dir\"", "\"etcd.endpoints\"",
                                       "superuser_password", "replication_password"};

    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
        mg_ha_config_t *c;
        mg_error_t error;

        assert_false(load(NULL, (char **)envs[i], &c, &error));
        if (strstr(error.message, want[i]) == NULL)
            fail_msg("missing option %zu: \"%s\" does not name %s", i, error.message, want[i]);
    }
}

/* write_secret writes text to a new temp file with mode; returns its path (static buffer). */
static const char *
write_secret(const char *text, mode_t mode)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof(path), "/tmp/pgd-secret-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

/*
 * test_secrets_never_from_flags (issue 17, item 7): cluster_secret and every
 * password come from the config file, the environment or a *_file option,
 * never from a flag (other users read command lines in /proc). The code
 * before took --cluster-secret. A secret file must not be readable by
 * everyone; its first line is the secret; a secret given both ways is an
 * error.
 */
static void
test_secrets_never_from_flags(void **state)
{
    static const char *const flags_refused[] = {"--cluster-secret", "--etcd-password",
                                                "--postgres-superuser-password",
                                                "--postgres-replication-password"};
    char *env[] = {BASE_ENV, NULL};
    char arg[96], opt[96];
    mg_ha_config_t *c;
    mg_error_t error;
    const char *path;

    (void)state;
    for (size_t i = 0; i < sizeof(flags_refused) / sizeof(flags_refused[0]); i++) {
        char *flags[] = {(char *)flags_refused[i], "visible-in-ps", NULL};

        assert_false(load(flags, env, &c, &error));
        assert_non_null(strstr(error.message, "command line"));
        assert_null(strstr(error.message, "visible-in-ps"));
    }
    path = write_secret("from-a-file\nsecond line ignored\n", 0640);
    snprintf(arg, sizeof(arg), "%s", path);
    {
        char *flags[] = {"--cluster-secret-file", arg, NULL};

        if (!load(flags, env, &c, &error))
            fail_msg("%s", error.message);
        assert_string_equal(c->cluster_secret, "from-a-file");
        mg_ha_config_destroy(c);
    }
    /* the environment names the file just as well */
    snprintf(opt, sizeof(opt), "PGDAEMON_POSTGRES_REPLICATION_PASSWORD_FILE=%s", path);
    {
        char *env2[] = {"PGDAEMON_NAME=node1",
                        "PGDAEMON_DATA_DIR=/tmp/x/data",
                        "PGDAEMON_ETCD_ENDPOINTS=http://127.0.0.1:2379",
                        "PGDAEMON_POSTGRES_SUPERUSER_PASSWORD=su-secret",
                        opt,
                        NULL};

        if (!load(NULL, env2, &c, &error))
            fail_msg("%s", error.message);
        assert_string_equal(c->replication_password, "from-a-file");
        mg_ha_config_destroy(c);
    }
    /* both ways: refused, naming the option */
    {
        char *flags[] = {"--postgres-superuser-password-file", arg, NULL};

        assert_false(load(flags, env, &c, &error));
        assert_non_null(strstr(error.message, "postgres.superuser_password"));
    }
    unlink(path);
    /* readable by everyone: refused */
    path = write_secret("s3cret\n", 0644);
    snprintf(arg, sizeof(arg), "%s", path);
    {
        char *flags[] = {"--cluster-secret-file", arg, NULL};

        assert_false(load(flags, env, &c, &error));
        assert_non_null(strstr(error.message, "readable by every user"));
        assert_null(strstr(error.message, "s3cret"));
    }
    unlink(path);
    /* missing or empty */
    path = write_secret("\n", 0600);
    snprintf(arg, sizeof(arg), "%s", path);
    {
        char *flags[] = {"--cluster-secret-file", arg, NULL};
        char *missing[] = {"--cluster-secret-file", "/nonexistent/secret", NULL};

        assert_false(load(flags, env, &c, &error));
        assert_non_null(strstr(error.message, "empty"));
        assert_false(load(missing, env, &c, &error));
        assert_non_null(strstr(error.message, "/nonexistent/secret"));
    }
    unlink(path);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_secrets_never_from_flags),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
