/*
 * schema/src/schema_census.c - per-collection census: sizes, _id types,
 * top-level field types and frequencies, problem values, and the key column
 * type that follows from them (DESIGN §3).
 *
 * The census is fed by the caller (the migrator runs the MongoDB queries):
 * server-side statistics, the exact _id type distribution ($group by $type),
 * the number of string _ids that look like an ObjectId's hex, and sampled
 * (or all) documents. Memory is bounded: at most MG_SCHEMA_CENSUS_MAX_FIELDS
 * distinct top-level fields are tracked.
 */
#include "mg/schema.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#define NEAR_16MB_BYTES (15 * 1024 * 1024)
#define NTYPES          256

typedef struct {
    char *name;
    uint32_t hash;
    int64_t count;
    int64_t by_type[NTYPES];
} field_t;

struct mg_schema_census {
    char *db;
    char *coll;
    /* server statistics */
    bool have_stats;
    int64_t count;
    int64_t size_bytes;
    int64_t storage_bytes;
    /* _id types: exact from the server, or from the sample */
    bool have_id_distribution;
    int64_t id_types[NTYPES];
    int64_t sample_id_types[NTYPES];
    int64_t oid_like_strings;
    int64_t text_misfit_ids; /* string _ids seen that text cannot hold */
    bool key_chosen;         /* mg_schema_census_choose_key ran */
    mg_schema_key_type_t key;
    /* sample */
    bool full_scan;
    int64_t sampled;
    int64_t sampled_bytes;
    int64_t max_doc_size;
    int64_t near_16mb;
    uint32_t max_depth;
    int64_t fact_docs[32]; /* documents per fact bit */
    field_t *fields;
    size_t nfields;
    bool fields_truncated;
    /* indexes seen (names), for the report */
    char *error_text; /* first scan error, if any */
    int64_t scan_errors;
};

static const struct {
    bson_type_t type;
    const char *alias;
} type_aliases[] = {
    {BSON_TYPE_DOUBLE, "double"},
    {BSON_TYPE_UTF8, "string"},
    {BSON_TYPE_DOCUMENT, "object"},
    {BSON_TYPE_ARRAY, "array"},
    {BSON_TYPE_BINARY, "binData"},
    {BSON_TYPE_UNDEFINED, "undefined"},
    {BSON_TYPE_OID, "objectId"},
    {BSON_TYPE_BOOL, "bool"},
    {BSON_TYPE_DATE_TIME, "date"},
    {BSON_TYPE_NULL, "null"},
    {BSON_TYPE_REGEX, "regex"},
    {BSON_TYPE_DBPOINTER, "dbPointer"},
    {BSON_TYPE_CODE, "javascript"},
    {BSON_TYPE_SYMBOL, "symbol"},
    {BSON_TYPE_CODEWSCOPE, "javascriptWithScope"},
    {BSON_TYPE_INT32, "int"},
    {BSON_TYPE_TIMESTAMP, "timestamp"},
    {BSON_TYPE_INT64, "long"},
    {BSON_TYPE_DECIMAL128, "decimal"},
    {BSON_TYPE_MINKEY, "minKey"},
    {BSON_TYPE_MAXKEY, "maxKey"},
};
#define NALIASES (sizeof(type_aliases) / sizeof(type_aliases[0]))

const char *
mg_schema_bson_type_alias(bson_type_t type)
{
    for (size_t i = 0; i < NALIASES; i++)
        if (type_aliases[i].type == type)
            return type_aliases[i].alias;
    return NULL;
}

bool
mg_schema_bson_type_from_alias(const char *alias, bson_type_t *type)
{
    for (size_t i = 0; i < NALIASES; i++) {
        if (strcmp(type_aliases[i].alias, alias) == 0) {
            *type = type_aliases[i].type;
            return true;
        }
    }
    return false;
}

const char *
mg_schema_key_type_name(mg_schema_key_type_t type)
{
    switch (type) {
    case MG_SCHEMA_KEY_TEXT_OID:
        return "text_objectid";
    case MG_SCHEMA_KEY_TEXT_STRING:
        return "text_string";
    case MG_SCHEMA_KEY_BIGINT:
        return "bigint";
    case MG_SCHEMA_KEY_JSONB:
        return "jsonb";
    case MG_SCHEMA_KEY_CANONICAL:
        return "canonical";
    }
    return "unknown";
}

