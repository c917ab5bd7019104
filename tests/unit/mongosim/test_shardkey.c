/*
 * tests/unit/mongosim/test_shardkey.c - shard keys: MongoDB's hashed-index
 * hash against the values the server's own hasher tests expect, key
 * extraction (dotted paths, missing fields, arrays refused), comparison and
 * ranges.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "msim.h"

static int64_t
hash_of(const bson_t *doc)
{
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, doc, "check"));
    return msim_hash64(&it);
}

#define HASH_IS(expected, ...)                             \
    do {                                                   \
        bson_t *d = BCON_NEW("check", __VA_ARGS__);        \
        assert_int_equal(hash_of(d), (int64_t)(expected)); \
        bson_destroy(d);                                   \
    } while (0)

static void
test_hash_numbers_squash_to_int64(void **state)
{
    (void)state;
    /* the published expectations of MongoDB's BSONElementHasher */
    HASH_IS(4854801880128277513LL, BCON_INT32(0));
    HASH_IS(4854801880128277513LL, BCON_DOUBLE(0.456));
    HASH_IS(4854801880128277513LL, BCON_INT64(0));
    HASH_IS(4854801880128277513LL, BCON_DOUBLE(NAN));
    HASH_IS(5902408780260971510LL, BCON_INT32(1));
    HASH_IS(5902408780260971510LL, BCON_DOUBLE(1.987));
    HASH_IS(1140205862565771219LL, BCON_INT32(-1));
    HASH_IS(1140205862565771219LL, BCON_DOUBLE(-1.789));
    HASH_IS(6165898260261354870LL, BCON_INT32(INT32_MIN));
    HASH_IS(1143184177162245883LL, BCON_INT64(INT32_MAX));
    HASH_IS(921523596458303250LL, BCON_DOUBLE(1.7976931348623157e308));
    HASH_IS(921523596458303250LL, BCON_INT64(INT64_MAX));
    HASH_IS(4532067210535695462LL, BCON_DOUBLE(-1.7976931348623157e308));
    HASH_IS(4532067210535695462LL, BCON_INT64(INT64_MIN));
}

static void
test_hash_other_types(void **state)
{
    bson_oid_t oid;
    uint8_t bytes[] = {0, 1, 2, 3, 4, 6};
    (void)state;
    HASH_IS(7961148599568647290LL, BCON_MINKEY);
    HASH_IS(5504842513779440750LL, BCON_MAXKEY);
    HASH_IS(40158834000849533LL, BCON_UNDEFINED);
    HASH_IS(8478485326885698097LL, BCON_UTF8("abc"));
    HASH_IS(2049396243249673340LL, BCON_UTF8(""));
    HASH_IS(4771603801758380216LL, "{", "a", BCON_UTF8("abc"), "b", BCON_INT64(123), "}");
    HASH_IS(7980500913326740417LL, "{", "}");
    HASH_IS(-2938911267422831539LL, "[", BCON_UTF8("bar"), BCON_UTF8("baz"), BCON_UTF8("qux"), "]");
    HASH_IS(8849948234993459283LL, "[", "]");
    HASH_IS(7252465090394235301LL, BCON_BIN(BSON_SUBTYPE_BINARY, bytes, 6));
    HASH_IS(5736670452907618262LL, BCON_BIN(BSON_SUBTYPE_USER, bytes, 6));
    bson_oid_init_from_string(&oid, "010203040506070809101112");
    HASH_IS(-5588663249627035708LL, BCON_OID(&oid));
    bson_oid_init_from_string(&oid, "000000000000000000000000");
    HASH_IS(-4293118519463489418LL, BCON_OID(&oid));
    HASH_IS(6405873908747105701LL, BCON_BOOL(true));
    HASH_IS(6289544573401934092LL, BCON_BOOL(false));
    HASH_IS(4476222765095560467LL, BCON_DATE_TIME(0x5566778811223344LL));
    HASH_IS(-1178696894582842035LL, BCON_DATE_TIME(0));
    HASH_IS(-7275792090268217043LL, BCON_REGEX("mongodb", ""));
    HASH_IS(7095855029187981886LL, BCON_REGEX(".*", "i"));
    HASH_IS(6861638109178014270LL, BCON_CODE("func f() { return 1; }"));
}

static void
test_key_extraction(void **state)
{
    bson_t *pattern = BCON_NEW("a.b", BCON_INT32(1), "c", BCON_INT32(1));
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1), "a", "{", "b", BCON_UTF8("x"), "}");
    bson_t key = BSON_INITIALIZER, *want = BCON_NEW("a.b", BCON_UTF8("x"), "c", BCON_NULL);
    bson_t *arr = BCON_NEW("a", "[", "{", "b", BCON_INT32(1), "}", "]");
    mg_error_t err;
    (void)state;
    assert_true(msim_shardkey_of(pattern, bson_get_data(doc), doc->len, &key, &err));
    assert_int_equal(msim_shardkey_cmp(&key, want), 0);
    bson_reinit(&key);
    assert_false(msim_shardkey_of(pattern, bson_get_data(arr), arr->len, &key, &err));
    assert_int_equal(err.code, 61);
    bson_destroy(&key);
    bson_destroy(pattern);
    bson_destroy(doc);
    bson_destroy(want);
    bson_destroy(arr);
}

static void
test_ranges_and_patterns(void **state)
{
    bson_t *min = BCON_NEW("k", BCON_MINKEY), *max = BCON_NEW("k", BCON_INT32(10));
    bson_t *k5 = BCON_NEW("k", BCON_INT32(5)), *k10 = BCON_NEW("k", BCON_DOUBLE(10.0));
    bson_t *kstr = BCON_NEW("k", BCON_UTF8("a"));
    bson_t *hashed = BCON_NEW("k", BCON_UTF8("hashed")),
           *two = BCON_NEW("a", BCON_UTF8("hashed"), "b", BCON_UTF8("hashed"));
    bool h;
    (void)state;
    assert_true(msim_range_contains(min, max, k5));
    assert_false(msim_range_contains(min, max, k10));  /* max is exclusive, 10.0 == 10 */
    assert_false(msim_range_contains(min, max, kstr)); /* strings sort after numbers */
    assert_true(msim_shardkey_pattern_valid(hashed, &h, NULL) && h);
    assert_false(msim_shardkey_pattern_valid(two, &h, NULL));
    bson_destroy(min);
    bson_destroy(max);
    bson_destroy(k5);
    bson_destroy(k10);
    bson_destroy(kstr);
    bson_destroy(hashed);
    bson_destroy(two);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_numbers_squash_to_int64),
        cmocka_unit_test(test_hash_other_types),
        cmocka_unit_test(test_key_extraction),
        cmocka_unit_test(test_ranges_and_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
