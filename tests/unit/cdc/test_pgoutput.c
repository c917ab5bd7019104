/*
 * tests/unit/cdc/test_pgoutput.c - the reverse sync's decoder of the
 * logical replication stream: every pgoutput message of protocol version
 * 1 built byte by byte as PostgreSQL 15 writes it, the CopyData frames,
 * the standby status update, LSN text, and malformed input (every
 * truncation of every message, wrong tags, counts past the caps, trailing
 * bytes) failing with an error that names the message and field.
 */
#include "cdc_pgoutput.h"
#include "pgo_build.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static mg_pgo_decoder_t *dec;

static int
setup(void **state)
{
    dec = mg_pgo_decoder_new();
    return dec == NULL;
}

static int
teardown(void **state)
{
    mg_pgo_decoder_destroy(dec);
    return 0;
}

/* every_prefix_fails checks that each truncation of m fails with a parse error (no crash). */
static void
every_prefix_fails(const msg_t *m)
{
    for (size_t k = 0; k < m->n; k++) {
        uint8_t *copy = malloc(k + 1); /* exactly k bytes readable: ASan catches overreads */
        mg_pgo_msg_t out;
        mg_error_t e;

        memcpy(copy, m->b, k);
        mg_error_clear(&e);
        assert_false(mg_pgo_decode(dec, copy, k, &out, &e));
        assert_int_equal(e.code, MG_ERROR_CODE_PARSE);
        assert_non_null(strstr(e.message, "could not decode"));
        free(copy);
    }
}

static void
test_begin_commit(void **state)
{
    msg_t b = {0}, c = {0};
    mg_pgo_msg_t m;
    mg_error_t e;

    put8(&b, 'B');
    put64(&b, 0x16B374D848ULL);
    put64(&b, 742000000123LL);
    put32(&b, 987654);
    assert_true(mg_pgo_decode(dec, b.b, b.n, &m, &e));
    assert_int_equal(m.kind, MG_PGO_BEGIN);
    assert_true(m.lsn == 0x16B374D848ULL);
    assert_true(m.commit_time == 742000000123LL);
    assert_int_equal(m.xid, 987654);
    every_prefix_fails(&b);

    put8(&c, 'C');
    put8(&c, 0);
    put64(&c, 0x16B374D848ULL);
    put64(&c, 0x16B374D880ULL);
    put64(&c, 742000000123LL);
    assert_true(mg_pgo_decode(dec, c.b, c.n, &m, &e));
    assert_int_equal(m.kind, MG_PGO_COMMIT);
    assert_true(m.lsn == 0x16B374D848ULL);
    assert_true(m.end_lsn == 0x16B374D880ULL);
    every_prefix_fails(&c);

    /* a trailing byte is an error, not ignored */
    put8(&c, 0);
    assert_false(mg_pgo_decode(dec, c.b, c.n, &m, &e));
    assert_non_null(strstr(e.message, "commit"));
    assert_non_null(strstr(e.message, "unexpected bytes"));
}

static void
build_relation(msg_t *r, const char *nsp, const char *rel)
{
    put8(r, 'R');
    put32(r, 16401);
    putstr(r, nsp);
    putstr(r, rel);
    put8(r, 'd');
    put16(r, 2);
    put8(r, 1);
    putstr(r, "_id");
    put32(r, 25);
    put32(r, 0xffffffffu);
    put8(r, 0);
    putstr(r, "doc");
    put32(r, 3802);
    put32(r, 0xffffffffu);
}

