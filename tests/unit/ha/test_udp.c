/*
 * tests/unit/ha/test_udp.c - the UDP plane's datagram codec (ha_udp.c):
 * WAKEUP / HEARTBEAT / ACK round trips, and rejection of a wrong HMAC, a
 * wrong secret, truncated and oversized datagrams, another cluster or
 * addressee, a stale or future wall clock, replayed sequences, and
 * malformed bodies that carry a valid HMAC; then a few hundred thousand
 * random and mutated buffers (signed and unsigned) that must never crash
 * or be accepted unless they re-encode to themselves (CI runs this under
 * ASan + UBSan). MG_HA_UDP_FUZZ_ITERS sets the count, MG_HA_UDP_SEED the seed.
 */
#include "ha_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SECRET  "s3cret-of-the-cluster"
#define CLUSTER "pgcluster"
#define NOW     1764150000000LL /* a fixed wall clock (ms) */
#define WINDOW  5000            /* freshness window: the daemon passes ttl_ms */

static mg_ha_msg_t
make_msg(char type, const char *from, const char *to, int64_t seq, int64_t wall, bool failsafe)
{
    mg_ha_msg_t m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    snprintf(m.cluster, sizeof(m.cluster), "%s", CLUSTER);
    snprintf(m.from, sizeof(m.from), "%s", from);
    snprintf(m.to, sizeof(m.to), "%s", to);
    m.seq = seq;
    m.wall_ms = wall;
    m.failsafe = failsafe;
    return m;
}

static size_t
encode(const mg_ha_msg_t *m, const char *secret, char *buf, size_t bufsz)
{
    size_t len = mg_ha__msg_encode(m, secret, buf, bufsz);

    assert_true(len > 0);
    return len;
}

/* sign appends the hex HMAC-SHA256 of body[0..n) under secret: a body the key holder wrote. */
static size_t
sign(const char *body, size_t n, const char *secret, char *out, size_t outsz)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    assert_true(n + 65 <= outsz);
    memcpy(out, body, n);
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, n,
                         mac, &maclen));
    assert_int_equal(maclen, 32);
    for (unsigned int i = 0; i < maclen; i++)
        snprintf(out + n + 2 * i, 3, "%02x", mac[i]);
    return n + 64;
}

static mg_ha_msg_verdict_t
receive(const char *buf, size_t len, const char *self, mg_ha_msg_t *m)
{
    return mg_ha__msg_receive(buf, len, SECRET, CLUSTER, self, NOW, WINDOW, m);
}

static void
test_roundtrip(void **state)
{
    const char types[] = {MG_HA_MSG_WAKEUP, MG_HA_MSG_HEARTBEAT, MG_HA_MSG_ACK};
    char buf[512];

    (void)state;
    for (size_t i = 0; i < sizeof(types); i++) {
        for (int fs = 0; fs < 2; fs++) {
            mg_ha_msg_t in = make_msg(types[i], "node-1", "node-2", 1764150000000123LL + (int)i,
                                      NOW - 10, fs == 1);
            mg_ha_msg_t out;
            size_t len = encode(&in, SECRET, buf, sizeof(buf));

            memset(&out, 0x5a, sizeof(out));
            assert_true(mg_ha__msg_decode(buf, len, SECRET, &out));
            assert_int_equal(out.type, types[i]);
            assert_string_equal(out.cluster, CLUSTER);
            assert_string_equal(out.from, "node-1");
            assert_string_equal(out.to, "node-2");
            assert_int_equal(out.seq, in.seq);
            assert_int_equal(out.wall_ms, NOW - 10);
            assert_int_equal(out.failsafe, fs == 1);
            memset(&out, 0, sizeof(out));
            assert_int_equal(receive(buf, len, "node-2", &out), MG_HA_MSG_ACCEPTED);
            assert_int_equal(out.seq, in.seq);
        }
    }
}