bool
mg_schema_key_type_parse(const char *text, mg_schema_key_type_t *type)
{
    static const mg_schema_key_type_t all[] = {MG_SCHEMA_KEY_TEXT_OID, MG_SCHEMA_KEY_TEXT_STRING,
                                               MG_SCHEMA_KEY_BIGINT, MG_SCHEMA_KEY_JSONB,
                                               MG_SCHEMA_KEY_CANONICAL};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(text, mg_schema_key_type_name(all[i])) == 0) {
            *type = all[i];
            return true;
        }
    }
    return false;
}

const char *
mg_schema_key_type_sql(mg_schema_key_type_t type)
{
    switch (type) {
    case MG_SCHEMA_KEY_TEXT_OID:
    case MG_SCHEMA_KEY_TEXT_STRING:
    case MG_SCHEMA_KEY_CANONICAL:
        return "text";
    case MG_SCHEMA_KEY_BIGINT:
        return "bigint";
    case MG_SCHEMA_KEY_JSONB:
        return "jsonb";
    }
    return "jsonb";
}

mg_schema_census_t *
mg_schema_census_new(const char *db, const char *coll)
{
    mg_schema_census_t *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->db = strdup(db);
    c->coll = strdup(coll);
    c->fields = calloc(MG_SCHEMA_CENSUS_MAX_FIELDS, sizeof(field_t));
    if (c->db == NULL || c->coll == NULL || c->fields == NULL) {
        mg_schema_census_destroy(c);
        return NULL;
    }
    return c;
}

void
mg_schema_census_destroy(mg_schema_census_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nfields; i++)
        free(c->fields[i].name);
    free(c->fields);
    free(c->db);
    free(c->coll);
    free(c->error_text);
    free(c);
}

void
mg_schema_census_set_stats(mg_schema_census_t *c, int64_t count, int64_t size_bytes,
                           int64_t storage_bytes)
{
    c->have_stats = true;
    c->count = count;
    c->size_bytes = size_bytes;
    c->storage_bytes = storage_bytes;
}

bool
mg_schema_census_add_id_type(mg_schema_census_t *c, const char *alias, int64_t n, mg_error_t *error)
{
    bson_type_t t;

    if (!mg_schema_bson_type_from_alias(alias, &t))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "collection \"%s.%s\": unknown _id type \"%s\"", c->db, c->coll, alias);
    c->have_id_distribution = true;
    c->id_types[t] += n;
    return true;
}

void
mg_schema_census_set_oid_like_strings(mg_schema_census_t *c, int64_t n)
{
    c->oid_like_strings = n;
}

void
mg_schema_census_set_full_scan(mg_schema_census_t *c, bool full)
{
    c->full_scan = full;
}

static uint32_t
hash_str(const char *s, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static field_t *
field_get(mg_schema_census_t *c, const char *key, size_t keylen)
{
    uint32_t h = hash_str(key, keylen);

    for (size_t i = 0; i < c->nfields; i++) {
        field_t *f = &c->fields[i];
        if (f->hash == h && strlen(f->name) == keylen && memcmp(f->name, key, keylen) == 0)
            return f;
    }
    if (c->nfields == MG_SCHEMA_CENSUS_MAX_FIELDS) {
        c->fields_truncated = true;
        return NULL;
    }
    field_t *f = &c->fields[c->nfields];
    f->name = strndup(key, keylen);
    if (f->name == NULL)
        return NULL;
    f->hash = h;
    c->nfields++;
    return f;
}

bool
mg_schema_census_add_sample(mg_schema_census_t *c, const bson_t *doc, mg_error_t *error)
{
    bson_iter_t it;
    uint32_t facts = 0, depth = 0;
    mg_error_t scan_error;

    c->sampled++;
    c->sampled_bytes += doc->len;
    if ((int64_t)doc->len > c->max_doc_size)
        c->max_doc_size = doc->len;
    if (doc->len >= NEAR_16MB_BYTES)
        c->near_16mb++;
    if (!mg_schema_doc_scan(doc, &facts, &depth, &scan_error)) {
        /* A document the renderer cannot read is a finding, not a crash. */
        c->scan_errors++;
        if (c->error_text == NULL)
            c->error_text = strdup(scan_error.message);
    }
    if (depth > c->max_depth)
        c->max_depth = depth;
    for (int bit = 0; bit < 32; bit++)
        if (facts & (1u << bit))
            c->fact_docs[bit]++;
    if (!bson_iter_init(&it, doc))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "collection \"%s.%s\": corrupt BSON document in the sample", c->db,
                            c->coll);
    while (bson_iter_next(&it)) {
        uint32_t keylen = bson_iter_key_len(&it);
        const char *key = bson_iter_key(&it);
        bson_type_t t = bson_iter_type(&it);
        field_t *f;

        if (keylen == 3 && memcmp(key, "_id", 3) == 0) {
            c->sample_id_types[t & 0xff]++;
            if (t == BSON_TYPE_UTF8 || t == BSON_TYPE_SYMBOL) {
                uint32_t len;
                const char *s =
                    t == BSON_TYPE_UTF8 ? bson_iter_utf8(&it, &len) : bson_iter_symbol(&it, &len);
                if (len > MG_SCHEMA_KEY_MAX_BYTES || memchr(s, '\0', len) != NULL ||
                    !mg_utf8_valid(s, len))
                    c->text_misfit_ids++;
            }
        }
        f = field_get(c, key, keylen);
        if (f == NULL)
            continue;
        f->count++;
        f->by_type[t & 0xff]++;
    }
    return true;
}

