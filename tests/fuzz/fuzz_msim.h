/*
 * tests/fuzz/fuzz_msim.h - what mongosim's fuzz targets share: an input
 * becomes a message whose length header is its size, and a parsed message
 * goes through msim_dispatch, whose reply must have "ok".
 */
#ifndef FUZZ_MSIM_H
#define FUZZ_MSIM_H

#include "msim.h"

#include <stdlib.h>
#include <string.h>

/* fuzz_msim_frame copies data with its length header set to size (caller
 * frees); NULL when the input is too short or too long for a message. */
static inline uint8_t *
fuzz_msim_frame(const uint8_t *data, size_t size)
{
    uint8_t *buf;
    if (size < 16 || size > (1u << 20))
        return NULL;
    buf = malloc(size);
    if (buf == NULL)
        return NULL;
    memcpy(buf, data, size);
    buf[0] = (uint8_t)size;
    buf[1] = (uint8_t)(size >> 8);
    buf[2] = (uint8_t)(size >> 16);
    buf[3] = (uint8_t)(size >> 24);
    return buf;
}

/* fuzz_msim_dispatch parses data and, when it parses, runs it on conn. */
static inline void
fuzz_msim_dispatch(msim_conn_t *conn, const uint8_t *data, size_t size)
{
    uint8_t *buf = fuzz_msim_frame(data, size);
    msim_msg_t msg;
    mg_error_t err;
    if (buf == NULL)
        return;
    if (msim_wire_parse(buf, size, &msg, &err)) {
        bson_t reply = BSON_INITIALIZER;
        conn->close_after_reply = false;
        msim_dispatch(conn, &msg.cmd, &reply);
        if (!bson_has_field(&reply, "ok"))
            abort();
        bson_destroy(&reply);
        bson_destroy(&msg.cmd);
    }
    free(buf);
}

#endif