static void
test_hmac_and_secret(void **state)
{
    mg_ha_msg_t in = make_msg(MG_HA_MSG_WAKEUP, "node-1", "node-2", 42, NOW, false), out;
    char buf[512], copy[512];
    size_t len = encode(&in, SECRET, buf, sizeof(buf));

    (void)state;
    /* wrong secret on either side */
    assert_false(mg_ha__msg_decode(buf, len, "another-secret", &out));
    assert_false(mg_ha__msg_decode(buf, len, "", &out));
    assert_false(mg_ha__msg_decode(buf, len, NULL, &out));
    assert_int_equal(mg_ha__msg_encode(&in, "", copy, sizeof(copy)), 0);
    assert_int_equal(mg_ha__msg_encode(&in, NULL, copy, sizeof(copy)), 0);
    {
        size_t l2 = encode(&in, "another-secret", copy, sizeof(copy));

        assert_int_equal(receive(copy, l2, "node-2", &out), MG_HA_MSG_INVALID);
    }
    /* every single-byte change of the body or of the HMAC is caught */
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, buf, len);
        copy[i] = (char)(copy[i] == 'x' ? 'y' : 'x');
        assert_false(mg_ha__msg_decode(copy, len, SECRET, &out));
    }
    /* the HMAC in upper case hex is another string: refused */
    memcpy(copy, buf, len);
    for (size_t i = len - 64; i < len; i++)
        if (copy[i] >= 'a' && copy[i] <= 'f')
            copy[i] = (char)(copy[i] - 'a' + 'A');
    if (memcmp(copy, buf, len) != 0)
        assert_false(mg_ha__msg_decode(copy, len, SECRET, &out));
}

static void
test_sizes(void **state)
{
    mg_ha_msg_t in = make_msg(MG_HA_MSG_HEARTBEAT, "node-1", "node-2", 7, NOW, true), out;
    char buf[4096], body[4096];
    size_t len = encode(&in, SECRET, buf, sizeof(buf));

    (void)state;
    /* every truncation, including to nothing */
    for (size_t n = 0; n < len; n++)
        assert_false(mg_ha__msg_decode(buf, n, SECRET, &out));
    assert_false(mg_ha__msg_decode(NULL, 0, SECRET, &out));
    /* trailing garbage after the HMAC */
    memcpy(buf + len, "xx", 2);
    assert_false(mg_ha__msg_decode(buf, len + 2, SECRET, &out));
    /* oversized but correctly signed: refused before parsing */
    {
        size_t n =
            (size_t)snprintf(body, sizeof(body), "PGD1|W|%s|node-1|node-2|1|%lld|-|", CLUSTER, NOW);

        memset(body + n, 'a', MG_HA_MSG_MAX);
        n += MG_HA_MSG_MAX;
        len = sign(body, n, SECRET, buf, sizeof(buf));
        assert_true(len > MG_HA_MSG_MAX);
        assert_false(mg_ha__msg_decode(buf, len, SECRET, &out));
    }
    /* a name longer than the field allows (signed): refused */
    {
        char name[MG_HA_NAME_SIZE + 8];
        size_t n;

        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        n = (size_t)snprintf(body, sizeof(body), "PGD1|W|%s|%s|node-2|1|%lld|-|", CLUSTER, name,
                             NOW);
        len = sign(body, n, SECRET, buf, sizeof(buf));
        assert_false(mg_ha__msg_decode(buf, len, SECRET, &out));
    }
    /* encode refuses a buffer too small for the HMAC */
    assert_int_equal(mg_ha__msg_encode(&in, SECRET, buf, 40), 0);
    assert_int_equal(mg_ha__msg_encode(&in, SECRET, buf, 80), 0);
}