static void
test_relation(void **state)
{
    msg_t r = {0};
    mg_pgo_msg_t m;
    mg_error_t e;

    build_relation(&r, "shop \"x\"", "orders");
    assert_true(mg_pgo_decode(dec, r.b, r.n, &m, &e));
    assert_int_equal(m.kind, MG_PGO_RELATION);
    assert_int_equal(m.relid, 16401);
    assert_string_equal(m.nspname, "shop \"x\"");
    assert_string_equal(m.relname, "orders");
    assert_int_equal(m.replident, 'd');
    assert_int_equal(m.ncols, 2);
    assert_true(m.columns[0].key);
    assert_string_equal(m.columns[0].name, "_id");
    assert_int_equal(m.columns[0].type_oid, 25);
    assert_int_equal(m.columns[0].typmod, -1);
    assert_false(m.columns[1].key);
    assert_string_equal(m.columns[1].name, "doc");
    assert_int_equal(m.columns[1].type_oid, 3802);
    every_prefix_fails(&r);

    /* a bad replica identity names the field */
    r.b[1 + 4 + strlen("shop \"x\"") + 1 + strlen("orders") + 1] = 'z';
    assert_false(mg_pgo_decode(dec, r.b, r.n, &m, &e));
    assert_non_null(strstr(e.message, "replica identity"));
}

static void
test_insert_update_delete(void **state)
{
    msg_t i = {0}, u = {0}, uk = {0}, d = {0}, df = {0};
    mg_pgo_msg_t m;
    mg_error_t e;

    put8(&i, 'I');
    put32(&i, 16401);
    put8(&i, 'N');
    put16(&i, 2);
    puttext(&i, "k1");
    puttext(&i, "{\"_id\": \"k1\"}");
    assert_true(mg_pgo_decode(dec, i.b, i.n, &m, &e));
    assert_int_equal(m.kind, MG_PGO_INSERT);
    assert_int_equal(m.relid, 16401);
    assert_int_equal(m.old_kind, 0);
    assert_int_equal(m.new_tuple.ncols, 2);
    assert_int_equal(m.new_tuple.cols[0].kind, 't');
    assert_int_equal(m.new_tuple.cols[0].len, 2);
    assert_memory_equal(m.new_tuple.cols[0].data, "k1", 2);
    assert_int_equal(m.new_tuple.cols[1].len, strlen("{\"_id\": \"k1\"}"));
    every_prefix_fails(&i);

    /* update without the old key: null and unchanged-TOAST columns */
    put8(&u, 'U');
    put32(&u, 16401);
    put8(&u, 'N');
    put16(&u, 2);
    put8(&u, 'n');
    put8(&u, 'u');
    assert_true(mg_pgo_decode(dec, u.b, u.n, &m, &e));
    assert_int_equal(m.kind, MG_PGO_UPDATE);
    assert_int_equal(m.old_kind, 0);
    assert_int_equal(m.new_tuple.cols[0].kind, 'n');
    assert_int_equal(m.new_tuple.cols[1].kind, 'u');
    every_prefix_fails(&u);

    /* update that changed the key: K tuple, then N */
    put8(&uk, 'U');
    put32(&uk, 16401);
    put8(&uk, 'K');
    put16(&uk, 2);
    puttext(&uk, "old");
    put8(&uk, 'n');
    put8(&uk, 'N');
    put16(&uk, 2);
    puttext(&uk, "new");
    puttext(&uk, "{}");
    assert_true(mg_pgo_decode(dec, uk.b, uk.n, &m, &e));
    assert_int_equal(m.old_kind, 'K');
    assert_memory_equal(m.old_tuple.cols[0].data, "old", 3);
    assert_memory_equal(m.new_tuple.cols[0].data, "new", 3);
    every_prefix_fails(&uk);

    put8(&d, 'D');
    put32(&d, 16401);
    put8(&d, 'K');
    put16(&d, 2);
    puttext(&d, "k1");
    put8(&d, 'n');
    assert_true(mg_pgo_decode(dec, d.b, d.n, &m, &e));
    assert_int_equal(m.kind, MG_PGO_DELETE);
    assert_int_equal(m.old_kind, 'K');
    assert_int_equal(m.old_tuple.cols[1].kind, 'n');
    every_prefix_fails(&d);

    /* a delete's tuple must be K or O */
    put8(&df, 'D');
    put32(&df, 16401);
    put8(&df, 'N');
    put16(&df, 0);
    assert_false(mg_pgo_decode(dec, df.b, df.n, &m, &e));
    assert_non_null(strstr(e.message, "delete"));
    assert_non_null(strstr(e.message, "old tuple's tag"));
}

