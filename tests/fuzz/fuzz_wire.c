/*
 * tests/fuzz/fuzz_wire.c - libFuzzer target: random bytes into mongosim's
 * message parser (OP_MSG sections and document sequences, OP_QUERY, BSON
 * structure validation). The length field is forced to the input size so
 * the fuzzer explores the body instead of the framing check.
 */
#include "fuzz_msim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fuzz_msim_frame(data, size);
    msim_msg_t msg;
    mg_error_t err;

    if (buf == NULL)
        return 0;
    if (msim_wire_parse(buf, size, &msg, &err)) {
        bson_iter_t it;
        /* the merged command must be a well-formed document */
        if (!bson_iter_init(&it, &msg.cmd))
            abort();
        while (bson_iter_next(&it))
            ;
        bson_destroy(&msg.cmd);
    } else if (err.code == 0 || err.message[0] == '\0') {
        abort(); /* every failure names a code and a reason */
    }
    free(buf);
    return 0;
}