/* id_types returns the distribution the key decision is based on. */
static const int64_t *
id_types(const mg_schema_census_t *c)
{
    return c->have_id_distribution ? c->id_types : c->sample_id_types;
}

/* census_rule applies DESIGN §3's rule to the _id types and the sample. */
static mg_schema_key_type_t
census_rule(const mg_schema_census_t *c)
{
    const int64_t *t = id_types(c);
    int64_t total = 0, oid = t[BSON_TYPE_OID], str = t[BSON_TYPE_UTF8];
    int64_t ints = t[BSON_TYPE_INT32] + t[BSON_TYPE_INT64];

    for (int i = 0; i < NTYPES; i++)
        total += t[i];
    if (total == 0)
        return MG_SCHEMA_KEY_CANONICAL; /* empty: any future _id type must fit */
    if (oid + str == total && c->text_misfit_ids == 0) {
        if (oid == 0)
            return MG_SCHEMA_KEY_TEXT_STRING;
        if (c->oid_like_strings == 0)
            return MG_SCHEMA_KEY_TEXT_OID;
        return MG_SCHEMA_KEY_CANONICAL;
    }
    if (ints == total)
        return MG_SCHEMA_KEY_BIGINT;
    return MG_SCHEMA_KEY_CANONICAL;
}

mg_schema_key_type_t
mg_schema_census_key_type(const mg_schema_census_t *c)
{
    return c->key_chosen ? c->key : census_rule(c);
}

/* key_choice splits one --key-type item into its pattern (NULL: all) and type. */
static bool
key_choice(const char *item, char *pattern, size_t patsz, mg_schema_key_type_t *type,
           mg_error_t *error)
{
    const char *eq = strrchr(item, '=');
    const char *name = eq != NULL ? eq + 1 : item;

    pattern[0] = '\0';
    if (eq != NULL) {
        const char *dot = memchr(item, '.', (size_t)(eq - item));
        if ((size_t)(eq - item) >= patsz || dot == NULL || dot == item || dot + 1 == eq)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "invalid value for option \"key_type\": \"%s\": expected TYPE or "
                                "DB.COLLECTION=TYPE (DB.* for a whole database)",
                                item);
        memcpy(pattern, item, (size_t)(eq - item));
        pattern[eq - item] = '\0';
    }
    if (strcmp(name, "jsonb") == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid value for option \"key_type\": \"%s\": jsonb keys merge "
                            "embedded-document _ids that differ only in key order; use canonical",
                            item);
    if (!mg_schema_key_type_parse(name, type))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid value for option \"key_type\": \"%s\": the type must be "
                            "one of text_objectid, text_string, bigint, canonical",
                            item);
    return true;
}

bool
mg_schema_key_choice_check(const char *const *items, size_t n, mg_error_t *error)
{
    char pattern[1024];
    mg_schema_key_type_t type = MG_SCHEMA_KEY_CANONICAL;

    for (size_t i = 0; i < n; i++)
        if (!key_choice(items[i], pattern, sizeof(pattern), &type, error))
            return false;
    return true;
}

