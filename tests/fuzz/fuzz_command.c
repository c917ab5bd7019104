/*
 * tests/fuzz/fuzz_command.c - libFuzzer target: a message goes through the
 * parser and, when it parses, through the full command layer of an
 * in-process mongosim (matcher, updates, aggregation, change streams,
 * transactions) with server-side waits capped at 0 ms. The reply must be a
 * valid document with "ok".
 */
#include "fuzz_msim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static msim_server_t server;
static msim_conn_t conn;

/* reset_state drops all data, change history and cursors so runs stay fast. */
static void
reset_state(void)
{
    msim_oplog_entry_t *e, *next;
    pthread_rwlock_wrlock(&server.lock);
    while (server.ncolls > 0)
        msim_catalog_drop(server.colls[0]);
    for (e = server.oplog_head; e != NULL; e = next) {
        next = e->next;
        msim_oplog_entry_free(e);
    }
    server.oplog_head = server.oplog_tail = NULL;
    server.oplog_bytes = 0;
    server.oplog_trimmed = false;
    pthread_rwlock_unlock(&server.lock);
    msim_cursor_reap(INT64_MAX / 2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    static unsigned long runs;
    mg_error_t err;

    if (!ready) {
        msim_server_init(&server);
        server.wait_cap_ms = 0;
        server.oplog_max_bytes = 8 << 20;
        mg_log_init("fuzz_command", MG_LOG_FATAL, MG_LOG_FORMAT_JSON);
        conn.fd = -1;
        /* with a root user, so privilege checks and SCRAM parsing run too */
        if (!msim_user_add("fuzz:pw:root", &err))
            abort();
        conn.user = msim_user_find("fuzz", "admin");
        conn.authenticated = true;
        ready = true;
    }
    if (size < 16 || size > (1u << 20))
        return 0;
    if (++runs % 512 == 0)
        reset_state();
    fuzz_msim_dispatch(&conn, data, size);
    return 0;
}
