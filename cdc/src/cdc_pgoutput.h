/*
 * cdc/src/cdc_pgoutput.h - PostgreSQL's logical replication stream, read
 * by the reverse sync (docs/cdc.md, "The way back"): the CopyData frames
 * of the streaming replication protocol (XLogData, primary keepalive, the
 * standby status update we send) and the pgoutput messages inside
 * XLogData (protocol version 1: Begin, Commit, Origin, Relation, Type,
 * Insert, Update, Delete, Truncate, Message).
 *
 * Everything here is pure: bytes in, a decoded view out. Every length and
 * count is checked against the bytes there are and against the caps below;
 * a malformed message fails with MG_ERROR_CODE_PARSE naming the message
 * and the field, never reads past its end. Decoded views borrow from the
 * input bytes (strings are NUL-terminated inside the message, values are
 * pointer + length) and live as long as they do.
 */
#ifndef MG_CDC_PGOUTPUT_H
#define MG_CDC_PGOUTPUT_H

#include "mg/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PostgreSQL's MaxTupleAttributeNumber: no relation or tuple has more columns. */
#define MG_PGO_MAX_COLS 1664

/* Truncate messages list at most this many relations (one statement's tables). */
#define MG_PGO_MAX_TRUNCATE 65536

/* An LSN that is not one (PostgreSQL's InvalidXLogRecPtr). */
#define MG_PGO_LSN_INVALID 0

/* ---- the replication protocol's CopyData frames ---- */

typedef enum {
    MG_PGO_FRAME_XLOGDATA = 'w',
    MG_PGO_FRAME_KEEPALIVE = 'k',
} mg_pgo_frame_kind_t;

/* One CopyData frame from the server; data borrows from the frame. */
typedef struct {
    mg_pgo_frame_kind_t kind;
    uint64_t wal_start;   /* XLogData: where the data starts */
    uint64_t wal_end;     /* XLogData and keepalive: the server's current end of WAL */
    int64_t send_time;    /* microseconds since 2000-01-01 */
    bool reply_requested; /* keepalive: answer at once */
    const uint8_t *data;  /* XLogData: the pgoutput message */
    size_t len;
} mg_pgo_frame_t;

/* mg_pgo_frame_parse reads one CopyData frame (len bytes) into *frame. */
bool mg_pgo_frame_parse(const uint8_t *bytes, size_t len, mg_pgo_frame_t *frame, mg_error_t *error);

/* Size of a standby status update. */
#define MG_PGO_STATUS_SIZE 34

/*
 * mg_pgo_status_build writes a standby status update ('r': written,
 * flushed and applied positions, the client's clock in microseconds since
 * 2000-01-01, and whether the server should reply at once) into out.
 */
void mg_pgo_status_build(uint8_t out[MG_PGO_STATUS_SIZE], uint64_t written, uint64_t flushed,
                         uint64_t applied, int64_t now_us, bool reply);

/* mg_pgo_now_us returns the wall clock in microseconds since 2000-01-01 (PostgreSQL's epoch). */
int64_t mg_pgo_now_us(void);

/* ---- LSNs as text ("16/B374D848") ---- */

/* mg_pgo_lsn_parse reads an LSN's text; false when it is not one. */
bool mg_pgo_lsn_parse(const char *text, uint64_t *lsn);

/* mg_pgo_lsn_format writes lsn as "X/X" into buf (at least 24 bytes) and returns buf. */
const char *mg_pgo_lsn_format(uint64_t lsn, char *buf, size_t bufsz);

/* ---- pgoutput messages ---- */

typedef enum {
    MG_PGO_BEGIN = 'B',
    MG_PGO_COMMIT = 'C',
    MG_PGO_ORIGIN = 'O',
    MG_PGO_RELATION = 'R',
    MG_PGO_TYPE = 'Y',
    MG_PGO_INSERT = 'I',
    MG_PGO_UPDATE = 'U',
    MG_PGO_DELETE = 'D',
    MG_PGO_TRUNCATE = 'T',
    MG_PGO_MESSAGE = 'M',
} mg_pgo_kind_t;