/* malformed bodies under a valid HMAC: only the key holder could send them, still refused */
static void
test_malformed_signed(void **state)
{
    static const char *const bodies[] = {
        "PGD2|W|pgcluster|node-1|node-2|1|1764150000000|-|",                    /* magic */
        "PGD1|X|pgcluster|node-1|node-2|1|1764150000000|-|",                    /* type */
        "PGD1|WW|pgcluster|node-1|node-2|1|1764150000000|-|",                   /* type length */
        "PGD1||pgcluster|node-1|node-2|1|1764150000000|-|",                     /* empty type */
        "PGD1|W|pgcluster|node-1|node-2|-1|1764150000000|-|",                   /* negative seq */
        "PGD1|W|pgcluster|node-1|node-2|+1|1764150000000|-|",                   /* signed seq */
        "PGD1|W|pgcluster|node-1|node-2| 1|1764150000000|-|",                   /* space */
        "PGD1|W|pgcluster|node-1|node-2|1x|1764150000000|-|",                   /* trailing junk */
        "PGD1|W|pgcluster|node-1|node-2||1764150000000|-|",                     /* empty seq */
        "PGD1|W|pgcluster|node-1|node-2|1|-1764150000000|-|",                   /* negative wall */
        "PGD1|W|pgcluster|node-1|node-2|1||-|",                                 /* empty wall */
        "PGD1|W|pgcluster|node-1|node-2|99999999999999999999|1764150000000|-|", /* overflow */
        "PGD1|W|pgcluster|node-1|node-2|1|1764150000000|X|",                    /* flag */
        "PGD1|W|pgcluster|node-1|node-2|1|1764150000000||",                     /* empty flag */
        "PGD1|W||node-1|node-2|1|1764150000000|-|",                             /* empty cluster */
        "PGD1|W|pgcluster||node-2|1|1764150000000|-|",                          /* empty sender */
        "PGD1|W|pgcluster|node-1||1|1764150000000|-|",         /* empty addressee */
        "PGD1|W|pgcluster|node-1|node-2|1|1764150000000|-",    /* missing bar */
        "PGD1|W|pgcluster|node-1|node-2|1|1764150000000|-|x|", /* extra field */
        "PGD1|W|pgcluster|node-1|node-2|1|1764150000000|",     /* missing field */
        "PGD1|W|pgcluster|node-1|node-2|1|",
    };
    char buf[512];
    mg_ha_msg_t out;

    (void)state;
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        size_t len = sign(bodies[i], strlen(bodies[i]), SECRET, buf, sizeof(buf));

        memset(&out, 0x5a, sizeof(out));
        if (mg_ha__msg_decode(buf, len, SECRET, &out))
            fail_msg("accepted malformed body %zu: %s", i, bodies[i]);
        assert_int_equal(out.type, 0x5a); /* untouched on failure */
    }
    /* a NUL byte inside a signed body (would cut a name short) */
    {
        char body[] = "PGD1|W|pgcluster|node-1\0x|node-2|1|1764150000000|-|";
        size_t len = sign(body, sizeof(body) - 1, SECRET, buf, sizeof(buf));

        assert_false(mg_ha__msg_decode(buf, len, SECRET, &out));
    }
    /* the same shape, well formed, is accepted (the cases above differ by one thing) */
    {
        const char *body = "PGD1|W|pgcluster|node-1|node-2|1|1764150000000|-|";
        size_t len = sign(body, strlen(body), SECRET, buf, sizeof(buf));

        assert_true(mg_ha__msg_decode(buf, len, SECRET, &out));
        assert_int_equal(out.seq, 1);
    }
}

static void
test_addressing_and_freshness(void **state)
{
    char buf[512];
    mg_ha_msg_t out;
    size_t len;

    (void)state;
    /* another cluster (same secret) */
    {
        mg_ha_msg_t in = make_msg(MG_HA_MSG_WAKEUP, "node-1", "node-2", 1, NOW, false);

        snprintf(in.cluster, sizeof(in.cluster), "othercluster");
        len = encode(&in, SECRET, buf, sizeof(buf));
        assert_true(mg_ha__msg_decode(buf, len, SECRET, &out));
        assert_int_equal(receive(buf, len, "node-2", &out), MG_HA_MSG_NOT_OURS);
    }
    /* addressed to another node, and from ourselves (reflected) */
    {
        mg_ha_msg_t in = make_msg(MG_HA_MSG_WAKEUP, "node-1", "node-3", 1, NOW, false);

        len = encode(&in, SECRET, buf, sizeof(buf));
        assert_int_equal(receive(buf, len, "node-2", &out), MG_HA_MSG_NOT_OURS);
        in = make_msg(MG_HA_MSG_HEARTBEAT, "node-2", "node-2", 1, NOW, false);
        len = encode(&in, SECRET, buf, sizeof(buf));
        assert_int_equal(receive(buf, len, "node-2", &out), MG_HA_MSG_NOT_OURS);
        /* a prefix of our name is not our name */
        in = make_msg(MG_HA_MSG_HEARTBEAT, "node-1", "node", 1, NOW, false);
        len = encode(&in, SECRET, buf, sizeof(buf));
        assert_int_equal(receive(buf, len, "node-2", &out), MG_HA_MSG_NOT_OURS);
    }
    /* wall clock: the window's edges pass, one millisecond beyond does not */
    {
        const int64_t walls[] = {
            NOW - WINDOW, NOW + WINDOW, NOW - WINDOW - 1, NOW + WINDOW + 1, 0, NOW - 3600 * 1000};
        const mg_ha_msg_verdict_t want[] = {MG_HA_MSG_ACCEPTED, MG_HA_MSG_ACCEPTED,
                                            MG_HA_MSG_STALE,    MG_HA_MSG_STALE,
                                            MG_HA_MSG_STALE,    MG_HA_MSG_STALE};

        for (size_t i = 0; i < sizeof(walls) / sizeof(walls[0]); i++) {
            mg_ha_msg_t in = make_msg(MG_HA_MSG_HEARTBEAT, "node-1", "node-2", 1, walls[i], true);

            len = encode(&in, SECRET, buf, sizeof(buf));
            assert_int_equal(receive(buf, len, "node-2", &out), want[i]);
        }
    }
}

