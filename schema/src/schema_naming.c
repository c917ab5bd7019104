/*
 * schema/src/schema_naming.c - deterministic PostgreSQL names for MongoDB
 * databases and collections (docs/naming.md).
 *
 * A name is kept when it is already a plain lower-case identifier. Otherwise
 * it is lower-cased, every byte outside [a-z0-9_] becomes '_', a leading
 * digit gets a "c_" prefix, and it is cut to fit 63 bytes. Whenever two
 * sources would land on the same name, or a name had to be cut, every name
 * involved gets "_" + 8 hex digits of the FNV-1a hash of the ORIGINAL name,
 * so the result never depends on the order collections are listed in.
 */
#include "mg/schema.h"

#include <stdlib.h>
#include <string.h>

#define HASH_SUFFIX_LEN 9 /* "_" + 8 hex digits */

struct mg_schema_naming {
    mg_schema_naming_entry_t *entries;
    size_t count;
    size_t cap;
    char *single_schema; /* --target-schema, or NULL for one schema per database */
    bool resolved;
};

/* fnv1a32 hashes len bytes of s. */
static uint32_t
fnv1a32(const char *s, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static bool
is_plain_ident(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > MG_SCHEMA_IDENT_MAX || (name[0] >= '0' && name[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/*
 * sanitize writes the sanitised form of name into out (64 bytes) without any
 * hash suffix; returns true when it had to be cut to fit.
 */
static bool
sanitize(const char *name, char out[MG_SCHEMA_IDENT_MAX + 1])
{
    size_t o = 0;
    size_t n = strlen(name);
    bool cut = false;

    if (n == 0 || (name[0] >= '0' && name[0] <= '9')) {
        memcpy(out, "c_", 2);
        o = 2;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (o == MG_SCHEMA_IDENT_MAX) {
            cut = true;
            break;
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            c = '_';
        out[o++] = c;
    }
    out[o] = '\0';
    return cut;
}

/* with_hash writes base cut to leave room for "_xxxxxxxx" plus the hash of original. */
static void
with_hash(const char *base, const char *original, char out[MG_SCHEMA_IDENT_MAX + 1])
{
    size_t keep = strlen(base);

    if (keep > MG_SCHEMA_IDENT_MAX - HASH_SUFFIX_LEN)
        keep = MG_SCHEMA_IDENT_MAX - HASH_SUFFIX_LEN;
    snprintf(out, MG_SCHEMA_IDENT_MAX + 1, "%.*s_%08x", (int)keep, base,
             fnv1a32(original, strlen(original)));
}

bool
mg_schema_ident_sanitize(const char *name, char out[MG_SCHEMA_IDENT_MAX + 1])
{
    char base[MG_SCHEMA_IDENT_MAX + 1];

    if (is_plain_ident(name)) {
        snprintf(out, MG_SCHEMA_IDENT_MAX + 1, "%s", name);
        return false;
    }
    if (sanitize(name, base))
        with_hash(base, name, out);
    else
        snprintf(out, MG_SCHEMA_IDENT_MAX + 1, "%s", base);
    return true;
}

mg_schema_naming_t *
mg_schema_naming_new(const char *single_schema)
{
    mg_schema_naming_t *n = calloc(1, sizeof(*n));

    if (n == NULL)
        return NULL;
    if (single_schema != NULL && (n->single_schema = strdup(single_schema)) == NULL) {
        free(n);
        return NULL;
    }
    return n;
}

void
mg_schema_naming_destroy(mg_schema_naming_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->count; i++) {
        free(n->entries[i].db);
        free(n->entries[i].coll);
    }
    free(n->entries);
    free(n->single_schema);
    free(n);
}

bool
mg_schema_naming_add(mg_schema_naming_t *n, const char *db, const char *coll, mg_error_t *error)
{
    mg_schema_naming_entry_t *e;

    if (n->resolved)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "naming already resolved");
    if (n->count == n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 16;
        mg_schema_naming_entry_t *grown = realloc(n->entries, cap * sizeof(*grown));
        if (grown == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "out of memory naming collection \"%s.%s\"", db, coll);
        n->entries = grown;
        n->cap = cap;
    }
    e = &n->entries[n->count];
    memset(e, 0, sizeof(*e));
    e->db = strdup(db);
    e->coll = strdup(coll);
    if (e->db == NULL || e->coll == NULL) {
        free(e->db);
        free(e->coll);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "out of memory naming collection \"%s.%s\"", db, coll);
    }
    n->count++;
    return true;
}

/*
 * resolve_level gives every entry a final name for one level (schema or
 * table): `base` holds each entry's sanitised candidate, `key` the original
 * name hashed for the suffix, `group` the scope within which names must be
 * unique (NULL: all entries share one scope).
 */
static void
resolve_level(mg_schema_naming_t *n, char (*base)[MG_SCHEMA_IDENT_MAX + 1], bool *cut, char **key,
              char **group, char (*out)[MG_SCHEMA_IDENT_MAX + 1], bool *changed)
{
    for (size_t i = 0; i < n->count; i++) {
        bool clash = false;
        for (size_t j = 0; j < n->count && !clash; j++) {
            if (i == j || strcmp(base[i], base[j]) != 0)
                continue;
            if (group != NULL && strcmp(group[i], group[j]) != 0)
                continue;
            /* the same original twice (one schema per db) is not a clash */
            if (strcmp(key[i], key[j]) == 0)
                continue;
            clash = true;
        }
        if (clash || cut[i]) {
            with_hash(base[i], key[i], out[i]);
            changed[i] = true;
        } else {
            snprintf(out[i], MG_SCHEMA_IDENT_MAX + 1, "%s", base[i]);
        }
    }
}

bool
mg_schema_naming_resolve(mg_schema_naming_t *n, mg_error_t *error)
{
    char(*base)[MG_SCHEMA_IDENT_MAX + 1] = calloc(n->count + 1, sizeof(*base));
    char(*out)[MG_SCHEMA_IDENT_MAX + 1] = calloc(n->count + 1, sizeof(*out));
    bool *cut = calloc(n->count + 1, sizeof(bool));
    bool *changed = calloc(n->count + 1, sizeof(bool));
    char **key = calloc(n->count + 1, sizeof(char *));
    char **group = calloc(n->count + 1, sizeof(char *));
    bool ok = false;

    if (base == NULL || out == NULL || cut == NULL || changed == NULL || key == NULL ||
        group == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }

    /* Schemas: one per database, or the single target schema as given. */
    if (n->single_schema == NULL) {
        for (size_t i = 0; i < n->count; i++) {
            cut[i] = is_plain_ident(n->entries[i].db) ? false : sanitize(n->entries[i].db, base[i]);
            if (is_plain_ident(n->entries[i].db))
                snprintf(base[i], sizeof(base[i]), "%s", n->entries[i].db);
            key[i] = n->entries[i].db;
            changed[i] = strcmp(base[i], n->entries[i].db) != 0;
        }
        resolve_level(n, base, cut, key, NULL, out, changed);
        for (size_t i = 0; i < n->count; i++) {
            snprintf(n->entries[i].schema, sizeof(n->entries[i].schema), "%s", out[i]);
            n->entries[i].schema_renamed = changed[i];
        }
    } else {
        for (size_t i = 0; i < n->count; i++)
            snprintf(n->entries[i].schema, sizeof(n->entries[i].schema), "%s", n->single_schema);
    }

    /* Tables: unique within their schema; the hash covers "db.coll" when
     * several databases share one schema, so equal names in two databases
     * do not clash forever. */
    char **fullname = calloc(n->count + 1, sizeof(char *));
    if (fullname == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n->count; i++) {
        mg_schema_naming_entry_t *e = &n->entries[i];
        size_t len = strlen(e->db) + strlen(e->coll) + 2;
        fullname[i] = malloc(len);
        if (fullname[i] == NULL) {
            for (size_t k = 0; k < i; k++)
                free(fullname[k]);
            free(fullname);
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto done;
        }
        snprintf(fullname[i], len, "%s.%s", e->db, e->coll);
        if (is_plain_ident(e->coll)) {
            snprintf(base[i], sizeof(base[i]), "%s", e->coll);
            cut[i] = false;
        } else {
            cut[i] = sanitize(e->coll, base[i]);
        }
        key[i] = fullname[i];
        group[i] = e->schema;
        changed[i] = strcmp(base[i], e->coll) != 0;
    }
    resolve_level(n, base, cut, key, group, out, changed);
    for (size_t i = 0; i < n->count; i++) {
        snprintf(n->entries[i].table, sizeof(n->entries[i].table), "%s", out[i]);
        n->entries[i].table_renamed = changed[i];
        free(fullname[i]);
    }
    free(fullname);
    n->resolved = true;
    ok = true;
done:
    free(base);
    free(out);
    free(cut);
    free(changed);
    free(key);
    free(group);
    return ok;
}

const mg_schema_naming_entry_t *
mg_schema_naming_entries(const mg_schema_naming_t *n, size_t *count)
{
    *count = n->resolved ? n->count : 0;
    return n->resolved ? n->entries : NULL;
}

const mg_schema_naming_entry_t *
mg_schema_naming_find(const mg_schema_naming_t *n, const char *db, const char *coll)
{
    if (!n->resolved)
        return NULL;
    for (size_t i = 0; i < n->count; i++)
        if (strcmp(n->entries[i].db, db) == 0 && strcmp(n->entries[i].coll, coll) == 0)
            return &n->entries[i];
    return NULL;
}

bool
mg_schema_quote_ident(const char *ident, mg_buf_t *out, mg_error_t *error)
{
    /* PostgreSQL cuts a longer name to 63 bytes: two names could become one */
    if (ident[0] == '\0' || strlen(ident) > MG_SCHEMA_IDENT_MAX)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not quote identifier \"%s\": %s", ident,
                            ident[0] == '\0' ? "it is empty" : "longer than 63 bytes");
    if (!mg_buf_append(out, "\"", 1, error))
        return false;
    for (const char *p = ident; *p != '\0'; p++) {
        if (*p == '"' && !mg_buf_append(out, "\"", 1, error))
            return false;
        if (!mg_buf_append(out, p, 1, error))
            return false;
    }
    return mg_buf_append(out, "\"", 1, error);
}

bool
mg_schema_quote_literal(const char *text, mg_buf_t *out, mg_error_t *error)
{
    /* E'' with doubled backslashes reads the same whatever standard_conforming_strings is */
    bool escape = strchr(text, '\\') != NULL;

    if (!mg_buf_append_str(out, escape ? "E'" : "'", error))
        return false;
    for (const char *p = text; *p != '\0'; p++) {
        if ((*p == '\'' || (escape && *p == '\\')) && !mg_buf_append(out, p, 1, error))
            return false;
        if (!mg_buf_append(out, p, 1, error))
            return false;
    }
    return mg_buf_append(out, "'", 1, error);
}
