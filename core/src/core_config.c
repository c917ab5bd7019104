/*
 * core/src/core_config.c - table-driven configuration: defaults < JSON file
 * < environment < command-line flags, with types and bounds.
 *
 * Every value, whatever its source, goes through one parser (apply_text),
 * so a bound or a type is checked the same way everywhere, and every error
 * names the option, where the value came from and what was expected.
 */
#include "mg/core.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#define MAX_CONFIG_FILE_BYTES (4 * 1024 * 1024)
#define MAX_PATH_DEPTH        8

struct mg_config {
    const mg_config_option_t *options;
    size_t noptions;
    void *target;
    char *env_prefix;
    mg_config_source_t *sources;
    char **source_desc; /* per option, malloc'd */
};

/* ---- small helpers ---- */

static void *
field_ptr(const mg_config_t *c, size_t i)
{
    return (char *)c->target + c->options[i].offset;
}

static void
list_clear(mg_strlist_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static bool
list_append(mg_strlist_t *l, const char *item)
{
    char **grown = realloc(l->items, (l->count + 1) * sizeof(char *));
    char *copy = strdup(item);

    if (grown == NULL || copy == NULL) {
        free(copy);
        if (grown != NULL)
            l->items = grown;
        return false;
    }
    l->items = grown;
    l->items[l->count++] = copy;
    return true;
}

/* flag_name writes "name" with '.' and '_' as '-' into buf. */
static void
flag_name(const char *name, char *buf, size_t bufsz)
{
    size_t i;

    for (i = 0; name[i] != '\0' && i + 1 < bufsz; i++)
        buf[i] = (name[i] == '.' || name[i] == '_') ? '-' : name[i];
    buf[i] = '\0';
}

/* env_name writes PREFIX + NAME upper-cased with '.' and '-' as '_'. */
static void
env_name(const char *prefix, const char *name, char *buf, size_t bufsz)
{
    size_t o = (size_t)snprintf(buf, bufsz, "%s", prefix);

    for (size_t i = 0; name[i] != '\0' && o + 1 < bufsz; i++)
        buf[o++] = (name[i] == '.' || name[i] == '-') ? '_' : (char)toupper((unsigned char)name[i]);
    buf[o < bufsz ? o : bufsz - 1] = '\0';
}

static const char *
type_expectation(const mg_config_option_t *o)
{
    switch (o->type) {
    case MG_CONFIG_STRING:
        return "a string";
    case MG_CONFIG_INT:
        return "an integer";
    case MG_CONFIG_BOOL:
        return "a boolean (true/false, yes/no, on/off, 1/0)";
    case MG_CONFIG_DURATION:
        return "a duration such as 250ms, 5s, 2m or 1h";
    case MG_CONFIG_SIZE:
        return "a size such as 512, 64kB, 16MB or 1GB";
    case MG_CONFIG_ENUM:
        return "one of the listed choices";
    case MG_CONFIG_LIST:
        return "a list of strings";
    }
    return "a value";
}

static bool
parse_int64(const char *text, int64_t *out)
{
    char *end;
    long long v;

    if (text == NULL || *text == '\0' || isspace((unsigned char)*text))
        return false;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = (int64_t)v;
    return true;
}

/* parse_scaled parses "<integer><unit>" with a table of units. */
static bool
parse_scaled(const char *text, const char *const *units, const int64_t *scales, int64_t *out)
{
    char *end;
    long long v;

    if (text == NULL || !isdigit((unsigned char)*text))
        return false;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0)
        return false;
    while (*end == ' ')
        end++;
    for (int i = 0; units[i] != NULL; i++) {
        if (strcmp(end, units[i]) == 0) {
            if (v > INT64_MAX / scales[i])
                return false;
            *out = (int64_t)v * scales[i];
            return true;
        }
    }
    return false;
}

bool
mg_parse_duration_ms(const char *text, int64_t *ms)
{
    static const char *const units[] = {"", "ms", "s", "m", "min", "h", "d", NULL};
    static const int64_t scales[] = {1, 1, 1000, 60000, 60000, 3600000, 86400000};

    return parse_scaled(text, units, scales, ms);
}

