/*
 * tests/fuzz/fuzz_router.c - libFuzzer target: a message goes through the
 * parser and, when it parses, through the router of an in-process sharded
 * mongosim (3 shards): shard-key patterns and values, targeting, the
 * sharding commands (shardCollection, split, moveChunk), scatter-gather
 * merging, routed transactions and merged change streams, with
 * server-side waits capped at 0 ms. The reply must be a valid document
 * with "ok". Every 64 runs the balancer and range deleter run once; every
 * 512 runs every database is dropped through the router.
 */
#include "fuzz_msim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static msim_server_t router;
static msim_cluster_t *cluster;
static msim_conn_t conn;

/* run_admin runs a command on the router and returns its reply (caller destroys). */
static void
run_admin(const bson_t *cmd, bson_t *reply)
{
    bson_init(reply);
    msim_srv = &router;
    msim_dispatch(&conn, cmd, reply);
}

/* reset_state drops every database through the router and closes cursors. */
static void
reset_state(void)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_iter_t it, dbs;
    BSON_APPEND_INT32(&cmd, "listDatabases", 1);
    BSON_APPEND_BOOL(&cmd, "nameOnly", true);
    BSON_APPEND_UTF8(&cmd, "$db", "admin");
    run_admin(&cmd, &reply);
    bson_destroy(&cmd);
    if (bson_iter_init_find(&it, &reply, "databases") && bson_iter_recurse(&it, &dbs))
        while (bson_iter_next(&dbs)) {
            bson_iter_t name;
            bson_t drop = BSON_INITIALIZER, r;
            if (!bson_iter_recurse(&dbs, &name) || !bson_iter_find(&name, "name") ||
                !BSON_ITER_HOLDS_UTF8(&name))
                continue;
            if (strcmp(bson_iter_utf8(&name, NULL), "admin") == 0 ||
                strcmp(bson_iter_utf8(&name, NULL), "config") == 0)
                continue;
            BSON_APPEND_INT32(&drop, "dropDatabase", 1);
            BSON_APPEND_UTF8(&drop, "$db", bson_iter_utf8(&name, NULL));
            run_admin(&drop, &r);
            bson_destroy(&drop);
            bson_destroy(&r);
        }
    bson_destroy(&reply);
    for (int i = 0; i < cluster->nshards; i++) {
        msim_srv = cluster->shards[i];
        msim_cursor_reap(INT64_MAX / 2);
    }
    msim_srv = &router;
    msim_cursor_reap(INT64_MAX / 2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    static unsigned long runs;
    mg_error_t err;

    if (!ready) {
        msim_server_init(&router);
        router.wait_cap_ms = 0;
        router.oplog_max_bytes = 4 << 20;
        mg_log_init("fuzz_router", MG_LOG_FATAL, MG_LOG_FORMAT_JSON);
        conn.fd = -1;
        /* users first: the shards share the router's */
        if (!msim_user_add("fuzz:pw:root", &err))
            abort();
        cluster = msim_cluster_new(&router, 3);
        cluster->balancer_interval_secs = 1;
        cluster->orphan_delay_ms = 0;
        conn.server = &router;
        conn.user = msim_user_find("fuzz", "admin");
        conn.authenticated = true;
        ready = true;
    }
    if (size < 16 || size > (1u << 20))
        return 0;
    ++runs;
    if (runs % 64 == 0) {
        msim_srv = &router;
        msim_cluster_tick(cluster, msim_now_ms() + (int64_t)runs * 1000);
    }
    if (runs % 512 == 0)
        reset_state();
    msim_srv = &router;
    fuzz_msim_dispatch(&conn, data, size);
    return 0;
}