/* One column value of a tuple. */
typedef struct {
    char kind;        /* 'n' null, 'u' unchanged TOASTed value (not sent), 't' text, 'b' binary */
    const char *data; /* 't'/'b': the value's bytes (not NUL-terminated) */
    uint32_t len;
} mg_pgo_value_t;

typedef struct {
    uint16_t ncols;
    mg_pgo_value_t *cols; /* the decoder's array (MG_PGO_MAX_COLS) */
} mg_pgo_tuple_t;

/* One column of a Relation message. */
typedef struct {
    bool key;          /* part of the replica identity */
    const char *name;  /* NUL-terminated */
    uint32_t type_oid; /* 3802 jsonb, 25 text, 20 int8, ... */
    int32_t typmod;
} mg_pgo_column_t;

/* A decoded message; which fields hold depends on kind. */
typedef struct {
    mg_pgo_kind_t kind;
    uint32_t xid;        /* Begin */
    uint64_t lsn;        /* Begin: the commit's LSN; Commit: the commit's LSN; Origin, Message */
    uint64_t end_lsn;    /* Commit: the end of the commit record (the position to confirm) */
    int64_t commit_time; /* Begin, Commit: microseconds since 2000-01-01 */
    uint8_t flags;       /* Commit, Message, Truncate (options: 1 cascade, 2 restart identity) */
    uint32_t relid;      /* Relation, Insert, Update, Delete */
    const char *nspname; /* Relation, Type: the schema ("" for pg_catalog) */
    const char *relname; /* Relation: the table; Type: the type's name; Origin: its name */
    uint32_t type_oid;   /* Type */
    char replident;      /* Relation: 'd' default, 'n' nothing, 'f' full, 'i' index */
    uint16_t ncols;      /* Relation */
    mg_pgo_column_t *columns;
    char old_kind; /* Update, Delete: 'K' (the key columns), 'O' (the whole old row), 0 none */
    mg_pgo_tuple_t old_tuple;
    mg_pgo_tuple_t new_tuple; /* Insert, Update */
    uint32_t nrelids;         /* Truncate */
    const uint8_t *relids;    /* Truncate: nrelids big-endian uint32 (mg_pgo_truncate_relid) */
    const char *prefix;       /* Message */
    const uint8_t *content;   /* Message */
    uint32_t content_len;
} mg_pgo_msg_t;

typedef struct mg_pgo_decoder mg_pgo_decoder_t;

/*
 * mg_pgo_decoder_new makes a decoder: the arrays a decoded message points
 * into (columns, old and new tuple), each of MG_PGO_MAX_COLS entries.
 * Destroy with mg_pgo_decoder_destroy (NULL ok). NULL when out of memory.
 */
mg_pgo_decoder_t *mg_pgo_decoder_new(void);
void mg_pgo_decoder_destroy(mg_pgo_decoder_t *decoder);

/*
 * mg_pgo_decode reads one pgoutput message (len bytes, borrowed) into
 * *msg, whose arrays are the decoder's: valid until the next call. Fails
 * with MG_ERROR_CODE_PARSE naming the message and field on a malformed or
 * unknown message (trailing bytes included), MG_ERROR_CODE_LIMIT beyond a
 * cap.
 */
bool mg_pgo_decode(mg_pgo_decoder_t *decoder, const uint8_t *bytes, size_t len, mg_pgo_msg_t *msg,
                   mg_error_t *error);

/* mg_pgo_truncate_relid returns the k-th relation of a Truncate message (k < nrelids). */
uint32_t mg_pgo_truncate_relid(const mg_pgo_msg_t *msg, uint32_t k);

/* mg_pgo_kind_name returns the message's name ("insert", ...) or "unknown". */
const char *mg_pgo_kind_name(int kind);

#endif /* MG_CDC_PGOUTPUT_H */