/* key_fits_census names (in why) an _id type the census counted that type cannot hold. */
static bool
key_fits_census(const mg_schema_census_t *c, mg_schema_key_type_t type, char *why, size_t whysz)
{
    const int64_t *t = id_types(c);

    for (int i = 0; i < NTYPES; i++) {
        bool fits;

        if (t[i] == 0)
            continue;
        switch (type) {
        case MG_SCHEMA_KEY_TEXT_OID:
            fits = i == BSON_TYPE_OID || i == BSON_TYPE_UTF8 || i == BSON_TYPE_SYMBOL;
            break;
        case MG_SCHEMA_KEY_TEXT_STRING:
            fits = i == BSON_TYPE_UTF8 || i == BSON_TYPE_SYMBOL;
            break;
        case MG_SCHEMA_KEY_BIGINT:
            fits = i == BSON_TYPE_INT32 || i == BSON_TYPE_INT64;
            break;
        default:
            fits = true;
        }
        if (!fits) {
            const char *alias = mg_schema_bson_type_alias((bson_type_t)i);
            snprintf(why, whysz, "%lld _ids of type %s", (long long)t[i], alias ? alias : "?");
            return false;
        }
    }
    if ((type == MG_SCHEMA_KEY_TEXT_OID || type == MG_SCHEMA_KEY_TEXT_STRING) &&
        c->text_misfit_ids > 0) {
        snprintf(why, whysz, "%lld string _ids with NUL, invalid UTF-8 or over %d bytes",
                 (long long)c->text_misfit_ids, MG_SCHEMA_KEY_MAX_BYTES);
        return false;
    }
    if (type == MG_SCHEMA_KEY_TEXT_OID && t[BSON_TYPE_OID] > 0 && c->oid_like_strings > 0) {
        snprintf(why, whysz, "%lld string _ids that read as ObjectId hex",
                 (long long)c->oid_like_strings);
        return false;
    }
    return true;
}

bool
mg_schema_census_choose_key(mg_schema_census_t *c, const char *const *items, size_t n,
                            mg_error_t *error)
{
    mg_schema_key_type_t type = census_rule(c), forced = type;
    char pattern[1024], ns[1024], why[256];
    bool any = false;

    snprintf(ns, sizeof(ns), "%s.%s", c->db, c->coll);
    for (size_t i = 0; i < n; i++) {
        if (!key_choice(items[i], pattern, sizeof(pattern), &forced, error))
            return false;
        if (pattern[0] == '\0' || fnmatch(pattern, ns, 0) == 0) {
            type = forced;
            any = true;
        }
    }
    if (any && !key_fits_census(c, type, why, sizeof(why)))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not use key type %s for collection \"%s\": the census counted "
                            "%s, which do not fit it; every _id fits key type canonical",
                            mg_schema_key_type_name(type), ns, why);
    c->key = type;
    c->key_chosen = true;
    return true;
}

int64_t
mg_schema_census_count(const mg_schema_census_t *c)
{
    return c->have_stats ? c->count : c->sampled;
}

int64_t
mg_schema_census_size_bytes(const mg_schema_census_t *c)
{
    return c->have_stats ? c->size_bytes : c->sampled_bytes;
}

/* ---- warnings and the JSON report ---- */

typedef bool (*warn_fn)(void *ctx, const char *text, mg_error_t *error);