static void
test_replay(void **state)
{
    char buf[512];
    mg_ha_msg_t in, out;
    size_t len;
    int64_t last_seq = 0;

    (void)state;
    in = make_msg(MG_HA_MSG_HEARTBEAT, "node-1", "node-2", 1000, NOW, false);
    len = encode(&in, SECRET, buf, sizeof(buf));
    assert_int_equal(receive(buf, len, "node-2", &out), MG_HA_MSG_ACCEPTED);
    assert_true(mg_ha__msg_seq_accept(&out, &last_seq));
    assert_int_equal(last_seq, 1000);
    /* the same datagram again: a replay */
    assert_int_equal(receive(buf, len, "node-2", &out), MG_HA_MSG_ACCEPTED);
    assert_false(mg_ha__msg_seq_accept(&out, &last_seq));
    assert_int_equal(last_seq, 1000);
    /* an older one (reordered or replayed later), and a WAKEUP with the same sequence */
    in = make_msg(MG_HA_MSG_WAKEUP, "node-1", "node-2", 999, NOW, false);
    len = encode(&in, SECRET, buf, sizeof(buf));
    assert_int_equal(receive(buf, len, "node-2", &out), MG_HA_MSG_ACCEPTED);
    assert_false(mg_ha__msg_seq_accept(&out, &last_seq));
    in.seq = 1000;
    assert_false(mg_ha__msg_seq_accept(&in, &last_seq));
    /* the next one passes */
    in.seq = 1001;
    assert_true(mg_ha__msg_seq_accept(&in, &last_seq));
    assert_int_equal(last_seq, 1001);
    /* an ACK echoes our sequence (the daemon checks it against its ring): no change */
    in = make_msg(MG_HA_MSG_ACK, "node-1", "node-2", 5, NOW, false);
    assert_true(mg_ha__msg_seq_accept(&in, &last_seq));
    assert_int_equal(last_seq, 1001);
}

/* ---- random and mutated buffers -------------------------------------- */

static uint64_t rng_state;

static uint64_t
rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static const char alphabet[] = "PGD1|WHAF-0123456789node-clusterx \xff";

/* mutate changes buf[0..*len) in place: flips, inserts, deletes, splices of bars and digits. */
static void
mutate(char *buf, size_t *len, size_t cap)
{
    int k = 1 + (int)(rnd() % 4);

    while (k-- > 0) {
        size_t pos = *len ? (size_t)(rnd() % *len) : 0;

        switch (rnd() % 6) {
        case 0: /* bit flip */
            if (*len)
                buf[pos] = (char)(buf[pos] ^ (1 << (rnd() % 8)));
            break;
        case 1: /* byte from the datagram alphabet */
            if (*len)
                buf[pos] = alphabet[rnd() % (sizeof(alphabet) - 1)];
            break;
        case 2: /* insert */
            if (*len < cap) {
                memmove(buf + pos + 1, buf + pos, *len - pos);
                buf[pos] = alphabet[rnd() % (sizeof(alphabet) - 1)];
                (*len)++;
            }
            break;
        case 3: /* delete */
            if (*len) {
                memmove(buf + pos, buf + pos + 1, *len - pos - 1);
                (*len)--;
            }
            break;
        case 4: /* truncate */
            *len = pos;
            break;
        default: /* random byte */
            if (*len)
                buf[pos] = (char)rnd();
            break;
        }
    }
}

