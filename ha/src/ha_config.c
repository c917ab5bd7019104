/*
 * ha/src/ha_config.c - pgdaemon's options: one table for the config loader
 * (defaults < JSON file < PGDAEMON_* environment < flags) and the rules that
 * span several options.
 */
#include "ha_options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#define ENV_PREFIX "PGDAEMON_"

const char *const mg_ha__on_stop_choices[] = {"fast", "leave", NULL};

static const mg_config_option_t options[] = {MG_HA_NODE_OPTIONS(0)};

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
    if (!mg_ha__config_finish(&h->conf, h->loader, error)) {
        mg_config_destroy(h->loader);
        free(h);
        return false;
    }
    *config_out = &h->conf;
    return true;
}

_Static_assert(NOPTIONS == MG_HA_NODE_NOPTIONS, "MG_HA_NODE_NOPTIONS counts the node options");

/*
 * read_secret_file sets *value to the first line of path (at most 4 KB): a
 * regular file that everyone may read is refused, and so is a value given
 * both ways. option names the option for the errors.
 */
static bool
read_secret_file(const char *option, const char *path, char **value, mg_error_t *error)
{
    char buf[4097];
    struct stat st;
    size_t n;
    FILE *f;

    if (*value != NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "options \"%s\" and \"%s_file\" are both set: give one", option,
                            option);
    f = fopen(path, "re");
    if (f == NULL)
        return mg_error_set_errno(error, errno, "could not open \"%s\" (option \"%s_file\")", path,
                                  option);
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & S_IROTH) != 0) {
        fclose(f);
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not use \"%s\" (option \"%s_file\"): not a regular file, or "
                            "readable by every user (chmod o-r)",
                            path, option);
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (n == sizeof(buf) - 1 || buf[0] == '\0')
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not use \"%s\" (option \"%s_file\"): %s", path, option,
                            buf[0] == '\0' ? "its first line is empty" : "larger than 4 KB");
    *value = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return *value != NULL || mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, 12, "out of memory");
}

bool
mg_ha__config_finish(mg_ha_config_t *conf, const mg_config_t *loader, mg_error_t *error)
{
    const struct {
        const char *option;
        char **file, **value;
    } files[] = {
        {"cluster_secret", &conf->cluster_secret_file, &conf->cluster_secret},
        {"etcd.password", &conf->etcd_password_file, &conf->etcd_password},
        {"postgres.superuser_password", &conf->superuser_password_file, &conf->superuser_password},
        {"postgres.replication_password", &conf->replication_password_file,
         &conf->replication_password},
    };

    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].secret && mg_config_source(loader, options[i].name) == MG_CONFIG_SOURCE_FLAG)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "option \"%s\" may not be given on the command line (other users "
                                "can read it there): use the config file, the environment or a "
                                "file named by its _file option",
                                options[i].name);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (*files[i].file != NULL &&
            !read_secret_file(files[i].option, *files[i].file, files[i].value, error))
            return false;
    if (conf->pg_user == NULL) {
        conf->pg_user = strdup(geteuid() == 0 ? "postgres" : "");
        if (conf->pg_user == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, 12, "out of memory");
    }
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
