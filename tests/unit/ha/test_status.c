/*
 * tests/unit/ha/test_status.c - node and cluster status records (JSON in
 * etcd): round trips, defaults for missing keys, slot names, and the
 * HAProxy template.
 */
#include "mg/ha.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_node_roundtrip(void **state)
{
    mg_ha_node_t a, b;
    mg_buf_t buf;
    mg_error_t error;

    memset(&a, 0, sizeof(a));
    snprintf(a.name, sizeof(a.name), "node-1");
    a.state = MG_HA_STATE_PRIMARY;
    snprintf(a.role, sizeof(a.role), "primary");
    snprintf(a.host, sizeof(a.host), "127.0.0.1");
    a.pg_port = 5433;
    a.http_port = 8008;
    a.udp_port = 8009;
    a.pg_running = a.pg_reachable = true;
    a.pg_queries_ok = false;
    snprintf(a.pg_error, sizeof(a.pg_error), "connected but \"the\" query failed");
    snprintf(a.system_identifier, sizeof(a.system_identifier), "7312345678901234567");
    a.timeline = 3;
    snprintf(a.current_lsn, sizeof(a.current_lsn), "0/3000148");
    a.nslots = 2;
    snprintf(a.slots[0], MG_HA_NAME_SIZE, "pgdaemon_node_2");
    snprintf(a.slots[1], MG_HA_NAME_SIZE, "pgdaemon_node_3");
    a.nreplication = 1;
    snprintf(a.replication[0].application_name, MG_HA_NAME_SIZE, "node-2");
    snprintf(a.replication[0].state, 16, "streaming");
    a.replication[0].write_lag_s = 0.25;
    a.replication[0].flush_lag_s = -1; /* NULL */
    a.replication[0].replay_lag_s = 1.5;
    a.updated_ms = 1700000000123;
    mg_buf_init(&buf, 1 << 20);
    assert_true(mg_ha_node_to_json(&a, &buf, &error));
    assert_true(mg_ha_node_from_json(buf.data, buf.len, &b, &error));
    assert_string_equal(b.name, "node-1");
    assert_int_equal(b.state, MG_HA_STATE_PRIMARY);
    assert_true(b.pg_reachable);
    assert_false(b.pg_queries_ok);
    assert_string_equal(b.pg_error, a.pg_error);
    assert_string_equal(b.system_identifier, "7312345678901234567");
    assert_int_equal(b.timeline, 3);
    assert_int_equal(b.nslots, 2);
    assert_string_equal(b.slots[1], "pgdaemon_node_3");
    assert_int_equal(b.nreplication, 1);
    assert_string_equal(b.replication[0].state, "streaming");
    assert_true(b.replication[0].write_lag_s > 0.24 && b.replication[0].write_lag_s < 0.26);
    assert_true(b.replication[0].flush_lag_s < 0);
    assert_true(b.updated_ms == 1700000000123LL);
    mg_buf_cleanup(&buf);
}

static void
test_node_defaults_and_errors(void **state)
{
    mg_ha_node_t n;
    mg_error_t error;
    const char *minimal = "{\"name\":\"x\",\"state\":\"no_such_state\",\"extra\":[1,2]}";

    assert_true(mg_ha_node_from_json(minimal, strlen(minimal), &n, &error));
    assert_int_equal(n.state, MG_HA_STATE_INIT);
    assert_string_equal(n.role, "unknown");
    assert_false(n.pg_running);
    assert_int_equal(n.nslots, 0);
    assert_false(mg_ha_node_from_json("{}", 2, &n, &error));
    assert_false(mg_ha_node_from_json("[]", 2, &n, &error));
    assert_false(mg_ha_node_from_json("{\"name\":", 8, &n, &error));
}

static void
test_status_roundtrip(void **state)
{
    mg_ha_cluster_status_t a, b;
    mg_buf_t buf;
    mg_error_t error;

    memset(&a, 0, sizeof(a));
    snprintf(a.primary, sizeof(a.primary), "n1");
    a.term = 7;
    a.failover = MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY;
    snprintf(a.target_primary, sizeof(a.target_primary), "n2");
    mg_buf_init(&buf, 1 << 16);
    assert_true(mg_ha_status_to_json(&a, &buf, &error));
    assert_non_null(strstr(buf.data, "\"promoting_new_primary\""));
    assert_true(mg_ha_status_from_json(buf.data, buf.len, &b, &error));
    assert_true(b.exists);
    assert_string_equal(b.primary, "n1");
    assert_int_equal(b.term, 7);
    assert_int_equal(b.failover, MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY);
    assert_string_equal(b.target_primary, "n2");
    mg_buf_cleanup(&buf);
}

static void
test_slot_name(void **state)
{
    char slot[MG_HA_NAME_SIZE];

    mg_ha_slot_name("node-1", slot, sizeof(slot));
    assert_string_equal(slot, "pgdaemon_node_1");
    mg_ha_slot_name("db_2", slot, sizeof(slot));
    assert_string_equal(slot, "pgdaemon_db_2");
    mg_ha_slot_name("abcdefghijabcdefghijabcdefghij", slot, 16);
    assert_int_equal(strlen(slot), 15);
}

static void
test_haproxy(void **state)
{
    mg_ha_haproxy_server_t s[2] = {{"node1", "127.0.0.1", 5433, 8008},
                                   {"node2", "127.0.0.1", 5434, 8010}};
    mg_buf_t buf;
    mg_error_t error;
    const char *write_fe, *read_fe;

    mg_buf_init(&buf, 1 << 16);
    assert_true(mg_ha_haproxy_render(s, 2, "127.0.0.1", 5000, 5001, "/tmp/h.sock", &buf, &error));
    write_fe = strstr(buf.data, "bind 127.0.0.1:5000");
    read_fe = strstr(buf.data, "bind 127.0.0.1:5001");
    assert_non_null(write_fe);
    assert_non_null(read_fe);
    assert_non_null(strstr(write_fe, "option httpchk GET /primary"));
    assert_non_null(strstr(read_fe, "option httpchk GET /replica"));
    assert_non_null(strstr(buf.data, "server node2 127.0.0.1:5434 check port 8010"));
    assert_non_null(strstr(buf.data, "stats socket /tmp/h.sock"));
    /* a DOWN node is checked every 100 ms (a new primary is used within 100 ms), a refused
       or timed-out connection makes HAProxy check at once (only checks take a node out:
       issue 16, finding 16b) and is redispatched after 200 ms, not 1 s */
    assert_non_null(strstr(buf.data, "    timeout connect 200ms\n"));
    assert_non_null(strstr(buf.data, "    option redispatch\n"));
    assert_non_null(strstr(buf.data, "    default-server inter 1s fastinter 100ms downinter 100ms "
                                     "fall 2 rise 1 observe layer4 error-limit 1 on-error "
                                     "fastinter on-marked-down shutdown-sessions\n"));
    assert_null(strstr(buf.data, "mark-down"));
    assert_null(strstr(buf.data, "timeout connect 2s"));
    mg_buf_cleanup(&buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_roundtrip),   cmocka_unit_test(test_node_defaults_and_errors),
        cmocka_unit_test(test_status_roundtrip), cmocka_unit_test(test_slot_name),
        cmocka_unit_test(test_haproxy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