bool
mg_parse_size_bytes(const char *text, int64_t *bytes)
{
    static const char *const units[] = {"",    "B", "k",  "K",   "kB", "KB", "KiB", "M", "MB",
                                        "MiB", "G", "GB", "GiB", "T",  "TB", "TiB", NULL};
    static const int64_t K = 1024, M = 1024 * 1024, G = 1024LL * 1024 * 1024,
                         T = 1024LL * 1024 * 1024 * 1024;
    static const int64_t scales[] = {1, 1, K, K, K, K, K, M, M, M, G, G, G, T, T, T};

    return parse_scaled(text, units, scales, bytes);
}

static bool
parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on", NULL};
    static const char *const no[] = {"0", "false", "no", "off", NULL};

    for (int i = 0; yes[i] != NULL; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static int
find_option(const mg_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->noptions; i++)
        if (strcmp(c->options[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool
set_source(mg_config_t *c, size_t i, mg_config_source_t source, const char *desc)
{
    char *copy = strdup(desc);

    if (copy == NULL)
        return false;
    free(c->source_desc[i]);
    c->source_desc[i] = copy;
    c->sources[i] = source;
    return true;
}

/* shown returns the value as it may appear in a message. */
static const char *
shown(const mg_config_option_t *o, const char *text)
{
    return o->secret ? MG_REDACTED : text;
}

static bool
value_error(mg_error_t *error, const mg_config_option_t *o, const char *desc, const char *text,
            const char *why)
{
    return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                        "invalid value for option \"%s\" from %s: \"%s\" %s", o->name, desc,
                        shown(o, text), why);
}

static bool
check_bounds(const mg_config_option_t *o, const char *desc, const char *text, int64_t v,
             mg_error_t *error)
{
    char why[160];

    if (o->min == 0 && o->max == 0)
        return true;
    if (v < o->min || v > o->max) {
        snprintf(why, sizeof(why), "is out of range: expected %s between %" PRId64 " and %" PRId64,
                 o->type == MG_CONFIG_DURATION ? "milliseconds"
                 : o->type == MG_CONFIG_SIZE   ? "bytes"
                                               : "a value",
                 o->min, o->max);
        return value_error(error, o, desc, text, why);
    }
    return true;
}

/*
 * apply_text parses text for option i and stores it. For LIST options
 * `append` adds to the list, otherwise the list is replaced by the
 * comma-separated items of text.
 */
static bool
apply_text(mg_config_t *c, size_t i, const char *text, bool append, mg_config_source_t source,
           const char *desc, mg_error_t *error)
{
    const mg_config_option_t *o = &c->options[i];
    void *p = field_ptr(c, i);
    char why[256];
    int64_t v;

    /* before anything can print it: a password inside, or the whole value if secret */
    mg_redact_learn(text, o->secret);
    switch (o->type) {
    case MG_CONFIG_STRING: {
        char *copy = strdup(text);
        if (copy == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "out of memory storing option \"%s\"", o->name);
        free(*(char **)p);
        *(char **)p = copy;
        break;
    }
    case MG_CONFIG_INT:
        if (!parse_int64(text, &v))
            return value_error(error, o, desc, text, "is not an integer");
        if (!check_bounds(o, desc, text, v, error))
            return false;
        *(int64_t *)p = v;
        break;
    case MG_CONFIG_DURATION:
        if (!mg_parse_duration_ms(text, &v))
            return value_error(error, o, desc, text,
                               "is not a duration: expected e.g. 250ms, 5s, 2m, 1h");
        if (!check_bounds(o, desc, text, v, error))
            return false;
        *(int64_t *)p = v;
        break;
    case MG_CONFIG_SIZE:
        if (!mg_parse_size_bytes(text, &v))
            return value_error(error, o, desc, text,
                               "is not a size: expected e.g. 512, 64kB, 16MB, 1GB");
        if (!check_bounds(o, desc, text, v, error))
            return false;
        *(int64_t *)p = v;
        break;
    case MG_CONFIG_BOOL: {
        bool b;
        if (!parse_bool(text, &b))
            return value_error(error, o, desc, text,
                               "is not a boolean: expected true/false, yes/no, on/off or 1/0");
        *(bool *)p = b;
        break;
    }
    case MG_CONFIG_ENUM: {
        int found = -1;
        size_t o2 = 0;
        for (int k = 0; o->choices != NULL && o->choices[k] != NULL; k++) {
            if (strcmp(text, o->choices[k]) == 0)
                found = k;
        }
        if (found < 0) {
            o2 = (size_t)snprintf(why, sizeof(why), "is not one of:");
            for (int k = 0; o->choices != NULL && o->choices[k] != NULL && o2 < sizeof(why); k++)
                o2 += (size_t)snprintf(why + o2, sizeof(why) - o2, " %s", o->choices[k]);
            return value_error(error, o, desc, text, why);
        }
        *(int *)p = found;
        break;
    }
    case MG_CONFIG_LIST: {
        mg_strlist_t *l = p;
        if (!append) {
            list_clear(l);
            char *dup = strdup(text);
            char *save = NULL;
            if (dup == NULL)
                return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                    "out of memory storing option \"%s\"", o->name);
            for (char *tok = strtok_r(dup, ",", &save); tok != NULL;
                 tok = strtok_r(NULL, ",", &save)) {
                while (isspace((unsigned char)*tok))
                    tok++;
                size_t n = strlen(tok);
                while (n > 0 && isspace((unsigned char)tok[n - 1]))
                    tok[--n] = '\0';
                if (n == 0)
                    continue;
                if (!list_append(l, tok)) {
                    free(dup);
                    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                        "out of memory storing option \"%s\"", o->name);
                }
            }
            free(dup);
        } else if (!list_append(l, text)) {
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "out of memory storing option \"%s\"", o->name);
        }
        break;
    }
    }
    if (!set_source(c, i, source, desc))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "out of memory storing option \"%s\"", o->name);
    return true;
}

