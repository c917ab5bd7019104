/*
 * tests/unit/cdc/pgo_build.h - building pgoutput messages byte by byte as
 * PostgreSQL 15 writes them (big-endian integers, NUL-terminated strings,
 * tuple columns as 'n', 'u' or 't' + length + bytes), shared by the
 * decoder's and the reverse mapping's unit tests.
 */
#ifndef MG_TEST_PGO_BUILD_H
#define MG_TEST_PGO_BUILD_H

#include <stdint.h>
#include <string.h>

/* A message being built. */
typedef struct {
    uint8_t b[8192];
    size_t n;
} msg_t;

static inline void
put8(msg_t *m, uint8_t v)
{
    m->b[m->n++] = v;
}

static inline void
put16(msg_t *m, uint16_t v)
{
    put8(m, (uint8_t)(v >> 8));
    put8(m, (uint8_t)v);
}

static inline void
put32(msg_t *m, uint32_t v)
{
    for (int k = 3; k >= 0; k--)
        put8(m, (uint8_t)(v >> (8 * k)));
}

static inline void
put64(msg_t *m, uint64_t v)
{
    for (int k = 7; k >= 0; k--)
        put8(m, (uint8_t)(v >> (8 * k)));
}

static inline void
putstr(msg_t *m, const char *s)
{
    memcpy(m->b + m->n, s, strlen(s) + 1);
    m->n += strlen(s) + 1;
}

static inline void
puttext(msg_t *m, const char *s)
{
    put8(m, 't');
    put32(m, (uint32_t)strlen(s));
    memcpy(m->b + m->n, s, strlen(s));
    m->n += strlen(s);
}

#endif /* MG_TEST_PGO_BUILD_H */
