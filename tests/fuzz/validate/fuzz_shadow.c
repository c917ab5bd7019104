/*
 * tests/fuzz/validate/fuzz_shadow.c - libFuzzer target for the shadow-read
 * translator (mg_validate_shadow_translate: a MongoDB find's filter, sort,
 * projection, skip and limit -> SQL over the jsonb column), whose input
 * comes from shadow files and the source's profiler. The input is one
 * shadow line, read as validate reads it (mg_validate_shadow_line_parse):
 * {"filter": {...}, "sort": {...}, "projection": {...}, "skip": n,
 * "limit": n}.
 *
 * Checked: no crash or sanitizer report; a translation has a statement,
 * at most 64 parameters and a guard using a prefix of them; a refusal is
 * "not translated: ..." or a limit. With MG_FUZZ_PG (fuzz_pg.h) every
 * translated statement and guard runs in a real PostgreSQL against a
 * table of varied documents, with the parameters the translator bound.
 */
#include "fuzz_pg.h"
#include "mg/validate.h"

#include <bson/bson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* a temporary table (schema pg_temp: every fuzzing process has its own) with a hostile name */
#define TABLE "t\"x ü.$y"
#define SETUP                                                                                     \
    "CREATE TEMP TABLE \"t\"\"x ü.$y\" (_id text COLLATE \"C\" NOT NULL PRIMARY KEY, doc jsonb " \
    "NOT NULL);"                                                                                  \
    "INSERT INTO \"t\"\"x ü.$y\" VALUES "                                                        \
    "('1', '{\"_id\": 1, \"a\": 1, \"b\": \"x\", \"c\": [1, 2, {\"d\": null}]}'),"                \
    "('2', '{\"_id\": 2, \"a\": -2.5e300, \"b\": {\"c\": [[\"\\\\\", \"\\u00e9\"]]}}'),"          \
    "('3', '{\"_id\": \"s\", \"a\": {\"$date\": \"2020-01-01T00:00:00Z\"}, \"x.y\": true}'),"     \
    "('4', '{\"_id\": {\"$oid\": \"5f0000000000000000000000\"}, \"a\": null, \"b\": []}'),"       \
    "('5', '{\"_id\": 5, \"a\": {\"$numberDecimal\": \"NaN\"}, \"b\": {\"$minKey\": 1}, "         \
    "\"$c\": \"''\\\"\"}')"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_validate_shadow_line_t line;
    mg_validate_sql_t sql;
    mg_error_t error;
    bool pg = fuzz_pg_ready(SETUP), ok;

    if (size > 64 * 1024 || !mg_validate_shadow_line_parse((const char *)data, size, &line, &error))
        return 0;
    const mg_validate_find_t find = line.find;
    ok = mg_validate_shadow_translate(&find, "pg_temp", TABLE, MG_SCHEMA_FIDELITY_RELAXED, &sql,
                                      &error);
    if (ok) {
        if (getenv("MG_FUZZ_VERBOSE") != NULL)
            fprintf(stderr, "translated: %s\n", sql.sql);
        if (sql.sql == NULL || sql.nparams < 0 || sql.nparams > 64 ||
            sql.guard_nparams > sql.nparams || (sql.guard_nparams > 0 && sql.guard_sql == NULL) ||
            (find.filter != NULL && bson_count_keys(find.filter) > 0 && sql.jsonpath == NULL)) {
            fprintf(stderr, "fuzz_shadow: inconsistent translation: %s\n", sql.sql);
            abort();
        }
        if (pg) {
            fuzz_pg_check("shadow statement", sql.sql, sql.nparams,
                          (const char *const *)sql.params);
            if (sql.guard_sql != NULL)
                fuzz_pg_check("shadow sort guard", sql.guard_sql, sql.guard_nparams,
                              (const char *const *)sql.params);
        }
        mg_validate_sql_cleanup(&sql);
    } else if (getenv("MG_FUZZ_VERBOSE") != NULL) {
        fprintf(stderr, "refused: %s\n", error.message);
    }
    if (!ok && error.code != MG_VALIDATE_ERR_NOT_TRANSLATED && error.code != MG_ERROR_CODE_LIMIT) {
        fprintf(stderr, "fuzz_shadow: refused without \"not translated\": %s\n", error.message);
        abort();
    }
    mg_validate_shadow_line_cleanup(&line);
    return 0;
}