/* ---- lifecycle ---- */

mg_config_t *
mg_config_new(const mg_config_option_t *options, size_t noptions, void *target,
              const char *env_prefix)
{
    mg_config_t *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->options = options;
    c->noptions = noptions;
    c->target = target;
    c->env_prefix = strdup(env_prefix != NULL ? env_prefix : "");
    c->sources = calloc(noptions + 1, sizeof(*c->sources));
    c->source_desc = calloc(noptions + 1, sizeof(*c->source_desc));
    if (c->env_prefix == NULL || c->sources == NULL || c->source_desc == NULL) {
        mg_config_destroy(c);
        return NULL;
    }
    return c;
}

void
mg_config_destroy(mg_config_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; c->source_desc != NULL && i < c->noptions; i++) {
        void *p = field_ptr(c, i);
        if (c->options[i].type == MG_CONFIG_STRING) {
            free(*(char **)p);
            *(char **)p = NULL;
        } else if (c->options[i].type == MG_CONFIG_LIST) {
            list_clear(p);
        }
        free(c->source_desc[i]);
    }
    free(c->source_desc);
    free(c->sources);
    free(c->env_prefix);
    free(c);
}

/* ---- JSON config file ---- */

typedef struct {
    mg_config_t *config;
    const char *path;
    const unsigned char *text;
    yajl_handle handle;
    char *keys[MAX_PATH_DEPTH + 1]; /* current key at each depth */
    int depth;                      /* number of open maps - 1 */
    int list_option;                /* option being filled from an array, or -1 */
    int array_depth;
    mg_error_t *error;
    bool failed;
} file_ctx_t;

static int
line_of(const file_ctx_t *f)
{
    size_t consumed = yajl_get_bytes_consumed(f->handle);
    int line = 1;

    for (size_t i = 0; i < consumed && f->text[i] != '\0'; i++)
        if (f->text[i] == '\n')
            line++;
    return line;
}

/* full_key joins the open map keys with '.' into buf. */
static void
full_key(const file_ctx_t *f, char *buf, size_t bufsz)
{
    size_t o = 0;

    buf[0] = '\0';
    for (int d = 0; d <= f->depth && d <= MAX_PATH_DEPTH; d++) {
        if (f->keys[d] == NULL)
            continue;
        o += (size_t)snprintf(buf + o, o < bufsz ? bufsz - o : 0, "%s%s", o > 0 ? "." : "",
                              f->keys[d]);
    }
}

