/*
 * tests/fuzz/schema/fuzz_naming.c - libFuzzer target for the naming of
 * namespaces (database and collection names come from the source): the
 * input is split at newlines into db/coll/index triples (a tab between),
 * named, and every name must be a valid identifier, no schema reserved,
 * and no two relations of a schema alike. Never a crash.
 */
#include "mg/schema.h"

#include <stdlib.h>
#include <string.h>

#define MAX_NS 64

static void
check(bool cond, const char *what, const char *name)
{
    if (!cond) {
        fprintf(stderr, "fuzz_naming: %s: \"%s\"\n", what, name);
        abort();
    }
}

static bool
valid_ident(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= MG_SCHEMA_IDENT_MAX && !(s[0] >= '0' && s[0] <= '9') &&
           strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *save = NULL, *line;
    char *db[MAX_NS], *coll[MAX_NS], *idx[MAX_NS];
    mg_schema_index_plan_t plans[MAX_NS];
    char *rel[3 * MAX_NS];
    size_t n = 0, nrel = 0;
    mg_schema_naming_t *naming = mg_schema_naming_new(NULL);
    mg_error_t error;

    memcpy(text, data, size);
    text[size] = '\0';
    for (line = strtok_r(text, "\n", &save); line != NULL && n < MAX_NS;
         line = strtok_r(NULL, "\n", &save)) {
        char *t1 = strchr(line, '\t'), *t2;
        bool dup = false;

        if (t1 == NULL)
            continue;
        *t1++ = '\0';
        t2 = strchr(t1, '\t');
        if (t2 != NULL)
            *t2++ = '\0';
        for (size_t i = 0; i < n; i++)
            dup = dup || (strcmp(db[i], line) == 0 && strcmp(coll[i], t1) == 0);
        if (dup)
            continue;
        db[n] = line;
        coll[n] = t1;
        idx[n] = t2 != NULL && *t2 != '\0' ? t2 : "i_1";
        n++;
    }
    mg_schema_naming_reserve(naming, "_migrate", &error);
    for (size_t i = 0; i < n; i++)
        mg_schema_naming_add(naming, db[i], coll[i], &error);
    if (n > 0 && mg_schema_naming_resolve(naming, &error)) {
        for (size_t i = 0; i < n; i++) {
            const mg_schema_naming_entry_t *e = mg_schema_naming_find(naming, db[i], coll[i]);
            bson_t *spec = BCON_NEW("key", "{", "a", BCON_INT32(1), "}", "name", BCON_UTF8(idx[i]));

            check(e != NULL, "collection not named", coll[i]);
            check(valid_ident(e->schema) && strncmp(e->schema, "pg_", 3) != 0 &&
                      strcmp(e->schema, "_migrate") != 0,
                  "bad schema", e->schema);
            check(valid_ident(e->table) && valid_ident(e->pkey), "bad table", e->table);
            check(mg_schema_index_translate(spec, e->schema, e->table, NULL, &plans[i], &error),
                  "translate", idx[i]);
            check(mg_schema_naming_add_indexes(naming, db[i], coll[i], &plans[i], 1, &error),
                  "add indexes", idx[i]);
            bson_destroy(spec);
        }
        check(mg_schema_naming_resolve_indexes(naming, &error), "resolve indexes", error.message);
        for (size_t i = 0; i < n; i++) {
            const mg_schema_naming_entry_t *e = mg_schema_naming_find(naming, db[i], coll[i]);
            const char *names[3] = {e->table, e->pkey, plans[i].pg_name};

            for (int k = 0; k < 3; k++) {
                size_t len = strlen(e->schema) + strlen(names[k]) + 2;

                check(valid_ident(names[k]), "bad relation name", names[k]);
                rel[nrel] = malloc(len);
                snprintf(rel[nrel++], len, "%s.%s", e->schema, names[k]);
            }
            mg_schema_index_plan_cleanup(&plans[i]);
        }
        for (size_t i = 0; i < nrel; i++)
            for (size_t j = i + 1; j < nrel; j++)
                check(strcmp(rel[i], rel[j]) != 0, "two relations alike", rel[i]);
        for (size_t i = 0; i < nrel; i++)
            free(rel[i]);
    }
    mg_schema_naming_destroy(naming);
    free(text);
    return 0;
}