/* each_warning calls fn for every warning, in a stable order. */
static bool
each_warning(const mg_schema_census_t *c, warn_fn fn, void *ctx, mg_error_t *error)
{
    char text[512];
    const int64_t *t = id_types(c);
    int ntypes = 0;

    for (int i = 0; i < NTYPES; i++)
        if (t[i] > 0)
            ntypes++;
    if (ntypes > 1) {
        size_t o = (size_t)snprintf(text, sizeof(text), "mixed _id types:");
        for (int i = 0; i < NTYPES && o < sizeof(text); i++)
            if (t[i] > 0)
                o += (size_t)snprintf(text + o, sizeof(text) - o, " %s=%lld",
                                      mg_schema_bson_type_alias((bson_type_t)i)
                                          ? mg_schema_bson_type_alias((bson_type_t)i)
                                          : "?",
                                      (long long)t[i]);
        if (!fn(ctx, text, error))
            return false;
    }
    if (c->oid_like_strings > 0 && t[BSON_TYPE_OID] > 0) {
        snprintf(text, sizeof(text),
                 "%lld string _ids look like ObjectId hex: key column is canonical to keep them "
                 "distinct",
                 (long long)c->oid_like_strings);
        if (!fn(ctx, text, error))
            return false;
    }
    if (mg_schema_census_count(c) == 0 &&
        !fn(ctx, "empty collection: key column is canonical so any _id type fits", error))
        return false;
    if (c->text_misfit_ids > 0) {
        snprintf(text, sizeof(text),
                 "%lld string _ids hold NUL, invalid UTF-8 or more than %d bytes: a text key "
                 "cannot hold them, so the key column is canonical",
                 (long long)c->text_misfit_ids, MG_SCHEMA_KEY_MAX_BYTES);
        if (!fn(ctx, text, error))
            return false;
    }
    static const struct {
        uint32_t fact;
        const char *what;
    } fact_warnings[] = {
        {MG_SCHEMA_FACT_NAN_INF, "hold NaN or Infinity doubles (stored as $numberDouble)"},
        {MG_SCHEMA_FACT_NUL_STRING, "hold strings with NUL characters (stored as $stringBase64)"},
        {MG_SCHEMA_FACT_INVALID_UTF8, "hold strings that are not UTF-8 (stored as $stringBase64)"},
        {MG_SCHEMA_FACT_DUPLICATE_KEY,
         "have duplicate keys (stored in order as {\"$fieldPairs\": [...]}; such a document "
         "is not queryable by field in SQL)"},
        {MG_SCHEMA_FACT_DOLLAR_KEY, "have keys starting with '$'"},
        {MG_SCHEMA_FACT_DOTTED_KEY, "have keys containing '.'"},
        {MG_SCHEMA_FACT_EMPTY_KEY, "have an empty key"},
        {MG_SCHEMA_FACT_DEPRECATED,
         "hold deprecated BSON types (undefined, DBPointer, symbol, code with scope)"},
        {MG_SCHEMA_FACT_UNRENDERABLE,
         "have a key or regex that is not UTF-8: they cannot be copied"},
    };
    for (size_t i = 0; i < sizeof(fact_warnings) / sizeof(fact_warnings[0]); i++) {
        int bit = __builtin_ctz(fact_warnings[i].fact);
        if (c->fact_docs[bit] == 0)
            continue;
        snprintf(text, sizeof(text), "%lld of %lld %s documents %s", (long long)c->fact_docs[bit],
                 (long long)c->sampled, c->full_scan ? "scanned" : "sampled",
                 fact_warnings[i].what);
        if (!fn(ctx, text, error))
            return false;
    }
    if (c->near_16mb > 0) {
        snprintf(text, sizeof(text),
                 "%lld documents are larger than 15 MiB (near the 16 MiB BSON limit; change "
                 "events for them may need a fetch by _id)",
                 (long long)c->near_16mb);
        if (!fn(ctx, text, error))
            return false;
    }
    if (c->scan_errors > 0) {
        snprintf(text, sizeof(text), "%lld documents could not be read: %s",
                 (long long)c->scan_errors, c->error_text ? c->error_text : "");
        if (!fn(ctx, text, error))
            return false;
    }
    if (c->fields_truncated) {
        snprintf(text, sizeof(text),
                 "more than %d distinct top-level fields: only the first %d are reported",
                 MG_SCHEMA_CENSUS_MAX_FIELDS, MG_SCHEMA_CENSUS_MAX_FIELDS);
        if (!fn(ctx, text, error))
            return false;
    }
    return true;
}

typedef struct {
    mg_buf_t *out;
    size_t count;
} text_ctx_t;

static bool
warn_to_text(void *ctx, const char *text, mg_error_t *error)
{
    text_ctx_t *t = ctx;

    t->count++;
    if (t->out == NULL)
        return true;
    return mg_buf_printf(t->out, error, "%s\n", text);
}

bool
mg_schema_census_warnings(const mg_schema_census_t *c, mg_buf_t *out, size_t *count,
                          mg_error_t *error)
{
    text_ctx_t t = {out, 0};

    if (!each_warning(c, warn_to_text, &t, error))
        return false;
    if (count != NULL)
        *count = t.count;
    return true;
}