static void
file_desc(const file_ctx_t *f, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "file %s line %d", f->path, line_of(f));
}

static int
file_fail(file_ctx_t *f)
{
    f->failed = true;
    return 0; /* stop the parser */
}

/*
 * file_scalar handles one JSON scalar value. json_kind names what the file
 * held ("a string", "a number", "a boolean", "null").
 */
static int
file_scalar(file_ctx_t *f, const char *text, const char *json_kind)
{
    char key[512], desc[600];
    int i;

    file_desc(f, desc, sizeof(desc));
    if (f->list_option >= 0) {
        const mg_config_option_t *o = &f->config->options[f->list_option];
        if (strcmp(json_kind, "a string") != 0) {
            mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                         "invalid value for option \"%s\" from %s: expected a list of strings, "
                         "got %s in the list",
                         o->name, desc, json_kind);
            return file_fail(f);
        }
        if (!apply_text(f->config, (size_t)f->list_option, text, true, MG_CONFIG_SOURCE_FILE, desc,
                        f->error))
            return file_fail(f);
        return 1;
    }
    if (f->array_depth > 0) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_PARSE,
                     "unexpected nested list in %s", desc);
        return file_fail(f);
    }
    full_key(f, key, sizeof(key));
    i = find_option(f->config, key);
    if (i < 0) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                     "unknown option \"%s\" in %s", key, desc);
        return file_fail(f);
    }
    const mg_config_option_t *o = &f->config->options[i];
    bool type_ok;
    switch (o->type) {
    case MG_CONFIG_STRING:
    case MG_CONFIG_ENUM:
        type_ok = strcmp(json_kind, "a string") == 0;
        break;
    case MG_CONFIG_INT:
        type_ok = strcmp(json_kind, "a number") == 0;
        break;
    case MG_CONFIG_BOOL:
        type_ok = strcmp(json_kind, "a boolean") == 0;
        break;
    case MG_CONFIG_DURATION:
    case MG_CONFIG_SIZE:
        type_ok = strcmp(json_kind, "a string") == 0 || strcmp(json_kind, "a number") == 0;
        break;
    case MG_CONFIG_LIST:
    default:
        /* A single string is accepted as a one-item list. */
        type_ok = strcmp(json_kind, "a string") == 0;
        break;
    }
    if (!type_ok) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "invalid value for option \"%s\" from %s: expected %s, got %s", o->name, desc,
                     type_expectation(o), json_kind);
        return file_fail(f);
    }
    if (o->type == MG_CONFIG_LIST) {
        list_clear(field_ptr(f->config, (size_t)i));
        if (!apply_text(f->config, (size_t)i, text, true, MG_CONFIG_SOURCE_FILE, desc, f->error))
            return file_fail(f);
        return 1;
    }
    if (!apply_text(f->config, (size_t)i, text, false, MG_CONFIG_SOURCE_FILE, desc, f->error))
        return file_fail(f);
    return 1;
}

static int
cb_null(void *ctx)
{
    return file_scalar(ctx, "null", "null");
}

static int
cb_boolean(void *ctx, int v)
{
    return file_scalar(ctx, v ? "true" : "false", "a boolean");
}

static int
cb_number(void *ctx, const char *s, size_t len)
{
    char buf[64];

    snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) ? len : sizeof(buf) - 1), s);
    return file_scalar(ctx, buf, "a number");
}

static int
cb_string(void *ctx, const unsigned char *s, size_t len)
{
    file_ctx_t *f = ctx;
    char *buf;
    int rc;

    if (memchr(s, '\0', len) != NULL) {
        char desc[600];
        file_desc(f, desc, sizeof(desc));
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_PARSE,
                     "string with a NUL character in %s", desc);
        return file_fail(f);
    }
    buf = strndup((const char *)s, len);
    if (buf == NULL) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return file_fail(f);
    }
    rc = file_scalar(f, buf, "a string");
    free(buf);
    return rc;
}

