/*
 * ha/src/ha_udp.c - the UDP plane's datagrams: WAKEUP, HEARTBEAT and ACK,
 * as one text line "PGD1|type|cluster|from|to|seq|wall_ms|flags|hmac"
 * where hmac is HMAC-SHA256 (hex) of everything before it under the
 * shared cluster secret. A datagram without the right HMAC is dropped, so
 * a stray packet cannot trigger anything; freshness and per-sender
 * sequence checks (replays) are the receiver's (ha_daemon.c).
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

bool
mg_ha__msg_decode(const char *buf, size_t len, const char *secret, mg_ha_msg_t *m)
{
    const char *p = buf, *end = buf + len;
    char magic[8], type[4], seq[24], wall[24], flags[4], mac[65];
    char *e1, *e2;

    if (secret == NULL || secret[0] == '\0' || len < 64 + 10 || len > 1024)
        return false;
    if (!hmac_hex(secret, buf, len - 64, mac) || CRYPTO_memcmp(mac, buf + len - 64, 64) != 0)
        return false;
    memset(m, 0, sizeof(*m));
    if (!field(&p, end, magic, sizeof(magic)) || strcmp(magic, MAGIC) != 0 ||
        !field(&p, end, type, sizeof(type)) || strlen(type) != 1 ||
        !field(&p, end, m->cluster, sizeof(m->cluster)) ||
        !field(&p, end, m->from, sizeof(m->from)) || !field(&p, end, m->to, sizeof(m->to)) ||
        !field(&p, end, seq, sizeof(seq)) || !field(&p, end, wall, sizeof(wall)) ||
        !field(&p, end, flags, sizeof(flags)) || p != end - 64)
        return false;
    m->type = type[0];
    if (m->type != MG_HA_MSG_WAKEUP && m->type != MG_HA_MSG_HEARTBEAT && m->type != MG_HA_MSG_ACK)
        return false;
    m->seq = strtoll(seq, &e1, 10);
    m->wall_ms = strtoll(wall, &e2, 10);
    if (*e1 != '\0' || *e2 != '\0' || seq[0] == '\0' || wall[0] == '\0')
        return false;
    m->failsafe = strcmp(flags, "F") == 0;
    return true;
}