/* gen_name writes a field name; one that is not UTF-8 is shown as hex. */
static void
gen_name(yajl_gen g, const char *name)
{
    size_t n = strlen(name);
    char hex[2 * 64 + 32];
    size_t o;

    if (mg_utf8_valid(name, n)) {
        mg_json_str(g, name);
        return;
    }
    o = (size_t)snprintf(hex, sizeof(hex), "(not UTF-8) 0x");
    for (size_t i = 0; i < n && o + 3 < sizeof(hex); i++)
        o += (size_t)snprintf(hex + o, sizeof(hex) - o, "%02x", (unsigned char)name[i]);
    mg_json_str(g, hex);
}

static bool
warn_to_json(void *ctx, const char *text, mg_error_t *error)
{
    size_t n = strlen(text);

    if (mg_utf8_valid(text, n)) {
        mg_json_str((yajl_gen)ctx, text);
        return true;
    }
    /* a warning quoting a key that is not UTF-8: keep it ASCII */
    char *ascii = strdup(text);
    if (ascii == NULL)
        return true;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ascii[i] >= 0x80)
            ascii[i] = '?';
    mg_json_str((yajl_gen)ctx, ascii);
    free(ascii);
    return true;
}

static void
gen_type_counts(yajl_gen g, const int64_t *counts)
{
    yajl_gen_map_open(g);
    for (int i = 0; i < NTYPES; i++) {
        const char *alias = mg_schema_bson_type_alias((bson_type_t)i);
        if (counts[i] > 0 && alias != NULL)
            mg_json_kint(g, alias, counts[i]);
    }
    yajl_gen_map_close(g);
}

bool
mg_schema_census_to_json(const mg_schema_census_t *c, mg_buf_t *out, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    bool ok;

    if (g == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    yajl_gen_config(g, yajl_gen_validate_utf8, 0);
    yajl_gen_map_open(g);
    mg_json_kstr(g, "db", c->db);
    mg_json_kstr(g, "collection", c->coll);
    mg_json_kint(g, "count", mg_schema_census_count(c));
    mg_json_kint(g, "size_bytes", mg_schema_census_size_bytes(c));
    mg_json_kint(g, "storage_bytes", c->storage_bytes);
    mg_json_kint(g, "avg_doc_bytes",
                 mg_schema_census_count(c) > 0
                     ? mg_schema_census_size_bytes(c) / mg_schema_census_count(c)
                     : 0);
    mg_json_kstr(g, "census", c->full_scan ? "full" : "sample");
    mg_json_kint(g, "documents_examined", c->sampled);
    mg_json_kbool(g, "id_types_exact", c->have_id_distribution);
    mg_json_str(g, "id_types");
    gen_type_counts(g, id_types(c));
    mg_json_kint(g, "oid_like_string_ids", c->oid_like_strings);
    mg_json_kint(g, "text_misfit_string_ids", c->text_misfit_ids);
    mg_json_kstr(g, "key_type", mg_schema_key_type_name(mg_schema_census_key_type(c)));
    mg_json_kint(g, "max_doc_bytes", c->max_doc_size);
    mg_json_kint(g, "docs_over_15mb", c->near_16mb);
    mg_json_kint(g, "max_depth", c->max_depth);
    mg_json_str(g, "facts");
    yajl_gen_map_open(g);
    for (int bit = 0; bit < 32; bit++) {
        if (c->fact_docs[bit] > 0)
            mg_json_kint(g, mg_schema_fact_name(1u << bit), c->fact_docs[bit]);
    }
    yajl_gen_map_close(g);
    mg_json_str(g, "fields");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < c->nfields; i++) {
        yajl_gen_map_open(g);
        mg_json_str(g, "name");
        gen_name(g, c->fields[i].name);
        mg_json_kint(g, "count", c->fields[i].count);
        mg_json_str(g, "types");
        gen_type_counts(g, c->fields[i].by_type);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_str(g, "warnings");
    yajl_gen_array_open(g);
    each_warning(c, warn_to_json, g, NULL);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    ok = mg_json_take(g, out, error);
    yajl_gen_free(g);
    return ok;
}

bool
mg_schema_census_field_is_array(const mg_schema_census_t *c, const char *field)
{
    size_t n = strlen(field);

    for (size_t i = 0; i < c->nfields; i++)
        if (strlen(c->fields[i].name) == n && memcmp(c->fields[i].name, field, n) == 0)
            return c->fields[i].by_type[BSON_TYPE_ARRAY] > 0;
    return false;
}
