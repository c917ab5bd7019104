/*
 * schema/src/schema_naming.c - deterministic PostgreSQL names for MongoDB
 * databases and collections, and for every relation init creates in a
 * target schema: tables, their primary keys, their indexes (docs/naming.md).
 *
 * A name is kept when it is already a plain lower-case identifier. Otherwise
 * it is lower-cased, every byte outside [a-z0-9_] becomes '_', a leading
 * digit gets a "c_" prefix (so does a schema name starting with "pg_",
 * which PostgreSQL reserves), and it is cut to fit 63 bytes. Whenever two
 * sources would land on the same name, or a name had to be cut, every name
 * involved gets "_" + 8 hex digits of the FNV-1a hash of the ORIGINAL name;
 * and while two final names still clash (a hashed name equal to a plain
 * one, two hashes alike), the hashed ones are hashed again with a salt.
 * Every decision depends on the set of names only, so the result never
 * depends on the order collections are listed in.
 */
#include "mg/schema.h"

#include <stdlib.h>
#include <string.h>

#define HASH_SUFFIX_LEN 9 /* "_" + 8 hex digits */
#define MAX_ROUNDS      64

/* A collection's index plans, registered for mg_schema_naming_resolve_indexes. */
typedef struct {
    size_t entry;
    mg_schema_index_plan_t *plans;
    size_t n;
} index_set_t;

struct mg_schema_naming {
    mg_schema_naming_entry_t *entries;
    size_t count;
    size_t cap;
    char *single_schema; /* --target-schema, or NULL for one schema per database */
    char **reserved;     /* schema names no database may take */
    size_t nreserved;
    index_set_t *indexes;
    size_t nindexes;
    bool resolved;
};

/* One name being resolved: a schema, a table, a primary key or an index. */
typedef struct {
    char name[MG_SCHEMA_IDENT_MAX + 1]; /* the candidate, then the final name */
    char base[MG_SCHEMA_IDENT_MAX + 1]; /* the sanitised name, before any hash */
    const char *group;                  /* the scope of uniqueness ("" for schemas) */
    char *identity;                     /* what the hash is of (owned) */
    bool fixed;                         /* final already (a table, when naming indexes) */
    bool hashed;                        /* carries a hash suffix */
    uint32_t salt;
} rel_t;

