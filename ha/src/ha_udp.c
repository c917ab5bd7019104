/*
 * ha/src/ha_udp.c - the UDP plane's datagrams: WAKEUP, HEARTBEAT and ACK,
 * as one text line "PGD1|type|cluster|from|to|seq|wall_ms|flags|hmac"
 * where hmac is HMAC-SHA256 (hex) of everything before it under the
 * shared cluster secret. A datagram without the right HMAC is dropped, so
 * a stray packet cannot trigger anything; freshness and per-sender
 * sequence checks (replays) are mg_ha__msg_receive's and
 * mg_ha__msg_seq_accept's, called by the receiver (ha_peers.c).
 */
#include "ha_internal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "PGD1"

static bool
hmac_hex(const char *secret, const char *data, size_t len, char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)data, len, mac,
             &maclen) == NULL ||
        maclen != 32)
        return false;
    for (unsigned int i = 0; i < maclen; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return true;
}

size_t
mg_ha__msg_encode(const mg_ha_msg_t *m, const char *secret, char *out, size_t outsz)
{
    char mac[65];
    int n;

    if (secret == NULL || secret[0] == '\0')
        return 0;
    n = snprintf(out, outsz, MAGIC "|%c|%s|%s|%s|%lld|%lld|%s|", m->type, m->cluster, m->from,
                 m->to, (long long)m->seq, (long long)m->wall_ms, m->failsafe ? "F" : "-");
    if (n < 0 || (size_t)n + 65 > outsz || !hmac_hex(secret, out, (size_t)n, mac))
        return 0;
    memcpy(out + n, mac, 65);
    return (size_t)n + 64;
}

/* field copies the next '|'-terminated field of *p into out; false when too long or missing. */
static bool
field(const char **p, const char *end, char *out, size_t outsz)
{
    const char *bar = memchr(*p, '|', (size_t)(end - *p));
    size_t n;

    if (bar == NULL)
        return false;
    n = (size_t)(bar - *p);
    if (n >= outsz)
        return false;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = bar + 1;
    return true;
}

/*
 * digits parses a canonical non-negative decimal of 1..18 digits (no sign,
 * spaces or leading zeros: one datagram has one spelling); false otherwise.
 */
static bool
digits(const char *text, int64_t *out)
{
    int64_t v = 0;
    size_t n = strlen(text);

    if (n == 0 || n > 18 || (n > 1 && text[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        v = v * 10 + (text[i] - '0');
    }
    *out = v;
    return true;
}

bool
mg_ha__msg_decode(const char *buf, size_t len, const char *secret, mg_ha_msg_t *m)
{
    const char *p = buf, *end = buf + len;
    char magic[8], type[4], seq[24], wall[24], flags[4], mac[65];
    mg_ha_msg_t out;

    if (secret == NULL || secret[0] == '\0' || buf == NULL || len < MG_HA_MSG_MIN ||
        len > MG_HA_MSG_MAX || memchr(buf, '\0', len) != NULL)
        return false;
    if (!hmac_hex(secret, buf, len - 64, mac) || CRYPTO_memcmp(mac, buf + len - 64, 64) != 0)
        return false;
    memset(&out, 0, sizeof(out));
    if (!field(&p, end, magic, sizeof(magic)) || strcmp(magic, MAGIC) != 0 ||
        !field(&p, end, type, sizeof(type)) || strlen(type) != 1 ||
        !field(&p, end, out.cluster, sizeof(out.cluster)) ||
        !field(&p, end, out.from, sizeof(out.from)) || !field(&p, end, out.to, sizeof(out.to)) ||
        !field(&p, end, seq, sizeof(seq)) || !field(&p, end, wall, sizeof(wall)) ||
        !field(&p, end, flags, sizeof(flags)) || p != end - 64)
        return false;
    out.type = type[0];
    if (out.type != MG_HA_MSG_WAKEUP && out.type != MG_HA_MSG_HEARTBEAT &&
        out.type != MG_HA_MSG_ACK)
        return false;
    /* negative values are refused: the receiver indexes its ack ring by seq */
    if (!digits(seq, &out.seq) || !digits(wall, &out.wall_ms))
        return false;
    if (strcmp(flags, "F") == 0)
        out.failsafe = true;
    else if (strcmp(flags, "-") != 0)
        return false;
    if (out.cluster[0] == '\0' || out.from[0] == '\0' || out.to[0] == '\0')
        return false;
    *m = out;
    return true;
}

mg_ha_msg_verdict_t
mg_ha__msg_receive(const char *buf, size_t len, const char *secret, const char *cluster,
                   const char *self, int64_t now_wall_ms, int64_t window_ms, mg_ha_msg_t *m)
{
    mg_ha_msg_t out;

    if (!mg_ha__msg_decode(buf, len, secret, &out))
        return MG_HA_MSG_INVALID;
    if (strcmp(out.cluster, cluster) != 0 || strcmp(out.to, self) != 0 ||
        strcmp(out.from, self) == 0)
        return MG_HA_MSG_NOT_OURS;
    if (out.wall_ms < now_wall_ms - window_ms || out.wall_ms > now_wall_ms + window_ms)
        return MG_HA_MSG_STALE;
    *m = out;
    return MG_HA_MSG_ACCEPTED;
}

bool
mg_ha__msg_seq_accept(const mg_ha_msg_t *m, int64_t *last_seq)
{
    if (m->type == MG_HA_MSG_ACK)
        return true; /* echoes our own sequence: the sender's ring check applies */
    if (m->seq <= *last_seq)
        return false;
    *last_seq = m->seq;
    return true;
}
