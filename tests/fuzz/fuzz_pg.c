/*
 * tests/fuzz/fuzz_pg.c - fuzz_pg.h: generated SQL checked by a real
 * PostgreSQL.
 */
#include "fuzz_pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *conn;

static void
run_or_die(const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "fuzz_pg: could not run \"%s\": %s", sql, PQerrorMessage(conn));
        abort();
    }
    PQclear(r);
}

bool
fuzz_pg_ready(const char *setup)
{
    static int state; /* 0 unknown, 1 ready, 2 off */
    const char *conninfo;

    if (state != 0)
        return state == 1;
    conninfo = getenv("MG_FUZZ_PG");
    if (conninfo == NULL || conninfo[0] == '\0') {
        state = 2;
        return false;
    }
    conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "fuzz_pg: could not connect to MG_FUZZ_PG: %s", PQerrorMessage(conn));
        abort();
    }
    PQsetNoticeProcessor(conn, NULL, NULL);
    run_or_die("SET statement_timeout = '2s'");
    run_or_die("SET client_min_messages = warning");
    if (setup != NULL)
        run_or_die(setup);
    state = 1;
    return true;
}

/* not_our_fault: the SQLSTATEs that are not the statement's fault */
static bool
not_our_fault(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "57014") == 0 ||  /* statement timeout */
                                strncmp(sqlstate, "53", 2) == 0 || /* insufficient resources */
                                strncmp(sqlstate, "54", 2) == 0);  /* program limit exceeded */
}

/* run_one runs sql; false when refused with also_ok; aborts on any other refusal. */
static bool
run_one(const char *what, const char *sql, int nparams, const char *const *params,
        const char *also_ok)
{
    PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok && !not_our_fault(sqlstate) &&
        !(also_ok != NULL && sqlstate != NULL && strcmp(sqlstate, also_ok) == 0)) {
        fprintf(stderr, "fuzz_pg: PostgreSQL refused the %s (SQLSTATE %s): %s\nstatement: %s\n",
                what, sqlstate != NULL ? sqlstate : "none", PQerrorMessage(conn), sql);
        for (int i = 0; i < nparams; i++)
            fprintf(stderr, "$%d: %s\n", i + 1, params[i] != NULL ? params[i] : "NULL");
        abort();
    }
    PQclear(r);
    return ok;
}

void
fuzz_pg_check(const char *what, const char *sql, int nparams, const char *const *params)
{
    if (conn == NULL)
        return;
    run_or_die("BEGIN");
    run_one(what, sql, nparams, params, NULL);
    run_or_die("ROLLBACK");
}

void
fuzz_pg_check_all(const char *what, const char *const *sql, int n, const char *also_ok)
{
    if (conn == NULL)
        return;
    run_or_die("BEGIN");
    for (int i = 0; i < n && run_one(what, sql[i], 0, NULL, also_ok); i++)
        ;
    run_or_die("ROLLBACK");
}