static int
cb_start_map(void *ctx)
{
    file_ctx_t *f = ctx;
    char key[512], desc[600];

    if (f->array_depth > 0) {
        file_desc(f, desc, sizeof(desc));
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_PARSE,
                     "unexpected object inside a list in %s", desc);
        return file_fail(f);
    }
    if (f->depth >= 0) {
        /* Opening a map under a key that names a plain option is a type error. */
        full_key(f, key, sizeof(key));
        int i = find_option(f->config, key);
        if (i >= 0) {
            file_desc(f, desc, sizeof(desc));
            mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                         "invalid value for option \"%s\" from %s: expected %s, got an object", key,
                         desc, type_expectation(&f->config->options[i]));
            return file_fail(f);
        }
    }
    if (f->depth + 1 >= MAX_PATH_DEPTH) {
        file_desc(f, desc, sizeof(desc));
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_LIMIT,
                     "objects nested deeper than %d levels in %s", MAX_PATH_DEPTH, desc);
        return file_fail(f);
    }
    f->depth++;
    f->keys[f->depth] = NULL;
    return 1;
}

static int
cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
    file_ctx_t *f = ctx;

    free(f->keys[f->depth]);
    f->keys[f->depth] = strndup((const char *)s, len);
    if (f->keys[f->depth] == NULL) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return file_fail(f);
    }
    return 1;
}

static int
cb_end_map(void *ctx)
{
    file_ctx_t *f = ctx;

    free(f->keys[f->depth]);
    f->keys[f->depth] = NULL;
    f->depth--;
    return 1;
}

static int
cb_start_array(void *ctx)
{
    file_ctx_t *f = ctx;
    char key[512], desc[600];

    file_desc(f, desc, sizeof(desc));
    if (f->array_depth > 0 || f->depth < 0) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_PARSE, "unexpected list in %s",
                     desc);
        return file_fail(f);
    }
    full_key(f, key, sizeof(key));
    int i = find_option(f->config, key);
    if (i < 0) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                     "unknown option \"%s\" in %s", key, desc);
        return file_fail(f);
    }
    if (f->config->options[i].type != MG_CONFIG_LIST) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "invalid value for option \"%s\" from %s: expected %s, got a list", key, desc,
                     type_expectation(&f->config->options[i]));
        return file_fail(f);
    }
    list_clear(field_ptr(f->config, (size_t)i));
    if (!set_source(f->config, (size_t)i, MG_CONFIG_SOURCE_FILE, desc)) {
        mg_error_set(f->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return file_fail(f);
    }
    f->list_option = i;
    f->array_depth++;
    return 1;
}

static int
cb_end_array(void *ctx)
{
    file_ctx_t *f = ctx;

    f->array_depth--;
    f->list_option = -1;
    return 1;
}

static const yajl_callbacks file_callbacks = {
    cb_null,      cb_boolean, NULL,       NULL,           cb_number,    cb_string,
    cb_start_map, cb_map_key, cb_end_map, cb_start_array, cb_end_array,
};

/* read_file reads path into a NUL-terminated malloc'd buffer. */
static bool
read_file(const char *path, char **out, size_t *outlen, mg_error_t *error)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len;

    if (fp == NULL)
        return mg_error_set_errno(error, errno, "could not open config file \"%s\"", path);
    buf = malloc(MAX_CONFIG_FILE_BYTES + 1);
    if (buf == NULL) {
        fclose(fp);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    len = fread(buf, 1, MAX_CONFIG_FILE_BYTES + 1, fp);
    if (ferror(fp)) {
        int e = errno;
        fclose(fp);
        free(buf);
        return mg_error_set_errno(error, e, "could not read config file \"%s\"", path);
    }
    fclose(fp);
    if (len > MAX_CONFIG_FILE_BYTES) {
        free(buf);
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_LIMIT,
                            "config file \"%s\" is larger than %d bytes", path,
                            MAX_CONFIG_FILE_BYTES);
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return true;
}

