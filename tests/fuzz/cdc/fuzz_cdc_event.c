/*
 * tests/fuzz/cdc/fuzz_cdc_event.c - random bytes as a change event: decode
 * and read the resume token; never crash, and a decoded event is coherent.
 */
#include "mg/cdc.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bson_t b;
    mg_cdc_event_t ev;
    mg_error_t e;
    uint32_t t, i;

    if (!bson_init_static(&b, data, size) || !bson_validate(&b, BSON_VALIDATE_NONE, NULL))
        return 0;
    if (mg_cdc_event_decode(&b, &ev, &e)) {
        if ((ev.op == MG_CDC_OP_INSERT || ev.op == MG_CDC_OP_REPLACE) && !ev.has_full_document)
            abort();
        if (ev.op <= MG_CDC_OP_DELETE && !ev.has_id)
            abort();
    }
    mg_cdc_token_time(&b, &t, &i);
    return 0;
}