static void
test_bad_tuples(void **state)
{
    msg_t big = {0}, kind = {0}, len = {0};
    mg_pgo_msg_t m;
    mg_error_t e;

    put8(&big, 'I');
    put32(&big, 1);
    put8(&big, 'N');
    put16(&big, 1665);
    assert_false(mg_pgo_decode(dec, big.b, big.n, &m, &e));
    assert_non_null(strstr(e.message, "1665"));

    put8(&kind, 'I');
    put32(&kind, 1);
    put8(&kind, 'N');
    put16(&kind, 1);
    put8(&kind, 'x');
    assert_false(mg_pgo_decode(dec, kind.b, kind.n, &m, &e));
    assert_non_null(strstr(e.message, "column's kind"));

    /* a length past the end of the message */
    put8(&len, 'I');
    put32(&len, 1);
    put8(&len, 'N');
    put16(&len, 1);
    put8(&len, 't');
    put32(&len, 0xfffffff0u);
    put8(&len, 'x');
    assert_false(mg_pgo_decode(dec, len.b, len.n, &m, &e));
    assert_non_null(strstr(e.message, "column's value"));
}

static void
test_truncate_type_origin_message(void **state)
{
    msg_t t = {0}, y = {0}, o = {0}, x = {0}, huge = {0};
    mg_pgo_msg_t m;
    mg_error_t e;

    put8(&t, 'T');
    put32(&t, 3);
    put8(&t, 1);
    put32(&t, 10);
    put32(&t, 20);
    put32(&t, 0x80000001u);
    assert_true(mg_pgo_decode(dec, t.b, t.n, &m, &e));
    assert_int_equal(m.kind, MG_PGO_TRUNCATE);
    assert_int_equal(m.nrelids, 3);
    assert_int_equal(m.flags, 1);
    assert_int_equal(mg_pgo_truncate_relid(&m, 0), 10);
    assert_int_equal(mg_pgo_truncate_relid(&m, 1), 20);
    assert_true(mg_pgo_truncate_relid(&m, 2) == 0x80000001u);
    every_prefix_fails(&t);

    put8(&huge, 'T');
    put32(&huge, 70000);
    put8(&huge, 0);
    assert_false(mg_pgo_decode(dec, huge.b, huge.n, &m, &e));
    assert_non_null(strstr(e.message, "relation count"));

    put8(&y, 'Y');
    put32(&y, 70001);
    putstr(&y, "public");
    putstr(&y, "mood");
    assert_true(mg_pgo_decode(dec, y.b, y.n, &m, &e));
    assert_int_equal(m.type_oid, 70001);
    assert_string_equal(m.relname, "mood");
    every_prefix_fails(&y);

    put8(&o, 'O');
    put64(&o, 99);
    putstr(&o, "pg_16400");
    assert_true(mg_pgo_decode(dec, o.b, o.n, &m, &e));
    assert_string_equal(m.relname, "pg_16400");
    every_prefix_fails(&o);

    put8(&x, 'M');
    put8(&x, 1);
    put64(&x, 1234);
    putstr(&x, "app");
    put32(&x, 3);
    memcpy(x.b + x.n, "a\0b", 3);
    x.n += 3;
    assert_true(mg_pgo_decode(dec, x.b, x.n, &m, &e));
    assert_string_equal(m.prefix, "app");
    assert_int_equal(m.content_len, 3);
    assert_memory_equal(m.content, "a\0b", 3);
    every_prefix_fails(&x);
}

static void
test_unknown_and_empty(void **state)
{
    const uint8_t streaming[] = {'S', 0, 0, 0, 1, 1};
    mg_pgo_msg_t m;
    mg_error_t e;

    assert_false(mg_pgo_decode(dec, streaming, sizeof(streaming), &m, &e));
    assert_non_null(strstr(e.message, "unknown type 0x53"));
    assert_false(mg_pgo_decode(dec, streaming, 0, &m, &e));
    assert_non_null(strstr(e.message, "empty"));
}