static bool
load_file(mg_config_t *c, const char *path, mg_error_t *error)
{
    file_ctx_t f = {0};
    char *text = NULL;
    size_t len = 0;
    bool ok = false;
    yajl_status st;

    if (!read_file(path, &text, &len, error))
        return false;
    f.config = c;
    f.path = path;
    f.text = (const unsigned char *)text;
    f.depth = -1;
    f.list_option = -1;
    f.error = error;
    f.handle = yajl_alloc(&file_callbacks, NULL, &f);
    if (f.handle == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    yajl_config(f.handle, yajl_allow_comments, 1);
    st = yajl_parse(f.handle, (const unsigned char *)text, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(f.handle);
    if (f.failed)
        goto done;
    if (st != yajl_status_ok) {
        unsigned char *msg = yajl_get_error(f.handle, 0, (const unsigned char *)text, len);
        char *nl;
        /* yajl's message may end with a newline; keep one line. */
        if (msg != NULL && (nl = strchr((char *)msg, '\n')) != NULL)
            *nl = '\0';
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_PARSE,
                     "could not parse config file \"%s\" at line %d: %s", path, line_of(&f),
                     msg ? (const char *)msg : "invalid JSON");
        if (msg != NULL)
            yajl_free_error(f.handle, msg);
        goto done;
    }
    ok = true;
done:
    for (int d = 0; d <= MAX_PATH_DEPTH; d++)
        free(f.keys[d]);
    if (f.handle != NULL)
        yajl_free(f.handle);
    free(text);
    return ok;
}

/* ---- environment ---- */

static const char *
env_lookup(char **envp, const char *name)
{
    size_t n = strlen(name);

    if (envp == NULL)
        return getenv(name);
    for (char **e = envp; *e != NULL; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static bool
load_env(mg_config_t *c, char **envp, mg_error_t *error)
{
    char var[256], desc[300];

    for (size_t i = 0; i < c->noptions; i++) {
        env_name(c->env_prefix, c->options[i].name, var, sizeof(var));
        const char *v = env_lookup(envp, var);
        if (v == NULL)
            continue;
        snprintf(desc, sizeof(desc), "env %s", var);
        if (!apply_text(c, i, v, false, MG_CONFIG_SOURCE_ENV, desc, error))
            return false;
    }
    return true;
}

/* ---- flags ---- */

/*
 * find_config_path returns the --config value from argv (flag wins over the
 * environment), or NULL.
 */
static const char *
find_config_path(const mg_config_t *c, int argc, char **argv, char **envp)
{
    char var[256];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    env_name(c->env_prefix, "config", var, sizeof(var));
    return env_lookup(envp, var);
}

/* Long option values: index into options, +OFFSET_NO for --no-NAME. */
#define OPT_BASE   1000
#define OPT_NO     100000
#define OPT_CONFIG 999

/*
 * load_flags applies argv's flags through getopt_long. Longer than ~120
 * lines on purpose: the table of long options and the one switch over what
 * getopt_long returns read best together (each case is a few lines).
 */
static bool
load_flags(mg_config_t *c, int argc, char **argv, int *first_positional, mg_error_t *error)
{
    size_t nlong = 0;
    struct option *longopts = calloc(2 * c->noptions + 2, sizeof(struct option));
    char **names = calloc(2 * c->noptions + 1, sizeof(char *));
    char shortopts[256] = ":";
    size_t so = 1;
    bool ok = false;
    bool *flag_seen = calloc(c->noptions + 1, sizeof(bool));
    char fname[200], desc[256];

    if (longopts == NULL || names == NULL || flag_seen == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < c->noptions; i++) {
        const mg_config_option_t *o = &c->options[i];
        flag_name(o->name, fname, sizeof(fname));
        names[nlong] = strdup(fname);
        if (names[nlong] == NULL)
            goto oom;
        longopts[nlong] = (struct option){
            names[nlong], o->type == MG_CONFIG_BOOL ? no_argument : required_argument, NULL,
            OPT_BASE + (int)i};
        nlong++;
        if (o->type == MG_CONFIG_BOOL) {
            char noname[210];
            snprintf(noname, sizeof(noname), "no-%s", fname);
            names[nlong] = strdup(noname);
            if (names[nlong] == NULL)
                goto oom;
            longopts[nlong] =
                (struct option){names[nlong], no_argument, NULL, OPT_BASE + OPT_NO + (int)i};
            nlong++;
        }
        if (o->short_flag != 0 && so + 3 < sizeof(shortopts)) {
            shortopts[so++] = o->short_flag;
            if (o->type != MG_CONFIG_BOOL)
                shortopts[so++] = ':';
        }
    }
    longopts[nlong++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    shortopts[so] = '\0';

    optind = 0; /* glibc: full re-initialisation, so the loader can run again */
    opterr = 0;
    for (;;) {
        int longindex = -1;
        int ch = getopt_long(argc, argv, shortopts, longopts, &longindex);
        int idx = -1;
        bool negate = false;

        if (ch == -1)
            break;
        if (ch == OPT_CONFIG)
            continue; /* already applied as the file */
        if (ch == '?') {
            const char *bad = argv[optind - 1];
            if (optopt != 0)
                mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                             "unknown option \"-%c\"", optopt);
            else
                mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                             "unknown option \"%s\"", bad);
            goto done;
        }
        if (ch == ':') {
            const char *bad = argv[optind - 1];
            if (optopt != 0 && optopt < OPT_CONFIG)
                mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                             "option \"-%c\" needs a value", optopt);
            else
                mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                             "option \"%s\" needs a value", bad);
            goto done;
        }
        if (ch >= OPT_BASE + OPT_NO) {
            idx = ch - OPT_BASE - OPT_NO;
            negate = true;
        } else if (ch >= OPT_BASE) {
            idx = ch - OPT_BASE;
        } else {
            for (size_t i = 0; i < c->noptions; i++)
                if (c->options[i].short_flag == ch)
                    idx = (int)i;
        }
        if (idx < 0 || (size_t)idx >= c->noptions) {
            mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                         "unknown option \"%c\"", ch);
            goto done;
        }
        const mg_config_option_t *o = &c->options[idx];
        flag_name(o->name, fname, sizeof(fname));
        snprintf(desc, sizeof(desc), "flag --%s%s", negate ? "no-" : "", fname);
        if (o->type == MG_CONFIG_BOOL) {
            if (!apply_text(c, (size_t)idx, negate ? "false" : "true", false, MG_CONFIG_SOURCE_FLAG,
                            desc, error))
                goto done;
        } else if (o->type == MG_CONFIG_LIST) {
            /* The first flag replaces what the file or env gave; later ones add. */
            if (!flag_seen[idx])
                list_clear(field_ptr(c, (size_t)idx));
            if (!apply_text(c, (size_t)idx, optarg, true, MG_CONFIG_SOURCE_FLAG, desc, error))
                goto done;
        } else if (!apply_text(c, (size_t)idx, optarg, false, MG_CONFIG_SOURCE_FLAG, desc, error)) {
            goto done;
        }
        flag_seen[idx] = true;
    }
    if (first_positional != NULL)
        *first_positional = optind;
    ok = true;
    goto done;
