/*
 * tests/fuzz/ha/fuzz_udp.c - libFuzzer target for the UDP plane's datagram
 * decoder (mg_ha__msg_decode, mg_ha__msg_receive). The first byte picks
 * the mode: the input as a datagram as is (the HMAC gate), or the input as
 * a body that the target signs itself, so the fuzzer reaches the parser
 * behind the HMAC. An accepted datagram must re-encode to the same bytes.
 */
#include "ha_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SECRET "fuzz-secret"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char *buf, again[2048];
    size_t len;
    mg_ha_msg_t m;

    if (size == 0 || size > 4096)
        return 0;
    buf = malloc(size + 64);
    if (buf == NULL)
        return 0;
    len = size - 1;
    memcpy(buf, data + 1, len);
    if (data[0] & 1) {
        if (HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)buf, len, mac,
                 &maclen) == NULL ||
            maclen != 32) {
            free(buf);
            return 0;
        }
        for (unsigned int i = 0; i < maclen; i++) {
            static const char hex[] = "0123456789abcdef";

            buf[len + 2 * i] = hex[mac[i] >> 4];
            buf[len + 2 * i + 1] = hex[mac[i] & 15];
        }
        len += 64;
    }
    memset(&m, 0, sizeof(m));
    if (mg_ha__msg_decode(buf, len, SECRET, &m)) {
        size_t n = mg_ha__msg_encode(&m, SECRET, again, sizeof(again));

        if (n != len || memcmp(again, buf, len) != 0 || m.seq < 0 || m.wall_ms < 0)
            abort();
    }
    (void)mg_ha__msg_receive(buf, len, SECRET, "pgcluster", "node-2", 1764150000000LL, 5000, &m);
    free(buf);
    return 0;
}
