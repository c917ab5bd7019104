/*
 * tests/fuzz/core/fuzz_config.c - libFuzzer target for config files
 * (mg_config_load with --config: the JSON file migrate and pgdaemon read,
 * comments allowed), on an option table with every type: strings, a
 * secret, integers, durations and sizes with bounds, a boolean, an enum,
 * a list, and nested keys ("etcd.ttl").
 *
 * Checked: no crash, leak or sanitizer report; after a load every value
 * is within its option's bounds and choices; a failed load has a one-line
 * message; a string given for the secret option (4 bytes or more) is in
 * no error message, and neither is the password of a URI given for
 * "source".
 */
#include "mg/core.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    char *source;
    char *password;
    int64_t workers;
    int64_t ttl_ms;
    int64_t batch;
    bool follow;
    int mode;
    mg_strlist_t include;
    int64_t etcd_ttl;
    char *etcd_prefix;
} conf_t;

static const char *const modes[] = {"fast", "safe", "paranoid", NULL};

static const mg_config_option_t options[] = {
    {.name = "source", .type = MG_CONFIG_STRING, .offset = offsetof(conf_t, source)},
    {.name = "password",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(conf_t, password),
     .secret = true},
    {.name = "workers",
     .type = MG_CONFIG_INT,
     .offset = offsetof(conf_t, workers),
     .default_value = "4",
     .min = 1,
     .max = 64},
    {.name = "ttl",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(conf_t, ttl_ms),
     .min = 1,
     .max = 3600000},
    {.name = "batch",
     .type = MG_CONFIG_SIZE,
     .offset = offsetof(conf_t, batch),
     .min = 1,
     .max = INT64_C(1) << 40},
    {.name = "follow", .type = MG_CONFIG_BOOL, .offset = offsetof(conf_t, follow)},
    {.name = "mode", .type = MG_CONFIG_ENUM, .offset = offsetof(conf_t, mode), .choices = modes},
    {.name = "include", .type = MG_CONFIG_LIST, .offset = offsetof(conf_t, include)},
    {.name = "etcd.ttl",
     .type = MG_CONFIG_INT,
     .offset = offsetof(conf_t, etcd_ttl),
     .min = 1,
     .max = 600},
    {.name = "etcd.prefix", .type = MG_CONFIG_STRING, .offset = offsetof(conf_t, etcd_prefix)},
};

static void
finding(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_config: %s: %s\n", what, detail);
    abort();
}

/* string_member returns the top-level string member name of the file's JSON, or NULL. */
static const char *
string_member(yajl_val tree, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = tree != NULL ? yajl_tree_get(tree, path, yajl_t_string) : NULL;

    return v != NULL ? YAJL_GET_STRING(v) : NULL;
}

/* check_secrets: what the file gave as the secret, or as a URI's password, is not in message */
static void
check_secrets(const char *text, const char *message)
{
    yajl_val tree = yajl_tree_parse(text, NULL, 0);
    const char *pw = string_member(tree, "password"), *src = string_member(tree, "source");

    if (pw != NULL && strlen(pw) >= 4 && strstr(message, pw) != NULL)
        finding("the secret option's value is in an error", message);
    if (src != NULL) {
        const char *at = strrchr(src, '@'), *colon = strstr(src, "://");
        colon = colon != NULL ? strchr(colon + 3, ':') : NULL;
        if (at != NULL && colon != NULL && colon < at && at - colon > 4) {
            char *secret = strndup(colon + 1, (size_t)(at - colon - 1));
            if (secret != NULL && strchr(secret, '/') == NULL && strstr(message, secret) != NULL)
                finding("a URI's password is in an error", message);
            free(secret);
        }
    }
    yajl_tree_free(tree);
}

static char path[64];

static void
remove_file(void)
{
    unlink(path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    conf_t conf = {0};
    mg_config_t *c;
    mg_error_t error;
    char *text;
    FILE *fp;

    if (size > 256 * 1024)
        return 0;
    if (path[0] == '\0') {
        snprintf(path, sizeof(path), "/tmp/fuzz_config.%ld.json", (long)getpid());
        atexit(remove_file);
    }
    if ((fp = fopen(path, "wb")) == NULL || fwrite(data, 1, size, fp) != size || fclose(fp) != 0)
        abort();
    char *argv[] = {"fuzz", "--config", path, NULL};
    char *envp[] = {NULL};
    c = mg_config_new(options, sizeof(options) / sizeof(options[0]), &conf, "FUZZ_");
    if (c == NULL)
        abort();
    if (mg_config_load(c, 3, argv, envp, NULL, &error)) {
        if (conf.workers < 1 || conf.workers > 64 || conf.ttl_ms < 0 || conf.ttl_ms > 3600000 ||
            conf.batch < 0 || conf.batch > (INT64_C(1) << 40) || conf.mode < 0 || conf.mode > 2 ||
            conf.etcd_ttl < 0 || conf.etcd_ttl > 600)
            finding("a value out of its bounds was loaded", "");
        for (size_t i = 0; i < conf.include.count; i++)
            if (conf.include.items[i] == NULL)
                finding("a list item is NULL", "");
    } else {
        if (strchr(error.message, '\n') != NULL || error.message[0] == '\0')
            finding("an error message is not one line", error.message);
        if ((text = malloc(size + 1)) == NULL)
            abort();
        memcpy(text, data, size);
        text[size] = '\0';
        check_secrets(text, error.message);
        free(text);
    }
    mg_config_destroy(c);
    return 0;
}