oom:
    mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
done:
    for (size_t i = 0; names != NULL && i < nlong; i++)
        free(names[i]);
    free(names);
    free(longopts);
    free(flag_seen);
    return ok;
}

/* ---- load ---- */

bool
mg_config_load(mg_config_t *c, int argc, char **argv, char **envp, int *first_positional,
               mg_error_t *error)
{
    const char *path;
    char var[256], fname[200];

    for (size_t i = 0; i < c->noptions; i++) {
        if (c->options[i].default_value == NULL)
            continue;
        if (!apply_text(c, i, c->options[i].default_value, false, MG_CONFIG_SOURCE_DEFAULT,
                        "default", error)) {
            mg_error_prefix(error, "bad built-in default");
            return false;
        }
    }
    path = find_config_path(c, argc, argv, envp);
    if (path != NULL && *path != '\0' && !load_file(c, path, error))
        return false;
    if (!load_env(c, envp, error))
        return false;
    if (!load_flags(c, argc, argv, first_positional, error))
        return false;
    for (size_t i = 0; i < c->noptions; i++) {
        if (!c->options[i].required || c->sources[i] != MG_CONFIG_SOURCE_UNSET)
            continue;
        flag_name(c->options[i].name, fname, sizeof(fname));
        env_name(c->env_prefix, c->options[i].name, var, sizeof(var));
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                            "missing required option \"%s\": set flag --%s, env %s or \"%s\" in "
                            "the config file",
                            c->options[i].name, fname, var, c->options[i].name);
    }
    return true;
}