/*
 * check_one decodes buf (exact size, in its own heap block so ASan sees any
 * overread) and, when accepted, checks the result re-encodes to the same
 * bytes: the decoder accepts exactly the encoder's language.
 */
static void
check_one(const char *data, size_t len, uint64_t *accepted)
{
    char *buf = malloc(len ? len : 1);
    char again[2048];
    mg_ha_msg_t m;
    int64_t last_seq = 0;

    memset(&m, 0, sizeof(m));
    assert_non_null(buf);
    memcpy(buf, data, len);
    if (mg_ha__msg_decode(buf, len, SECRET, &m)) {
        size_t n = mg_ha__msg_encode(&m, SECRET, again, sizeof(again));

        if (n != len || memcmp(again, buf, len) != 0)
            fail_msg("decoder accepted a datagram the encoder does not produce: %.*s", (int)len,
                     buf);
        assert_true(m.seq >= 0 && m.wall_ms >= 0);
        (*accepted)++;
    }
    (void)mg_ha__msg_receive(buf, len, SECRET, CLUSTER, "node-2", NOW, WINDOW, &m);
    (void)mg_ha__msg_receive(buf, len, "wrong", CLUSTER, "node-2", NOW, WINDOW, &m);
    m.seq = (int64_t)rnd();
    (void)mg_ha__msg_seq_accept(&m, &last_seq);
    free(buf);
}

static void
test_random_and_mutated(void **state)
{
    const char *env_iters = getenv("MG_HA_UDP_FUZZ_ITERS");
    const char *env_seed = getenv("MG_HA_UDP_SEED");
    long iters = env_iters ? atol(env_iters) : 300000;
    uint64_t seed = env_seed ? strtoull(env_seed, NULL, 10) : 20261126;
    uint64_t accepted = 0, signed_ok = 0;
    char base[512], work[2048], body[2048];
    const char types[] = {MG_HA_MSG_WAKEUP, MG_HA_MSG_HEARTBEAT, MG_HA_MSG_ACK};

    (void)state;
    rng_state = seed;
    for (long it = 0; it < iters; it++) {
        size_t len;

        switch (it % 4) {
        case 0: /* random bytes, random length up to beyond the cap */
            len = (size_t)(rnd() % (MG_HA_MSG_MAX + 200));
            for (size_t i = 0; i < len; i++)
                work[i] = (char)rnd();
            break;
        case 1: /* random text over the datagram alphabet */
            len = (size_t)(rnd() % 300);
            for (size_t i = 0; i < len; i++)
                work[i] = alphabet[rnd() % (sizeof(alphabet) - 1)];
            break;
        default: { /* a valid datagram, mutated; half of them re-signed so parsing is reached */
            mg_ha_msg_t m = make_msg(types[rnd() % 3], "node-1", "node-2",
                                     (int64_t)(rnd() % 2000000000000000LL),
                                     NOW - WINDOW + (int64_t)(rnd() % (2 * WINDOW)), rnd() % 2);

            len = encode(&m, SECRET, base, sizeof(base));
            memcpy(work, base, len);
            if (it % 4 == 3) {
                size_t blen = len - 64;

                memcpy(body, base, blen);
                mutate(body, &blen, 600);
                len = sign(body, blen, SECRET, work, sizeof(work));
                signed_ok++;
            } else {
                mutate(work, &len, sizeof(work));
            }
            break;
        }
        }
        check_one(work, len, &accepted);
    }
    /* the signed mutations must reach the parser and some survive it */
    assert_true(signed_ok == 0 || accepted > 0);
    print_message("udp fuzz: %ld buffers (seed %llu), %llu decoded\n", iters,
                  (unsigned long long)seed, (unsigned long long)accepted);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_hmac_and_secret),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_malformed_signed),
        cmocka_unit_test(test_addressing_and_freshness),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_random_and_mutated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
