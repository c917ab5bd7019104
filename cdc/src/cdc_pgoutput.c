/*
 * cdc/src/cdc_pgoutput.c - the decoder of PostgreSQL's logical replication
 * stream for the reverse sync: CopyData frames (XLogData, keepalive), the
 * standby status update, and pgoutput's messages (protocol version 1).
 * Formats: PostgreSQL 15 documentation, "Streaming Replication Protocol"
 * and "Logical Replication Message Formats". Every read is bounds-checked.
 */
#include "cdc_pgoutput.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* Seconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch. */
#define PG_EPOCH_OFFSET_S 946684800LL

struct mg_pgo_decoder {
    mg_pgo_column_t columns[MG_PGO_MAX_COLS];
    mg_pgo_value_t old_cols[MG_PGO_MAX_COLS];
    mg_pgo_value_t new_cols[MG_PGO_MAX_COLS];
};

/* A cursor over one message; what names the message in errors. */
typedef struct {
    const uint8_t *p, *end;
    const char *what;
    mg_error_t *error;
    bool failed;
} rd_t;

static bool
short_read(rd_t *r, const char *field)
{
    if (!r->failed)
        mg_error_set(r->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "could not decode the %s message: it ends inside %s", r->what, field);
    r->failed = true;
    return false;
}

static bool
bad(rd_t *r, const char *fmt, const char *field, long long value)
{
    char why[160];

    snprintf(why, sizeof(why), fmt, value);
    if (!r->failed)
        mg_error_set(r->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "could not decode the %s message: %s %s", r->what, field, why);
    r->failed = true;
    return false;
}

static uint64_t
be_u64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int k = 0; k < 8; k++)
        v = (v << 8) | p[k];
    return v;
}

static uint32_t
be_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static bool
rd_u8(rd_t *r, const char *field, uint8_t *v)
{
    if (r->failed || r->end - r->p < 1)
        return short_read(r, field);
    *v = *r->p++;
    return true;
}

static bool
rd_u16(rd_t *r, const char *field, uint16_t *v)
{
    if (r->failed || r->end - r->p < 2)
        return short_read(r, field);
    *v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return true;
}

static bool
rd_u32(rd_t *r, const char *field, uint32_t *v)
{
    if (r->failed || r->end - r->p < 4)
        return short_read(r, field);
    *v = be_u32(r->p);
    r->p += 4;
    return true;
}

static bool
rd_u64(rd_t *r, const char *field, uint64_t *v)
{
    if (r->failed || r->end - r->p < 8)
        return short_read(r, field);
    *v = be_u64(r->p);
    r->p += 8;
    return true;
}

static bool
rd_i64(rd_t *r, const char *field, int64_t *v)
{
    uint64_t u;

    if (!rd_u64(r, field, &u))
        return false;
    memcpy(v, &u, sizeof(*v));
    return true;
}

/* rd_str reads a NUL-terminated string that must end inside the message. */
static bool
rd_str(rd_t *r, const char *field, const char **v)
{
    const uint8_t *nul;

    if (r->failed)
        return false;
    nul = memchr(r->p, '\0', (size_t)(r->end - r->p));
    if (nul == NULL)
        return short_read(r, field);
    *v = (const char *)r->p;
    r->p = nul + 1;
    return true;
}

static bool
rd_done(rd_t *r)
{
    if (r->failed)
        return false;
    if (r->p != r->end)
        return bad(r, "is followed by %lld unexpected bytes", "the message",
                   (long long)(r->end - r->p));
    return true;
}

/* rd_tuple reads TupleData into cols (MG_PGO_MAX_COLS entries). */
static bool
rd_tuple(rd_t *r, mg_pgo_value_t *cols, mg_pgo_tuple_t *t)
{
    uint16_t n;

    if (!rd_u16(r, "the tuple's column count", &n))
        return false;
    if (n > MG_PGO_MAX_COLS)
        return bad(r, "is %lld, above PostgreSQL's 1664", "the tuple's column count", n);
    t->ncols = n;
    t->cols = cols;
    for (uint16_t k = 0; k < n; k++) {
        uint8_t kind;
        uint32_t len;

        if (!rd_u8(r, "a column's kind", &kind))
            return false;
        cols[k] = (mg_pgo_value_t){.kind = (char)kind};
        if (kind == 'n' || kind == 'u')
            continue;
        if (kind != 't' && kind != 'b')
            return bad(r, "is 0x%02llx (expected n, u, t or b)", "a column's kind", kind);
        if (!rd_u32(r, "a column's length", &len))
            return false;
        if (len > (uint64_t)(r->end - r->p))
            return short_read(r, "a column's value");
        cols[k].data = (const char *)r->p;
        cols[k].len = len;
        r->p += len;
    }
    return true;
}