mg_config_source_t
mg_config_source(const mg_config_t *c, const char *name)
{
    int i = find_option(c, name);

    return i < 0 ? MG_CONFIG_SOURCE_UNSET : c->sources[i];
}

const char *
mg_config_source_describe(const mg_config_t *c, const char *name)
{
    int i = find_option(c, name);

    if (i < 0)
        return NULL;
    return c->source_desc[i] != NULL ? c->source_desc[i] : "unset";
}

/* ---- help and dump ---- */

void
mg_config_print_help(const mg_config_option_t *options, size_t noptions, const char *env_prefix,
                     FILE *stream)
{
    char fname[200], var[256], left[300];

    for (size_t i = 0; i < noptions; i++) {
        const mg_config_option_t *o = &options[i];
        flag_name(o->name, fname, sizeof(fname));
        env_name(env_prefix ? env_prefix : "", o->name, var, sizeof(var));
        if (o->type == MG_CONFIG_BOOL)
            snprintf(left, sizeof(left), "%s%c%s--[no-]%s", o->short_flag ? "-" : "",
                     o->short_flag ? o->short_flag : ' ', o->short_flag ? ", " : "  ", fname);
        else
            snprintf(left, sizeof(left), "%s%c%s--%s %s", o->short_flag ? "-" : "",
                     o->short_flag ? o->short_flag : ' ', o->short_flag ? ", " : "  ", fname,
                     o->metavar ? o->metavar : "VALUE");
        fprintf(stream, "  %-34s %s", left, o->help ? o->help : "");
        if (o->type == MG_CONFIG_ENUM && o->choices != NULL) {
            fprintf(stream, " (");
            for (int k = 0; o->choices[k] != NULL; k++)
                fprintf(stream, "%s%s", k ? "|" : "", o->choices[k]);
            fprintf(stream, ")");
        }
        if (o->type == MG_CONFIG_LIST)
            fprintf(stream, " [repeatable]");
        if (o->required)
            fprintf(stream, " [required]");
        if (o->default_value != NULL && !o->secret)
            fprintf(stream, " [default: %s]", o->default_value);
        fprintf(stream, " [env %s]\n", var);
    }
}

static void
dump_str(yajl_gen g, const char *s)
{
    char *r = mg_redact_dup(s != NULL ? s : "");

    mg_json_str(g, r != NULL ? r : "");
    free(r);
}

void
mg_config_dump_json(const mg_config_t *c, FILE *stream)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;

    if (g == NULL)
        return;
    yajl_gen_map_open(g);
    for (size_t i = 0; i < c->noptions; i++) {
        const mg_config_option_t *o = &c->options[i];
        void *p = field_ptr(c, i);

        yajl_gen_string(g, (const unsigned char *)o->name, strlen(o->name));
        if (c->sources[i] == MG_CONFIG_SOURCE_UNSET) {
            yajl_gen_null(g);
            continue;
        }
        if (o->secret) {
            dump_str(g, MG_REDACTED);
            continue;
        }
        switch (o->type) {
        case MG_CONFIG_STRING:
            dump_str(g, *(char **)p);
            break;
        case MG_CONFIG_INT:
        case MG_CONFIG_DURATION:
        case MG_CONFIG_SIZE:
            yajl_gen_integer(g, (long long)*(int64_t *)p);
            break;
        case MG_CONFIG_BOOL:
            yajl_gen_bool(g, *(bool *)p);
            break;
        case MG_CONFIG_ENUM:
            dump_str(g, o->choices[*(int *)p]);
            break;
        case MG_CONFIG_LIST: {
            const mg_strlist_t *l = p;
            yajl_gen_array_open(g);
            for (size_t k = 0; k < l->count; k++)
                dump_str(g, l->items[k]);
            yajl_gen_array_close(g);
            break;
        }
        }
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    fwrite(buf, 1, len, stream);
    fputc('\n', stream);
    yajl_gen_free(g);
}
