/*
 * tests/fuzz/schema/fuzz_index.c - libFuzzer target for index translation
 * (mg_schema_index_translate: a listIndexes entry read from the source -
 * key pattern, name, unique, sparse, partialFilterExpression, collation,
 * ... - to CREATE INDEX and the DO block that builds it). The input is the
 * entry as Extended JSON.
 *
 * Checked: no crash or sanitizer report; a built plan has a statement, a
 * DO block and a valid PostgreSQL name, and renaming it keeps it
 * buildable. With MG_FUZZ_PG (fuzz_pg.h) the DO block runs twice (the
 * second finds its own index and succeeds) against a table of varied
 * documents, and after a rename under a hostile name: PostgreSQL must
 * accept all of it (a unique index the sample rows do not fit aside), and
 * the expressions must not raise on any of the documents.
 */
#include "fuzz_pg.h"
#include "mg/schema.h"

#include <bson/bson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TABLE "i\"x ü.$y"
#define SETUP                                                                                     \
    "CREATE TEMP TABLE \"i\"\"x ü.$y\" (_id text COLLATE \"C\" NOT NULL PRIMARY KEY, doc jsonb " \
    "NOT NULL);"                                                                                  \
    "INSERT INTO \"i\"\"x ü.$y\" VALUES "                                                        \
    "('1', '{\"_id\": 1, \"a\": 1, \"b\": \"x\", \"c\": [1, 2, {\"d\": null}]}'),"                \
    "('2', '{\"_id\": 2, \"a\": -2.5e300, \"b\": {\"c\": [[\"\\\\\", \"\\u00e9\"]]}}'),"          \
    "('3', '{\"_id\": \"s\", \"a\": {\"$date\": \"2020-01-01T00:00:00Z\"}, \"x.y\": true}'),"     \
    "('4', '{\"_id\": {\"$oid\": \"5f0000000000000000000000\"}, \"a\": null, \"b\": []}'),"       \
    "('5', '{\"_id\": 5, \"a\": {\"$date\": {\"$numberLong\": \"-99999999999999\"}}, "            \
    "\"b\": {\"$minKey\": 1}, \"$c\": \"''\\\"\", \"d\": {\"$numberDecimal\": \"1E+6000\"}}')"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bson_t spec;
    bson_error_t be;
    mg_schema_index_plan_t plan;
    mg_error_t error;
    bool pg = fuzz_pg_ready(SETUP);

    if (size > 64 * 1024 || !bson_init_from_json(&spec, (const char *)data, (ssize_t)size, &be))
        return 0;
    memset(&plan, 0, sizeof(plan));
    if (mg_schema_index_translate(&spec, "pg_temp", TABLE, NULL, &plan, &error) &&
        plan.status != MG_SCHEMA_INDEX_PRIMARY && plan.statement != NULL) {
        if (getenv("MG_FUZZ_VERBOSE") != NULL)
            fprintf(stderr, "built: %s\n", plan.statement);
        if (plan.sql == NULL || plan.pg_name[0] == '\0' || strlen(plan.pg_name) > 63) {
            fprintf(stderr, "fuzz_index: inconsistent plan: %s\n", plan.statement);
            abort();
        }
        if (pg) {
            const char *twice[] = {plan.sql, plan.sql};
            fuzz_pg_check_all("index build", twice, 2, "23505");
        }
        if (!mg_schema_index_plan_rename(&plan, "ix \"ü\" $1", &error)) {
            fprintf(stderr, "fuzz_index: could not rename a built plan: %s\n", error.message);
            abort();
        }
        if (pg) {
            const char *renamed[] = {plan.sql};
            fuzz_pg_check_all("renamed index build", renamed, 1, "23505");
        }
    } else if (getenv("MG_FUZZ_VERBOSE") != NULL) {
        fprintf(stderr, "not built: %s\n", plan.note != NULL ? plan.note : error.message);
    }
    mg_schema_index_plan_cleanup(&plan);
    bson_destroy(&spec);
    return 0;
}
