/*
 * cdc/src/cdc_event.c - decode change events and resume tokens.
 */
#include "mg/cdc.h"

#include <string.h>

static const struct {
    mg_cdc_op_t op;
    const char *name;
} op_names[] = {
    {MG_CDC_OP_INSERT, "insert"},
    {MG_CDC_OP_UPDATE, "update"},
    {MG_CDC_OP_REPLACE, "replace"},
    {MG_CDC_OP_DELETE, "delete"},
    {MG_CDC_OP_DROP, "drop"},
    {MG_CDC_OP_RENAME, "rename"},
    {MG_CDC_OP_DROP_DATABASE, "dropDatabase"},
    {MG_CDC_OP_INVALIDATE, "invalidate"},
};

const char *
mg_cdc_op_name(mg_cdc_op_t op)
{
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (op_names[i].op == op)
            return op_names[i].name;
    return "other";
}

/* copy_ns reads {db, coll} of a namespace document into db/coll. */
static bool
copy_ns(const bson_iter_t *ns_it, char *db, char *coll)
{
    bson_iter_t it;

    db[0] = coll[0] = '\0';
    if (!BSON_ITER_HOLDS_DOCUMENT(ns_it) || !bson_iter_recurse(ns_it, &it))
        return false;
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_UTF8(&it))
            continue;
        if (strcmp(bson_iter_key(&it), "db") == 0)
            snprintf(db, MG_CDC_NAME_MAX, "%s", bson_iter_utf8(&it, NULL));
        else if (strcmp(bson_iter_key(&it), "coll") == 0)
            snprintf(coll, MG_CDC_NAME_MAX, "%s", bson_iter_utf8(&it, NULL));
    }
    return db[0] != '\0';
}

static bool
parse_error(mg_error_t *error, const char *what, const char *op)
{
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                        "malformed change event (%s): %s", op ? op : "?", what);
}

bool
mg_cdc_event_decode(const bson_t *raw, mg_cdc_event_t *ev, mg_error_t *error)
{
    return mg_cdc_event_decode_ex(raw, 0, ev, error);
}

bool
mg_cdc_event_decode_ex(const bson_t *raw, unsigned flags, mg_cdc_event_t *ev, mg_error_t *error)
{
    bson_iter_t it;
    const char *op = NULL;
    bool have_ns = false, have_ct = false;

    memset(ev, 0, sizeof(*ev));
    ev->size = raw->len;
    if (!bson_iter_init(&it, raw))
        return parse_error(error, "not a valid BSON document", NULL);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "operationType") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            op = bson_iter_utf8(&it, NULL);
        } else if (strcmp(k, "ns") == 0) {
            have_ns = copy_ns(&it, ev->db, ev->coll);
        } else if (strcmp(k, "to") == 0) {
            copy_ns(&it, ev->to_db, ev->to_coll);
        } else if (strcmp(k, "documentKey") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_t dk;
            if (bson_iter_recurse(&it, &dk) && bson_iter_find(&dk, "_id")) {
                ev->id = dk;
                ev->has_id = true;
            }
        } else if (strcmp(k, "fullDocument") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            const uint8_t *data;
            uint32_t len;
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&ev->full_document, data, len))
                return parse_error(error, "fullDocument is not a valid document", op);
            ev->has_full_document = true;
        } else if (strcmp(k, "clusterTime") == 0 && BSON_ITER_HOLDS_TIMESTAMP(&it)) {
            bson_iter_timestamp(&it, &ev->ct_t, &ev->ct_i);
            have_ct = true;
        } else if (strcmp(k, "wallTime") == 0 && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            ev->wall_ms = bson_iter_date_time(&it);
        } else if (strcmp(k, "txnNumber") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            ev->txn_number = bson_iter_as_int64(&it);
            ev->in_txn = true;
        } else if (strcmp(k, "lsid") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            /* a stable fingerprint of the session id document */
            const uint8_t *data;
            uint32_t len;
            uint64_t h = 1469598103934665603ULL;
            bson_iter_document(&it, &len, &data);
            for (uint32_t i = 0; i < len; i++) {
                h ^= data[i];
                h *= 1099511628211ULL;
            }
            memcpy(ev->lsid_hash, &h, 8);
        }
    }
    if (op == NULL)
        return parse_error(error, "no operationType", NULL);
    ev->op = MG_CDC_OP_OTHER;
    ev->op_name = op;
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (strcmp(op_names[i].name, op) == 0)
            ev->op = op_names[i].op;
    if (!have_ct)
        return parse_error(error, "no clusterTime", op);
    switch (ev->op) {
    case MG_CDC_OP_INSERT:
    case MG_CDC_OP_UPDATE:
    case MG_CDC_OP_REPLACE:
    case MG_CDC_OP_DELETE:
        if (!have_ns || ev->coll[0] == '\0')
            return parse_error(error, "no ns.db/ns.coll", op);
        if (!ev->has_id)
            return parse_error(error, "no documentKey._id", op);
        /* a stream that leaves the document out (an event too large with it) reads it by _id */
        if ((ev->op == MG_CDC_OP_INSERT || ev->op == MG_CDC_OP_REPLACE) && !ev->has_full_document &&
            !(flags & MG_CDC_DECODE_NO_DOCUMENT))
            return parse_error(error, "no fullDocument", op);
        break;
    case MG_CDC_OP_DROP:
    case MG_CDC_OP_RENAME:
        if (!have_ns || ev->coll[0] == '\0')
            return parse_error(error, "no ns.db/ns.coll", op);
        if (ev->op == MG_CDC_OP_RENAME && ev->to_coll[0] == '\0')
            return parse_error(error, "no to.coll", op);
        break;
    case MG_CDC_OP_DROP_DATABASE:
        if (!have_ns)
            return parse_error(error, "no ns.db", op);
        break;
    default:
        break;
    }
    return true;
}

bool
mg_cdc_token_time(const bson_t *token, uint32_t *t, uint32_t *i)
{
    bson_iter_t it;
    const char *data;
    uint32_t len;
    uint64_t v = 0;

    if (token == NULL || !bson_iter_init_find(&it, token, "_data") || !BSON_ITER_HOLDS_UTF8(&it))
        return false;
    data = bson_iter_utf8(&it, &len);
    /* KeyString: 0x82 = a Timestamp follows as 8 big-endian bytes (t, i) */
    if (len < 18 || data[0] != '8' || data[1] != '2')
        return false;
    for (int k = 2; k < 18; k++) {
        int h = mg_hex_digit(data[k]);
        if (h < 0)
            return false;
        v = (v << 4) | (uint64_t)h;
    }
    *t = (uint32_t)(v >> 32);
    *i = (uint32_t)(v & 0xffffffffu);
    return true;
}

bool
mg_cdc_same_txn(const mg_cdc_event_t *a, const mg_cdc_event_t *b)
{
    return a->in_txn && b->in_txn && a->txn_number == b->txn_number &&
           memcmp(a->lsid_hash, b->lsid_hash, 8) == 0;
}