/* fnv1a32 hashes len bytes of s, continuing from h. */
static uint32_t
fnv1a32_from(uint32_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t
fnv1a32(const char *s, size_t len)
{
    return fnv1a32_from(2166136261u, s, len);
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

/* is_reserved_schema returns true for schema names PostgreSQL reserves. */
static bool
is_reserved_schema(const char *name)
{
    return strncmp(name, "pg_", 3) == 0 || strcmp(name, "information_schema") == 0;
}

/*
 * sanitize_as writes the sanitised form of name into out (64 bytes) without
 * any hash suffix: lower-cased, other bytes as '_', with "c_" in front when
 * it is empty, starts with a digit or (for a schema) would start with
 * "pg_" (after sanitising: "PG#x" too); returns true when it had to be cut.
 */
static bool
sanitize_as(const char *name, bool schema, char out[MG_SCHEMA_IDENT_MAX + 1])
{
    size_t o = 0, n = strlen(name);
    bool cut = false, prefix;
    char first[3] = {0, 0, 0};

    for (size_t i = 0; i < n && i < 3; i++) {
        char c = name[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            c = '_';
        first[i] = c;
    }
    prefix = n == 0 || (name[0] >= '0' && name[0] <= '9') ||
             (schema && n >= 3 && memcmp(first, "pg_", 3) == 0);
    if (prefix) {
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

/* with_hash writes base cut to leave room for "_xxxxxxxx" plus the hash of original (and salt). */
static void
with_hash_salt(const char *base, const char *original, uint32_t salt,
               char out[MG_SCHEMA_IDENT_MAX + 1])
{
    size_t keep = strlen(base);
    uint32_t h = fnv1a32(original, strlen(original));

    if (salt > 0) {
        char tag[16];
        int n = snprintf(tag, sizeof(tag), "#%u", salt);

        h = fnv1a32_from(h, tag, (size_t)n);
    }
    if (keep > MG_SCHEMA_IDENT_MAX - HASH_SUFFIX_LEN)
        keep = MG_SCHEMA_IDENT_MAX - HASH_SUFFIX_LEN;
    snprintf(out, MG_SCHEMA_IDENT_MAX + 1, "%.*s_%08x", (int)keep, base, h);
}

bool
mg_schema_ident_sanitize(const char *name, char out[MG_SCHEMA_IDENT_MAX + 1])
{
    char base[MG_SCHEMA_IDENT_MAX + 1];

    if (is_plain_ident(name)) {
        snprintf(out, MG_SCHEMA_IDENT_MAX + 1, "%s", name);
        return false;
    }
    if (sanitize_as(name, false, base))
        with_hash_salt(base, name, 0, out);
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
    for (size_t i = 0; i < n->nreserved; i++)
        free(n->reserved[i]);
    free(n->reserved);
    free(n->indexes);
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

bool
mg_schema_naming_reserve(mg_schema_naming_t *n, const char *schema, mg_error_t *error)
{
    char **grown;

    if (n->resolved)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "naming already resolved");
    grown = realloc(n->reserved, (n->nreserved + 1) * sizeof(*grown));
    if (grown == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    n->reserved = grown;
    if ((n->reserved[n->nreserved] = strdup(schema)) == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    n->nreserved++;
    return true;
}

/* ---- the resolver ---- */

/* rel_cmp orders names by scope, then name. */
static int
rel_cmp(const void *pa, const void *pb, void *arg)
{
    const rel_t *rels = arg;
    const rel_t *a = &rels[*(const size_t *)pa], *b = &rels[*(const size_t *)pb];
    int c = strcmp(a->group, b->group);

    return c != 0 ? c : strcmp(a->name, b->name);
}

/*
 * resolve_names makes the final names of n rels unique within each group.
 * Round 0: every name of a clashing run that is not fixed gets the hash
 * (the rule "every name involved"). Later rounds: in a run that still
 * clashes, the hashed names are hashed again with the next salt (a plain
 * name keeps its name); a run of plain names only gets hashes. Sorting is
 * only used to find runs, so the outcome does not depend on the order.
 */
static bool
resolve_names(rel_t *rels, size_t n, mg_error_t *error)
{
    size_t *order = malloc((n + 1) * sizeof(*order));

    if (order == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (int round = 0; round < MAX_ROUNDS; round++) {
        bool changed = false;

        for (size_t i = 0; i < n; i++)
            order[i] = i;
        qsort_r(order, n, sizeof(*order), rel_cmp, rels);
        for (size_t i = 0; i < n;) {
            size_t j = i + 1, hashed = 0;

            while (j < n && rel_cmp(&order[i], &order[j], rels) == 0)
                j++;
            for (size_t k = i; k < j; k++)
                hashed += rels[order[k]].hashed;
            for (size_t k = i; j - i > 1 && k < j; k++) {
                rel_t *r = &rels[order[k]];

                if (r->fixed || (round > 0 && hashed > 0 && !r->hashed))
                    continue;
                if (r->hashed)
                    r->salt++;
                r->hashed = true;
                with_hash_salt(r->base, r->identity, r->salt, r->name);
                changed = true;
            }
            i = j;
        }
        if (!changed) {
            free(order);
            return true;
        }
    }
    free(order);
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                        "could not find unique PostgreSQL names after %d rounds", MAX_ROUNDS);
}

/* rel_set sets a candidate: base sanitised from name, hashed right away when cut. */
static bool
rel_set(rel_t *r, const char *name, bool schema, const char *group, const char *identity)
{
    bool cut;

    memset(r, 0, sizeof(*r));
    r->group = group;
    r->identity = strdup(identity);
    if (r->identity == NULL)
        return false;
    if (is_plain_ident(name) && !(schema && is_reserved_schema(name))) {
        snprintf(r->base, sizeof(r->base), "%s", name);
        cut = false;
    } else {
        cut = sanitize_as(name, schema, r->base);
    }
    if (cut) {
        with_hash_salt(r->base, identity, 0, r->name);
        r->hashed = true;
    } else {
        snprintf(r->name, sizeof(r->name), "%s", r->base);
    }
    return true;
}

static void
rels_free(rel_t *rels, size_t n)
{
    for (size_t i = 0; rels != NULL && i < n; i++)
        free(rels[i].identity);
    free(rels);
}

/* resolve_schemas names the schemas: one per database, unique, none reserved. */
static bool
resolve_schemas(mg_schema_naming_t *n, mg_error_t *error)
{
    static const char *const builtin[] = {"information_schema"};
    size_t nbuiltin = sizeof(builtin) / sizeof(builtin[0]);
    size_t total = n->count + n->nreserved + nbuiltin;
    rel_t *rels = calloc(total + 1, sizeof(*rels));
    bool ok = rels != NULL;

    if (!ok)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; ok && i < n->count; i++)
        ok = rel_set(&rels[i], n->entries[i].db, true, "", n->entries[i].db);
    /* reserved names take part as fixed names nobody else may have */
    for (size_t i = 0; ok && i < n->nreserved + nbuiltin; i++) {
        const char *name = i < n->nreserved ? n->reserved[i] : builtin[i - n->nreserved];

        ok = rel_set(&rels[n->count + i], name, false, "", "");
        snprintf(rels[n->count + i].name, sizeof(rels[0].name), "%s", name);
        rels[n->count + i].fixed = true;
    }
    if (!ok) {
        rels_free(rels, total);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    /* the same database twice is one schema, not a clash: resolve distinct databases */
    for (size_t i = 0; i < n->count; i++)
        for (size_t j = 0; j < i; j++)
            if (!rels[i].fixed && strcmp(n->entries[i].db, n->entries[j].db) == 0) {
                rels[i].fixed = true; /* a copy of j: takes j's name below */
                rels[i].group = "\x01";
                break;
            }
    ok = resolve_names(rels, total, error);
    for (size_t i = 0; ok && i < n->count; i++) {
        const char *name = rels[i].name;

        if (rels[i].group[0] == '\x01') { /* a repeated database: its first entry's schema */
            for (size_t j = 0; j < i; j++)
                if (strcmp(n->entries[i].db, n->entries[j].db) == 0) {
                    name = n->entries[j].schema;
                    break;
                }
        }
        snprintf(n->entries[i].schema, sizeof(n->entries[i].schema), "%s", name);
        n->entries[i].schema_renamed = strcmp(n->entries[i].schema, n->entries[i].db) != 0;
    }
    rels_free(rels, total);
    return ok;
}

/* resolve_tables names the tables (unique in their schema) and their primary keys. */
static bool
resolve_tables(mg_schema_naming_t *n, mg_error_t *error)
{
    rel_t *rels = calloc(2 * n->count + 1, sizeof(*rels));
    char pk[MG_SCHEMA_IDENT_MAX + 16];
    bool ok = rels != NULL;

    for (size_t i = 0; ok && i < n->count; i++) {
        mg_schema_naming_entry_t *e = &n->entries[i];
        size_t len = strlen(e->db) + strlen(e->coll) + 2;
        char *full = malloc(len);

        if (full == NULL) {
            ok = false;
            break;
        }
        snprintf(full, len, "%s.%s", e->db, e->coll);
        ok = rel_set(&rels[i], e->coll, false, e->schema, full);
        free(full);
    }
    if (!ok) {
        rels_free(rels, 2 * n->count);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    ok = resolve_names(rels, n->count, error);
    for (size_t i = 0; ok && i < n->count; i++) {
        mg_schema_naming_entry_t *e = &n->entries[i];

        snprintf(e->table, sizeof(e->table), "%s", rels[i].name);
        e->table_renamed = strcmp(e->table, e->coll) != 0;
        /* then the primary keys, around the tables (fixed now) */
        rels[i].fixed = true;
        snprintf(pk, sizeof(pk), "%s_pkey", e->table);
        /* the hash of a primary key is of "db.coll" + a tag: never its table's */
        {
            size_t len = strlen(rels[i].identity) + 8;
            char *tagged = malloc(len);

            ok = tagged != NULL;
            if (ok) {
                snprintf(tagged, len, "%s\x01pkey", rels[i].identity);
                ok = rel_set(&rels[n->count + i], pk, false, e->schema, tagged);
            }
            free(tagged);
            if (!ok)
                ok =
                    mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        }
    }
    ok = ok && resolve_names(rels, 2 * n->count, error);
    for (size_t i = 0; ok && i < n->count; i++)
        snprintf(n->entries[i].pkey, sizeof(n->entries[i].pkey), "%s", rels[n->count + i].name);
    rels_free(rels, 2 * n->count);
    return ok;
}

bool
mg_schema_naming_resolve(mg_schema_naming_t *n, mg_error_t *error)
{
    if (n->resolved)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "naming already resolved");
    if (n->single_schema != NULL) {
        if (!is_plain_ident(n->single_schema) || is_reserved_schema(n->single_schema))
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "invalid value for option \"target_schema\": \"%s\" is not a "
                                "plain lower-case identifier, or PostgreSQL reserves it (pg_*, "
                                "information_schema)",
                                n->single_schema);
        for (size_t i = 0; i < n->nreserved; i++)
            if (strcmp(n->reserved[i], n->single_schema) == 0)
                return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                    "invalid value for option \"target_schema\": \"%s\" is "
                                    "reserved (the state schema)",
                                    n->single_schema);
        for (size_t i = 0; i < n->count; i++) {
            snprintf(n->entries[i].schema, sizeof(n->entries[i].schema), "%s", n->single_schema);
            n->entries[i].schema_renamed = false;
        }
    } else if (!resolve_schemas(n, error)) {
        return false;
    }
    if (!resolve_tables(n, error))
        return false;
    n->resolved = true;
    return true;
}

bool
mg_schema_naming_add_indexes(mg_schema_naming_t *n, const char *db, const char *coll,
                             mg_schema_index_plan_t *plans, size_t count, mg_error_t *error)
{
    index_set_t *grown;
    size_t i;

    if (!n->resolved)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "naming not resolved yet");
    for (i = 0; i < n->count; i++)
        if (strcmp(n->entries[i].db, db) == 0 && strcmp(n->entries[i].coll, coll) == 0)
            break;
    if (i == n->count)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_NOT_FOUND,
                            "could not name the indexes of \"%s.%s\": not a planned collection", db,
                            coll);
    grown = realloc(n->indexes, (n->nindexes + 1) * sizeof(*grown));
    if (grown == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    n->indexes = grown;
    n->indexes[n->nindexes++] = (index_set_t){i, plans, count};
    return true;
}

/* index_built returns true for plans that create an index under their own name. */
static bool
index_built(const mg_schema_index_plan_t *p)
{
    return p->status == MG_SCHEMA_INDEX_TRANSLATED || p->status == MG_SCHEMA_INDEX_CAVEAT;
}

bool
mg_schema_naming_resolve_indexes(mg_schema_naming_t *n, mg_error_t *error)
{
    size_t nidx = 0, total, k;
    rel_t *rels;
    bool ok = true;

    for (size_t s = 0; s < n->nindexes; s++)
        for (size_t j = 0; j < n->indexes[s].n; j++)
            nidx += index_built(&n->indexes[s].plans[j]);
    total = 2 * n->count + nidx;
    rels = calloc(total + 1, sizeof(*rels));
    if (rels == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    /* tables and primary keys: final, fixed */
    for (size_t i = 0; ok && i < n->count; i++) {
        ok = rel_set(&rels[2 * i], n->entries[i].table, false, n->entries[i].schema, "") &&
             rel_set(&rels[2 * i + 1], n->entries[i].pkey, false, n->entries[i].schema, "");
        rels[2 * i].fixed = rels[2 * i + 1].fixed = true;
    }
    /* indexes: the names translate chose, hashed over "db.coll" + the MongoDB name */
    k = 2 * n->count;
    for (size_t s = 0; ok && s < n->nindexes; s++) {
        const mg_schema_naming_entry_t *e = &n->entries[n->indexes[s].entry];

        for (size_t j = 0; ok && j < n->indexes[s].n; j++) {
            const mg_schema_index_plan_t *p = &n->indexes[s].plans[j];
            size_t len;
            char *id;

            if (!index_built(p))
                continue;
            len = strlen(e->db) + strlen(e->coll) + strlen(p->mongo_name) + 3;
            id = malloc(len);
            ok = id != NULL;
            if (ok) {
                snprintf(id, len, "%s.%s\x01%s", e->db, e->coll, p->mongo_name);
                ok = rel_set(&rels[k++], p->pg_name, false, e->schema, id);
            }
            free(id);
        }
    }
    if (!ok) {
        rels_free(rels, total);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    ok = resolve_names(rels, total, error);
    k = 2 * n->count;
    for (size_t s = 0; ok && s < n->nindexes; s++) {
        const mg_schema_naming_entry_t *e = &n->entries[n->indexes[s].entry];

        for (size_t j = 0; ok && j < n->indexes[s].n; j++) {
            mg_schema_index_plan_t *p = &n->indexes[s].plans[j];

            if (p->status == MG_SCHEMA_INDEX_PRIMARY)
                snprintf(p->pg_name, sizeof(p->pg_name), "%s", e->pkey);
            else if (index_built(p))
                ok = mg_schema_index_plan_rename(p, rels[k++].name, error);
        }
    }
    rels_free(rels, total);
    n->nindexes = 0; /* the plans were borrowed until now */
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
