/*
 * tests/fuzz/cdc/fuzz_cdc_pgoutput.c - random bytes as what the reverse
 * sync reads from PostgreSQL: a replication CopyData frame and, inside an
 * XLogData frame (or on its own), a pgoutput message. Never crash or read
 * past the input; every decoded pointer lies inside it; a decoded LSN's
 * text reads back to the same LSN.
 */
#include "cdc_pgoutput.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mg_pgo_decoder_t *dec;

static void
inside(const void *p, size_t len, const uint8_t *data, size_t size)
{
    const uint8_t *q = p;

    if (len > 0 && (q < data || q + len > data + size))
        abort();
}

static void
check_tuple(const mg_pgo_tuple_t *t, const uint8_t *data, size_t size)
{
    if (t->ncols > MG_PGO_MAX_COLS)
        abort();
    for (uint16_t k = 0; k < t->ncols; k++) {
        const mg_pgo_value_t *v = &t->cols[k];
        if (v->kind == 't' || v->kind == 'b')
            inside(v->data, v->len, data, size);
        else if (v->kind != 'n' && v->kind != 'u')
            abort();
    }
}

static void
check_message(const uint8_t *data, size_t size)
{
    mg_pgo_msg_t m;
    mg_error_t e;
    char buf[32];
    uint64_t back;

    if (!mg_pgo_decode(dec, data, size, &m, &e)) {
        if (strncmp(e.message, "could not decode", 16) != 0)
            abort();
        return;
    }
    if (m.nspname != NULL)
        inside(m.nspname, strlen(m.nspname) + 1, data, size);
    if (m.relname != NULL)
        inside(m.relname, strlen(m.relname) + 1, data, size);
    for (uint16_t k = 0; k < m.ncols; k++)
        inside(m.columns[k].name, strlen(m.columns[k].name) + 1, data, size);
    check_tuple(&m.old_tuple, data, size);
    check_tuple(&m.new_tuple, data, size);
    if (m.nrelids > 0)
        inside(m.relids, (size_t)m.nrelids * 4, data, size);
    if (m.content_len > 0)
        inside(m.content, m.content_len, data, size);
    if (!mg_pgo_lsn_parse(mg_pgo_lsn_format(m.lsn, buf, sizeof(buf)), &back) || back != m.lsn)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_pgo_frame_t f;
    mg_error_t e;
    uint8_t *copy;

    if (dec == NULL && (dec = mg_pgo_decoder_new()) == NULL)
        abort();
    /* an exact-size copy: any read past the input is caught by ASan */
    copy = malloc(size + 1);
    memcpy(copy, data, size);
    if (mg_pgo_frame_parse(copy, size, &f, &e) && f.kind == MG_PGO_FRAME_XLOGDATA) {
        inside(f.data, f.len, copy, size);
        check_message(f.data, f.len);
    }
    check_message(copy, size);
    free(copy);
    return 0;
}
