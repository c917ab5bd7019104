/*
 * tests/integration/core/pg_probe.c - drive core's libpq boundary against a
 * real server: connect, run one statement, and print the resulting
 * mg_error_t as one JSON object on stdout. Notices go through the logger
 * (JSON lines on stderr). Exit code: mg_exit_code_for_error.
 *
 * usage: mg_pg_probe CONNINFO SQL
 */
#include "mg/core.h"

#include <libpq-fe.h>
#include <string.h>
#include <yajl/yajl_gen.h>

static void
print_error(const mg_error_t *e)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;

    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"domain", 6);
    const char *d = mg_error_domain_name(e->domain);
    yajl_gen_string(g, (const unsigned char *)d, strlen(d));
    yajl_gen_string(g, (const unsigned char *)"code", 4);
    yajl_gen_integer(g, e->code);
    yajl_gen_string(g, (const unsigned char *)"sqlstate", 8);
    yajl_gen_string(g, (const unsigned char *)e->sqlstate, strlen(e->sqlstate));
    yajl_gen_string(g, (const unsigned char *)"message", 7);
    yajl_gen_string(g, (const unsigned char *)e->message, strlen(e->message));
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    fwrite(buf, 1, len, stdout);
    fputc('\n', stdout);
    yajl_gen_free(g);
}

int
main(int argc, char **argv)
{
    mg_error_t error;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    int rc = MG_EXIT_OK;

    mg_error_clear(&error);
    mg_log_init("mg_pg_probe", MG_LOG_DEBUG, MG_LOG_FORMAT_JSON);
    if (argc != 3) {
        fprintf(stderr, "usage: mg_pg_probe CONNINFO SQL\n");
        return MG_EXIT_USAGE;
    }
    conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(&error, conn, "could not connect to \"%s\"", argv[1]);
        goto done;
    }
    mg_log_attach_pgconn(conn);
    res = PQexec(conn, argv[2]);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        mg_error_set_pgresult(&error, res, "could not run statement");
done:
    if (mg_error_is_set(&error)) {
        mg_log_error(MG_LOG_ERROR, "probe", &error);
        rc = mg_exit_code_for_error(&error);
    }
    print_error(&error);
    PQclear(res);
    PQfinish(conn);
    return rc;
}
