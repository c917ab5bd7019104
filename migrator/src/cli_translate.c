/*
 * migrator/src/cli_translate.c - `migrate translate`: the SQL the shadow
 * reads run for a MongoDB find, against the table init created for its
 * collection, with its parameters, the sort guard and (--explain)
 * PostgreSQL's plan, so application developers can adopt the SQL when
 * they port their code (docs/shadow-reads.md). Nothing is run but EXPLAIN.
 */
#include "migrator_internal.h"
#include "mg/validate.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

typedef struct {
    char *target;
    char *state_schema;
    bool explain;
    bool json;
} translate_opts_t;

static const mg_config_option_t translate_options[] = {
    MG_MIGRATOR_OPTION_TARGET(translate_opts_t, target),
    MG_MIGRATOR_OPTION_STATE_SCHEMA(translate_opts_t, state_schema),
    {.name = "explain",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(translate_opts_t, explain),
     .default_value = "false",
     .help = "also print PostgreSQL's plan for the statement (EXPLAIN; the query is not run)"},
    MG_MIGRATOR_OPTION_JSON(translate_opts_t, json, "print one JSON object"),
};

/* table_of finds the schema and table init created for ns ("db.coll"). */
static const mg_state_coll_t *
table_of(const mg_state_colls_t *colls, const char *ns)
{
    for (size_t i = 0; i < colls->n; i++) {
        const mg_state_coll_t *c = &colls->items[i];
        size_t n = strlen(c->db);
        if (strncmp(ns, c->db, n) == 0 && ns[n] == '.' && strcmp(ns + n + 1, c->coll) == 0)
            return c;
    }
    return NULL;
}

/* explain runs EXPLAIN of the statement with its parameters into out (one line per row). */
static bool
explain(PGconn *pg, const mg_validate_sql_t *q, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res;
    bool ok;

    mg_buf_init(&sql, strlen(q->sql) + 64);
    ok = mg_buf_printf(&sql, error, "EXPLAIN %s", q->sql);
    res = ok ? PQexecParams(pg, sql.data, q->nparams, NULL, (const char *const *)q->params, NULL,
                            NULL, 0)
             : NULL;
    if (ok && PQresultStatus(res) != PGRES_TUPLES_OK)
        ok = mg_error_set_pgresult(error, res, "could not explain the translated query");
    for (int i = 0; ok && i < PQntuples(res); i++)
        ok = mg_buf_printf(out, error, "%s\n", PQgetvalue(res, i, 0));
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
}

static bool
print_json(const char *ns, const mg_state_coll_t *c, const mg_validate_sql_t *q, const char *plan,
           mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    mg_buf_t out;
    bool ok;

    if (g == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    yajl_gen_map_open(g);
    mg_json_kstr(g, "ns", ns);
    mg_json_kstr(g, "schema", c->schema);
    mg_json_kstr(g, "table", c->table);
    mg_json_kstr(g, "sql", q->sql);
    mg_json_str(g, "params");
    yajl_gen_array_open(g);
    for (int i = 0; i < q->nparams; i++)
        mg_json_str(g, q->params[i]);
    yajl_gen_array_close(g);
    mg_json_kstr(g, "jsonpath", q->jsonpath);
    mg_json_kstr(g, "guard_sql", q->guard_sql);
    mg_json_kbool(g, "ordered", q->ordered);
    mg_json_kbool(g, "count_only", q->count_only);
    mg_json_kstr(g, "explain", plan);
    yajl_gen_map_close(g);
    mg_buf_init(&out, 1u << 30);
    ok = mg_json_take(g, &out, error);
    if (ok)
        printf("%s\n", out.data);
    mg_buf_cleanup(&out);
    yajl_gen_free(g);
    return ok;
}

static void
print_text(const mg_validate_sql_t *q, const char *plan)
{
    printf("%s;\n", q->sql);
    for (int i = 0; i < q->nparams; i++)
        printf("-- $%d = %s\n", i + 1, q->params[i]);
    if (q->guard_sql != NULL)
        printf("-- exact only when this is false on the data (the sort meets arrays, documents or "
               "other types):\n%s;\n",
               q->guard_sql);
    if (q->count_only)
        printf("-- skip/limit without a sort: MongoDB leaves which documents unspecified\n");
    if (plan != NULL)
        printf("\n%s", plan);
}

static int
translate_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const translate_opts_t *o = ctx->opts;
    mg_state_t *st = mg_migrator__res(ctx)->st;
    mg_validate_shadow_line_t line;
    mg_state_migration_t mig;
    mg_state_colls_t colls = {0};
    mg_validate_sql_t q = {0};
    mg_buf_t plan;
    const mg_state_coll_t *c;
    int rc = MG_EXIT_FAILURE;

    mg_buf_init(&plan, 16u << 20);
    if (!mg_validate_shadow_line_parse(ctx->args[0], strlen(ctx->args[0]), &line, error))
        return MG_EXIT_USAGE;
    if (line.ns == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "could not translate query: it has no \"ns\" string (\"db.coll\")");
        rc = MG_EXIT_USAGE;
    } else if (!mg_state_migration_get(st, &mig, error) ||
               !mg_state_collections_load(st, false, &colls, error)) {
        rc = mg_exit_code_for_error(error);
    } else if ((c = table_of(&colls, line.ns)) == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                     "could not translate query on \"%s\": not a migrated collection", line.ns);
        rc = MG_EXIT_USAGE;
    } else if (!mg_validate_shadow_translate(&line.find, c->schema, c->table, mig.fidelity, &q,
                                             error)) {
        rc = error->code == MG_VALIDATE_ERR_NOT_TRANSLATED ? MG_EXIT_FAILURE
                                                           : mg_exit_code_for_error(error);
    } else if (o->explain && !explain(mg_state_conn(st), &q, &plan, error)) {
        rc = mg_exit_code_for_error(error);
    } else if (o->json) {
        rc = print_json(line.ns, c, &q, plan.data, error) ? MG_EXIT_OK : MG_EXIT_FAILURE;
    } else {
        print_text(&q, plan.data);
        rc = MG_EXIT_OK;
    }
    mg_validate_sql_cleanup(&q);
    mg_state_colls_cleanup(&colls);
    mg_buf_cleanup(&plan);
    mg_validate_shadow_line_cleanup(&line);
    return rc;
}

const mg_cmd_t mg_migrator_cmd_translate = {
    .name = "translate",
    .summary = "print the SQL (and the plan) the shadow reads use for a MongoDB find",
    .usage = "--target URI [options] QUERY",
    .description =
        "Translate one find, given as a shadow-file line ({\"ns\": \"db.coll\", \"filter\": "
        "{...}, \"sort\": {...},\n\"projection\": {...}, \"skip\": n, \"limit\": n}), into the "
        "SQL over the table init created\nfor it, with its parameters and sort guard; "
        "--explain adds PostgreSQL's plan (docs/shadow-reads.md).",
    .main = translate_main,
    .options = translate_options,
    .noptions = sizeof(translate_options) / sizeof(translate_options[0]),
    .opts_size = sizeof(translate_opts_t),
    .needs = MG_CMD_NEEDS_TARGET | MG_CMD_NEEDS_STATE,
    .min_args = 1,
    .max_args = 1,
};