static bool
decode_relation(mg_pgo_decoder_t *d, rd_t *r, mg_pgo_msg_t *m)
{
    uint8_t ident;

    if (!rd_u32(r, "the relation id", &m->relid) || !rd_str(r, "the schema name", &m->nspname) ||
        !rd_str(r, "the table name", &m->relname) || !rd_u8(r, "the replica identity", &ident) ||
        !rd_u16(r, "the column count", &m->ncols))
        return false;
    if (ident != 'd' && ident != 'n' && ident != 'f' && ident != 'i')
        return bad(r, "is 0x%02llx (expected d, n, f or i)", "the replica identity", ident);
    m->replident = (char)ident;
    if (m->ncols > MG_PGO_MAX_COLS)
        return bad(r, "is %lld, above PostgreSQL's 1664", "the column count", m->ncols);
    m->columns = d->columns;
    for (uint16_t k = 0; k < m->ncols; k++) {
        mg_pgo_column_t *c = &d->columns[k];
        uint8_t flags;
        uint32_t typmod;

        if (!rd_u8(r, "a column's flags", &flags) || !rd_str(r, "a column's name", &c->name) ||
            !rd_u32(r, "a column's type", &c->type_oid) ||
            !rd_u32(r, "a column's type modifier", &typmod))
            return false;
        c->key = (flags & 1) != 0;
        memcpy(&c->typmod, &typmod, sizeof(c->typmod));
    }
    return true;
}

/* decode_change reads Insert, Update and Delete. */
static bool
decode_change(mg_pgo_decoder_t *d, rd_t *r, mg_pgo_msg_t *m)
{
    uint8_t tag;

    if (!rd_u32(r, "the relation id", &m->relid) || !rd_u8(r, "the tuple's tag", &tag))
        return false;
    if (m->kind != MG_PGO_INSERT && (tag == 'K' || tag == 'O')) {
        m->old_kind = (char)tag;
        if (!rd_tuple(r, d->old_cols, &m->old_tuple))
            return false;
        if (m->kind == MG_PGO_DELETE)
            return true;
        if (!rd_u8(r, "the new tuple's tag", &tag))
            return false;
    }
    if (m->kind == MG_PGO_DELETE)
        return bad(r, "is 0x%02llx (expected K or O)", "the old tuple's tag", tag);
    if (tag != 'N')
        return bad(r, "is 0x%02llx (expected N)", "the new tuple's tag", tag);
    return rd_tuple(r, d->new_cols, &m->new_tuple);
}

static bool
decode_truncate(rd_t *r, mg_pgo_msg_t *m)
{
    if (!rd_u32(r, "the relation count", &m->nrelids) || !rd_u8(r, "the options", &m->flags))
        return false;
    if (m->nrelids > MG_PGO_MAX_TRUNCATE)
        return bad(r, "is %lld, above the cap of 65536", "the relation count", m->nrelids);
    if ((uint64_t)(r->end - r->p) < (uint64_t)m->nrelids * 4)
        return short_read(r, "the relation ids");
    m->relids = r->p;
    r->p += (size_t)m->nrelids * 4;
    return true;
}

static bool
decode_body(mg_pgo_decoder_t *d, rd_t *r, mg_pgo_msg_t *m)
{
    switch (m->kind) {
    case MG_PGO_BEGIN:
        return rd_u64(r, "the final LSN", &m->lsn) &&
               rd_i64(r, "the commit time", &m->commit_time) && rd_u32(r, "the xid", &m->xid);
    case MG_PGO_COMMIT:
        return rd_u8(r, "the flags", &m->flags) && rd_u64(r, "the commit LSN", &m->lsn) &&
               rd_u64(r, "the end LSN", &m->end_lsn) &&
               rd_i64(r, "the commit time", &m->commit_time);
    case MG_PGO_ORIGIN:
        return rd_u64(r, "the origin's LSN", &m->lsn) &&
               rd_str(r, "the origin's name", &m->relname);
    case MG_PGO_RELATION:
        return decode_relation(d, r, m);
    case MG_PGO_TYPE:
        return rd_u32(r, "the type id", &m->type_oid) &&
               rd_str(r, "the schema name", &m->nspname) && rd_str(r, "the type name", &m->relname);
    case MG_PGO_INSERT:
    case MG_PGO_UPDATE:
    case MG_PGO_DELETE:
        return decode_change(d, r, m);
    case MG_PGO_TRUNCATE:
        return decode_truncate(r, m);
    case MG_PGO_MESSAGE:
        if (!rd_u8(r, "the flags", &m->flags) || !rd_u64(r, "the LSN", &m->lsn) ||
            !rd_str(r, "the prefix", &m->prefix) ||
            !rd_u32(r, "the content's length", &m->content_len))
            return false;
        if (m->content_len > (uint64_t)(r->end - r->p))
            return short_read(r, "the content");
        m->content = r->p;
        r->p += m->content_len;
        return true;
    }
    return false;
}