static void
test_frames(void **state)
{
    msg_t w = {0}, k = {0};
    mg_pgo_frame_t f;
    mg_error_t e;
    uint8_t st[MG_PGO_STATUS_SIZE];

    put8(&w, 'w');
    put64(&w, 0x100);
    put64(&w, 0x200);
    put64(&w, 5);
    put8(&w, 'B');
    assert_true(mg_pgo_frame_parse(w.b, w.n, &f, &e));
    assert_int_equal(f.kind, MG_PGO_FRAME_XLOGDATA);
    assert_int_equal(f.wal_start, 0x100);
    assert_int_equal(f.wal_end, 0x200);
    assert_int_equal(f.len, 1);
    assert_int_equal(f.data[0], 'B');
    for (size_t n = 0; n < 25; n++)
        assert_false(mg_pgo_frame_parse(w.b, n, &f, &e));

    put8(&k, 'k');
    put64(&k, 0xABCDEF);
    put64(&k, 7);
    put8(&k, 1);
    assert_true(mg_pgo_frame_parse(k.b, k.n, &f, &e));
    assert_int_equal(f.kind, MG_PGO_FRAME_KEEPALIVE);
    assert_int_equal(f.wal_end, 0xABCDEF);
    assert_true(f.reply_requested);
    for (size_t n = 0; n < k.n; n++)
        assert_false(mg_pgo_frame_parse(k.b, n, &f, &e));
    put8(&k, 0);
    assert_false(mg_pgo_frame_parse(k.b, k.n, &f, &e));

    k.b[0] = 'q';
    assert_false(mg_pgo_frame_parse(k.b, k.n, &f, &e));
    assert_non_null(strstr(e.message, "unknown type 0x71"));

    mg_pgo_status_build(st, 0x0102030405060708ULL, 0x1112131415161718ULL, 0x2122232425262728ULL, -1,
                        true);
    assert_int_equal(st[0], 'r');
    assert_int_equal(st[1], 0x01);
    assert_int_equal(st[8], 0x08);
    assert_int_equal(st[9], 0x11);
    assert_int_equal(st[17], 0x21);
    assert_int_equal(st[25], 0xff); /* -1, two's complement, big-endian */
    assert_int_equal(st[32], 0xff);
    assert_int_equal(st[33], 1);
}

static void
test_lsn_text(void **state)
{
    uint64_t lsn;
    char buf[32];

    assert_true(mg_pgo_lsn_parse("16/B374D848", &lsn));
    assert_true(lsn == 0x16B374D848ULL);
    assert_string_equal(mg_pgo_lsn_format(lsn, buf, sizeof(buf)), "16/B374D848");
    assert_true(mg_pgo_lsn_parse("0/0", &lsn));
    assert_true(lsn == 0);
    assert_true(mg_pgo_lsn_parse("FFFFFFFF/ffffffff", &lsn));
    assert_true(lsn == UINT64_MAX);
    assert_string_equal(mg_pgo_lsn_format(lsn, buf, sizeof(buf)), "FFFFFFFF/FFFFFFFF");
    assert_false(mg_pgo_lsn_parse("", &lsn));
    assert_false(mg_pgo_lsn_parse("16", &lsn));
    assert_false(mg_pgo_lsn_parse("/1", &lsn));
    assert_false(mg_pgo_lsn_parse("1/", &lsn));
    assert_false(mg_pgo_lsn_parse("1/2x", &lsn));
    assert_false(mg_pgo_lsn_parse("100000000/0", &lsn));
    assert_false(mg_pgo_lsn_parse("-1/0", &lsn));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_begin_commit),
        cmocka_unit_test(test_relation),
        cmocka_unit_test(test_insert_update_delete),
        cmocka_unit_test(test_bad_tuples),
        cmocka_unit_test(test_truncate_type_origin_message),
        cmocka_unit_test(test_unknown_and_empty),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_lsn_text),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