bool
mg_pgo_decode(mg_pgo_decoder_t *d, const uint8_t *bytes, size_t len, mg_pgo_msg_t *msg,
              mg_error_t *error)
{
    rd_t r = {.p = bytes, .end = bytes + len, .what = "pgoutput", .error = error};
    mg_pgo_msg_t m;

    memset(&m, 0, sizeof(m));
    if (len == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not decode a pgoutput message: it is empty");
    m.kind = (mg_pgo_kind_t)bytes[0];
    if (strcmp(mg_pgo_kind_name(bytes[0]), "unknown") == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not decode a pgoutput message: unknown type 0x%02x (protocol "
                            "version 1 has B, C, O, R, Y, I, U, D, T, M)",
                            bytes[0]);
    r.what = mg_pgo_kind_name(bytes[0]);
    r.p++;
    if (!decode_body(d, &r, &m) || !rd_done(&r))
        return false;
    *msg = m;
    return true;
}

uint32_t
mg_pgo_truncate_relid(const mg_pgo_msg_t *msg, uint32_t k)
{
    return k < msg->nrelids ? be_u32(msg->relids + (size_t)k * 4) : 0;
}

const char *
mg_pgo_kind_name(int kind)
{
    switch (kind) {
    case MG_PGO_BEGIN:
        return "begin";
    case MG_PGO_COMMIT:
        return "commit";
    case MG_PGO_ORIGIN:
        return "origin";
    case MG_PGO_RELATION:
        return "relation";
    case MG_PGO_TYPE:
        return "type";
    case MG_PGO_INSERT:
        return "insert";
    case MG_PGO_UPDATE:
        return "update";
    case MG_PGO_DELETE:
        return "delete";
    case MG_PGO_TRUNCATE:
        return "truncate";
    case MG_PGO_MESSAGE:
        return "message";
    default:
        return "unknown";
    }
}

mg_pgo_decoder_t *
mg_pgo_decoder_new(void)
{
    return calloc(1, sizeof(mg_pgo_decoder_t));
}

void
mg_pgo_decoder_destroy(mg_pgo_decoder_t *decoder)
{
    free(decoder);
}

/* ---- frames ---- */

bool
mg_pgo_frame_parse(const uint8_t *bytes, size_t len, mg_pgo_frame_t *frame, mg_error_t *error)
{
    rd_t r = {.p = bytes, .end = bytes + len, .what = "replication", .error = error};
    mg_pgo_frame_t f;
    uint8_t kind = 0, reply = 0;

    memset(&f, 0, sizeof(f));
    if (!rd_u8(&r, "the frame's type", &kind))
        return false;
    f.kind = (mg_pgo_frame_kind_t)kind;
    if (kind == MG_PGO_FRAME_XLOGDATA) {
        r.what = "XLogData";
        if (!rd_u64(&r, "the start position", &f.wal_start) ||
            !rd_u64(&r, "the end position", &f.wal_end) ||
            !rd_i64(&r, "the send time", &f.send_time))
            return false;
        f.data = r.p;
        f.len = (size_t)(r.end - r.p);
    } else if (kind == MG_PGO_FRAME_KEEPALIVE) {
        r.what = "keepalive";
        if (!rd_u64(&r, "the end position", &f.wal_end) ||
            !rd_i64(&r, "the send time", &f.send_time) || !rd_u8(&r, "the reply flag", &reply) ||
            !rd_done(&r))
            return false;
        f.reply_requested = reply != 0;
    } else {
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not decode a replication frame: unknown type 0x%02x "
                            "(expected w or k)",
                            kind);
    }
    *frame = f;
    return true;
}

static void
put_u64(uint8_t *p, uint64_t v)
{
    for (int k = 7; k >= 0; k--) {
        p[k] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

void
mg_pgo_status_build(uint8_t out[MG_PGO_STATUS_SIZE], uint64_t written, uint64_t flushed,
                    uint64_t applied, int64_t now_us, bool reply)
{
    uint64_t t;

    memcpy(&t, &now_us, sizeof(t));
    out[0] = 'r';
    put_u64(out + 1, written);
    put_u64(out + 9, flushed);
    put_u64(out + 17, applied);
    put_u64(out + 25, t);
    out[33] = reply ? 1 : 0;
}

int64_t
mg_pgo_now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return ((int64_t)tv.tv_sec - PG_EPOCH_OFFSET_S) * 1000000 + tv.tv_usec;
}

/* ---- LSN text ---- */

bool
mg_pgo_lsn_parse(const char *text, uint64_t *lsn)
{
    uint64_t hi = 0, lo = 0;
    const char *p = text;
    int n;

    for (n = 0; n < 9 && mg_hex_digit(*p) >= 0; n++, p++)
        hi = (hi << 4) | (uint64_t)mg_hex_digit(*p);
    if (n == 0 || n > 8 || *p++ != '/')
        return false;
    for (n = 0; n < 9 && mg_hex_digit(*p) >= 0; n++, p++)
        lo = (lo << 4) | (uint64_t)mg_hex_digit(*p);
    if (n == 0 || n > 8 || *p != '\0')
        return false;
    *lsn = (hi << 32) | lo;
    return true;
}

const char *
mg_pgo_lsn_format(uint64_t lsn, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
    return buf;
}
