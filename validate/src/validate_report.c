/*
 * validate/src/validate_report.c - the validation report as JSON (yajl) and
 * as one self-contained HTML page (inline CSS and SVG, no script).
 */
#include "validate_internal.h"

#include <string.h>
#include <yajl/yajl_gen.h>

/* ---- JSON ---- */

void
mg_validate__fields_json(yajl_gen g, const mg_validate_mismatch_t *m)
{
    yajl_gen_array_open(g);
    for (size_t i = 0; i < m->ndiffs; i++) {
        const mg_validate_field_diff_t *d = &m->diffs[i];
        yajl_gen_map_open(g);
        mg_json_kstr(g, "path", d->path);
        mg_json_kstr(g, "source", d->source_value);
        mg_json_kstr(g, "source_type", d->source_type);
        mg_json_kstr(g, "target", d->target_value);
        mg_json_kstr(g, "target_type", d->target_type);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
}

static void
gen_mismatch(yajl_gen g, const mg_validate_mismatch_t *m)
{
    yajl_gen_map_open(g);
    mg_json_kstr(g, "kind", mg_validate_mismatch_kind_name(m->kind));
    mg_json_kstr(g, "_id", m->id_json);
    mg_json_kstr(g, "doc_id", m->doc_id);
    mg_json_str(g, "persisted");
    yajl_gen_bool(g, m->persisted);
    mg_json_kstr(g, "first_seen_at", m->first_seen_at[0] ? m->first_seen_at : NULL);
    mg_json_str(g, "fields");
    mg_validate__fields_json(g, m);
    mg_json_str(g, "more_fields");
    yajl_gen_bool(g, m->more_diffs);
    yajl_gen_map_close(g);
}

static void
gen_coll(yajl_gen g, const mg_validate_report_coll_t *c)
{
    const mg_validate_result_t *r = c->result;

    yajl_gen_map_open(g);
    mg_json_kstr(g, "db", c->db);
    mg_json_kstr(g, "coll", c->coll);
    mg_json_kstr(g, "table", c->table);
    mg_json_kstr(g, "schema", c->schema);
    mg_json_kstr(g, "status", c->status);
    if (c->error != NULL)
        mg_json_kstr(g, "error", c->error);
    if (r != NULL) {
        mg_json_kint(g, "source_docs", r->source_docs);
        mg_json_kint(g, "target_docs", r->target_docs);
        mg_json_kint(g, "segments", r->segments);
        mg_json_kint(g, "segments_mismatched", r->segments_mismatched);
        mg_json_kint(g, "segments_drilled", r->segments_drilled);
        mg_json_kint(g, "missing", r->missing);
        mg_json_kint(g, "extra", r->extra);
        mg_json_kint(g, "different", r->different);
        mg_json_str(g, "truncated");
        yajl_gen_bool(g, r->truncated);
        mg_json_kdouble(g, "source_s", r->source_s);
        mg_json_kdouble(g, "target_s", r->target_s);
        mg_json_kdouble(g, "elapsed_s", r->elapsed_s);
        mg_json_kdouble(g, "docs_per_s",
                        r->elapsed_s > 0
                            ? (double)(r->source_docs + r->target_docs) / 2.0 / r->elapsed_s
                            : 0.0);
        mg_json_str(g, "mismatches");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < r->nmismatches; i++)
            gen_mismatch(g, &r->mismatches[i]);
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
}

static void
gen_strs(yajl_gen g, const char *k, char *const *v, size_t n)
{
    mg_json_str(g, k);
    yajl_gen_array_open(g);
    for (size_t i = 0; i < n; i++)
        mg_json_str(g, v[i]);
    yajl_gen_array_close(g);
}

static void
gen_shadow(yajl_gen g, const mg_validate_shadow_result_t *r)
{
    yajl_gen_map_open(g);
    mg_json_kstr(g, "name", r->name);
    mg_json_kstr(g, "ns", r->ns);
    mg_json_kstr(g, "status", mg_validate_shadow_status_name(r->status));
    mg_json_kstr(g, "reason", r->reason);
    mg_json_kstr(g, "query", r->query);
    mg_json_kstr(g, "sql", r->sql);
    mg_json_kstr(g, "jsonpath", r->jsonpath);
    mg_json_str(g, "ordered");
    yajl_gen_bool(g, r->ordered);
    mg_json_str(g, "count_only");
    yajl_gen_bool(g, r->count_only);
    mg_json_str(g, "tie_sensitive");
    yajl_gen_bool(g, r->tie_sensitive);
    mg_json_kint(g, "mongo_count", r->mongo_count);
    mg_json_kint(g, "pg_count", r->pg_count);
    gen_strs(g, "diff_ids", r->diff_ids, r->ndiff_ids);
    gen_strs(g, "pg_ids", r->pg_ids, r->npg_ids);
    mg_json_kdouble(g, "mongo_p50_ms", r->mongo_p50_ms);
    mg_json_kdouble(g, "mongo_p95_ms", r->mongo_p95_ms);
    mg_json_kdouble(g, "pg_p50_ms", r->pg_p50_ms);
    mg_json_kdouble(g, "pg_p95_ms", r->pg_p95_ms);
    yajl_gen_map_close(g);
}

bool
mg_validate_report_json(const mg_validate_report_t *rep, mg_buf_t *out, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *text;
    size_t len;
    int64_t docs = 0, missing = 0, extra = 0, different = 0;
    bool ok;

    if (g == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    yajl_gen_config(g, yajl_gen_validate_utf8, 0);
    yajl_gen_map_open(g);
    mg_json_kint(g, "run_id", rep->run_id);
    mg_json_kstr(g, "mode", rep->mode);
    mg_json_kstr(g, "status", rep->status);
    mg_json_kstr(g, "started_at", rep->started_at);
    mg_json_kstr(g, "finished_at", rep->finished_at);
    mg_json_kdouble(g, "elapsed_s", rep->elapsed_s);
    for (size_t i = 0; i < rep->ncolls; i++) {
        const mg_validate_result_t *r = rep->colls[i].result;
        if (r == NULL)
            continue;
        docs += r->source_docs;
        missing += r->missing;
        extra += r->extra;
        different += r->different;
    }
    mg_json_kint(g, "documents", docs);
    mg_json_kint(g, "missing", missing);
    mg_json_kint(g, "extra", extra);
    mg_json_kint(g, "different", different);
    mg_json_kint(g, "persistent", rep->persistent);
    mg_json_str(g, "collections");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < rep->ncolls; i++)
        gen_coll(g, &rep->colls[i]);
    yajl_gen_array_close(g);
    if (rep->has_shadow) {
        size_t counts[4] = {0};
        for (size_t i = 0; i < rep->nshadow; i++)
            counts[rep->shadow[i].status]++;
        mg_json_str(g, "shadow_summary");
        yajl_gen_map_open(g);
        mg_json_kint(g, "queries", (int64_t)rep->nshadow);
        for (int k = 0; k < 4; k++)
            mg_json_kint(g, mg_validate_shadow_status_name((mg_validate_shadow_status_t)k),
                         (int64_t)counts[k]);
        yajl_gen_map_close(g);
        mg_json_str(g, "shadow");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < rep->nshadow; i++)
            gen_shadow(g, &rep->shadow[i]);
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &text, &len);
    ok = mg_buf_append(out, text, len, error);
    yajl_gen_free(g);
    return ok;
}

/* ---- HTML ---- */

typedef struct {
    mg_buf_t *out;
    mg_error_t *error;
    bool ok;
} html_t;

static void
raw(html_t *h, const char *s)
{
    if (h->ok)
        h->ok = mg_buf_append_str(h->out, s, h->error);
}

static void MG_PRINTF(2, 3) fmt(html_t *h, const char *f, ...)
{
    char tmp[1024];
    va_list ap;

    va_start(ap, f);
    vsnprintf(tmp, sizeof(tmp), f, ap);
    va_end(ap);
    raw(h, tmp);
}

/* esc appends s with &, <, >, " and ' escaped. */
static void
esc(html_t *h, const char *s)
{
    if (s == NULL) {
        raw(h, "<i>absent</i>");
        return;
    }
    for (const char *p = s; *p && h->ok; p++) {
        switch (*p) {
        case '&':
            raw(h, "&amp;");
            break;
        case '<':
            raw(h, "&lt;");
            break;
        case '>':
            raw(h, "&gt;");
            break;
        case '"':
            raw(h, "&quot;");
            break;
        case '\'':
            raw(h, "&#39;");
            break;
        default:
            h->ok = mg_buf_append(h->out, p, 1, h->error);
        }
    }
}

static const char *const css =
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px}"
    "table{border-collapse:collapse;margin:8px 0}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px}"
    "th{background:#f2f2f2}td.n{text-align:right}"
    ".clean{color:#17672e;font-weight:600}.mismatch{color:#a61b1b;font-weight:600}"
    ".failed{color:#8a5300;font-weight:600}"
    "code{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}"
    "details{margin:6px 0}summary{cursor:pointer}";

/* chart draws source and target scan times per collection as horizontal bars. */
static void
chart(html_t *h, const mg_validate_report_t *rep)
{
    double max = 0;
    size_t n = 0;

    for (size_t i = 0; i < rep->ncolls; i++) {
        const mg_validate_result_t *r = rep->colls[i].result;
        if (r == NULL)
            continue;
        n++;
        if (r->source_s > max)
            max = r->source_s;
        if (r->target_s > max)
            max = r->target_s;
    }
    if (n == 0)
        return;
    if (max <= 0)
        max = 1;
    int height = (int)(n * 40 + 40);
    fmt(h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"%d\" "
        "role=\"img\" aria-label=\"scan time per collection\">",
        height);
    size_t row = 0;
    for (size_t i = 0; i < rep->ncolls; i++) {
        const mg_validate_report_coll_t *c = &rep->colls[i];
        const mg_validate_result_t *r = c->result;
        if (r == NULL)
            continue;
        int y = (int)(row * 40 + 10);
        int ws = (int)(r->source_s / max * 480.0), wt = (int)(r->target_s / max * 480.0);
        raw(h, "<text x=\"0\" y=\"");
        fmt(h, "%d\" font-size=\"12\">", y + 14);
        esc(h, c->coll);
        raw(h, "</text>");
        fmt(h,
            "<rect x=\"180\" y=\"%d\" width=\"%d\" height=\"14\" fill=\"#4a78b5\"/>"
            "<text x=\"%d\" y=\"%d\" font-size=\"11\">source %.3f s</text>",
            y, ws > 0 ? ws : 1, 186 + ws, y + 11, r->source_s);
        fmt(h,
            "<rect x=\"180\" y=\"%d\" width=\"%d\" height=\"14\" fill=\"#d08a2e\"/>"
            "<text x=\"%d\" y=\"%d\" font-size=\"11\">target %.3f s</text>",
            y + 16, wt > 0 ? wt : 1, 186 + wt, y + 27, r->target_s);
        row++;
    }
    raw(h, "</svg>");
}

/* shadow_chart draws p50 latency per query and side as paired bars. */
static void
shadow_chart(html_t *h, const mg_validate_report_t *rep)
{
    double max = 0;
    size_t n = 0;

    for (size_t i = 0; i < rep->nshadow; i++) {
        const mg_validate_shadow_result_t *r = &rep->shadow[i];
        if (r->status != MG_VALIDATE_SHADOW_MATCH && r->status != MG_VALIDATE_SHADOW_MISMATCH)
            continue;
        n++;
        if (r->mongo_p50_ms > max)
            max = r->mongo_p50_ms;
        if (r->pg_p50_ms > max)
            max = r->pg_p50_ms;
    }
    if (n == 0) {
        raw(h, "<p>No query ran on both sides.</p>\n");
        return;
    }
    if (max <= 0)
        max = 1;
    fmt(h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"%d\" role=\"img\" "
        "aria-label=\"latency p50 per query\">",
        (int)(n * 30 + 30));
    fmt(h, "<text x=\"180\" y=\"12\" font-size=\"11\" fill=\"#4a78b5\">MongoDB p50</text>"
           "<text x=\"280\" y=\"12\" font-size=\"11\" fill=\"#d08a2e\">PostgreSQL p50</text>");
    size_t row = 0;
    for (size_t i = 0; i < rep->nshadow; i++) {
        const mg_validate_shadow_result_t *r = &rep->shadow[i];
        if (r->status != MG_VALIDATE_SHADOW_MATCH && r->status != MG_VALIDATE_SHADOW_MISMATCH)
            continue;
        int y = (int)(row * 30 + 20);
        int wm = (int)(r->mongo_p50_ms / max * 460.0), wp = (int)(r->pg_p50_ms / max * 460.0);
        raw(h, "<text x=\"0\" y=\"");
        fmt(h, "%d\" font-size=\"11\">", y + 11);
        esc(h, r->name);
        raw(h, "</text>");
        fmt(h,
            "<rect x=\"180\" y=\"%d\" width=\"%d\" height=\"11\" fill=\"#4a78b5\"/>"
            "<rect x=\"180\" y=\"%d\" width=\"%d\" height=\"11\" fill=\"#d08a2e\"/>"
            "<text x=\"%d\" y=\"%d\" font-size=\"10\">%.2f / %.2f ms</text>",
            y, wm > 0 ? wm : 1, y + 12, wp > 0 ? wp : 1, 186 + (wm > wp ? wm : wp), y + 16,
            r->mongo_p50_ms, r->pg_p50_ms);
        row++;
    }
    raw(h, "</svg>\n");
}

static void
shadow_html(html_t *h, const mg_validate_report_t *rep)
{
    raw(h, "<h2>Shadow reads</h2>\n<table><thead><tr><th>query</th><th>namespace</th>"
           "<th>status</th><th>MongoDB docs</th><th>PostgreSQL docs</th><th>MongoDB p50/p95 "
           "ms</th><th>PostgreSQL p50/p95 ms</th><th>detail</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < rep->nshadow; i++) {
        const mg_validate_shadow_result_t *r = &rep->shadow[i];
        const char *cls = r->status == MG_VALIDATE_SHADOW_MATCH      ? "clean"
                          : r->status == MG_VALIDATE_SHADOW_MISMATCH ? "mismatch"
                                                                     : "failed";
        raw(h, "<tr><td>");
        esc(h, r->name);
        raw(h, "</td><td>");
        esc(h, r->ns != NULL ? r->ns : "");
        fmt(h, "</td><td class=\"%s\">", cls);
        esc(h, mg_validate_shadow_status_name(r->status));
        fmt(h,
            "</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td><td class=\"n\">%.2f / "
            "%.2f</td><td class=\"n\">%.2f / %.2f</td><td>",
            (long long)r->mongo_count, (long long)r->pg_count, r->mongo_p50_ms, r->mongo_p95_ms,
            r->pg_p50_ms, r->pg_p95_ms);
        if (r->reason != NULL)
            esc(h, r->reason);
        for (size_t k = 0; k < r->ndiff_ids; k++) {
            raw(h, k == 0 ? "<br>_ids: <code>" : ", <code>");
            esc(h, r->diff_ids[k]);
            raw(h, "</code>");
        }
        if (r->query != NULL) {
            raw(h, "<details><summary>query and SQL</summary><code>");
            esc(h, r->query);
            raw(h, "</code><br><code>");
            esc(h, r->sql != NULL ? r->sql : "");
            raw(h, "</code>");
            if (r->jsonpath != NULL) {
                raw(h, "<br><code>");
                esc(h, r->jsonpath);
                raw(h, "</code>");
            }
            raw(h, "</details>");
        }
        raw(h, "</td></tr>\n");
    }
    raw(h, "</tbody></table>\n<h2>Shadow-read latency</h2>\n");
    shadow_chart(h, rep);
}

bool
mg_validate_report_html(const mg_validate_report_t *rep, mg_buf_t *out, mg_error_t *error)
{
    html_t h = {out, error, true};

    raw(&h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>migrate validate report</title><style>");
    raw(&h, css);
    raw(&h, "</style></head><body>\n<h1>Validation report</h1>\n<p>Run ");
    fmt(&h, "%lld", (long long)rep->run_id);
    raw(&h, " (");
    esc(&h, rep->mode);
    raw(&h, "), started ");
    esc(&h, rep->started_at);
    fmt(&h, ", %.2f s: <span class=\"%s\">", rep->elapsed_s,
        strcmp(rep->status, "clean") == 0
            ? "clean"
            : (strcmp(rep->status, "failed") == 0 ? "failed" : "mismatch"));
    esc(&h, rep->status);
    fmt(&h, "</span>; %lld mismatch(es) persisted across runs.</p>\n", (long long)rep->persistent);

    raw(&h, "<h2>Collections</h2>\n<table><thead><tr><th>collection</th><th>table</th>"
            "<th>status</th><th>source docs</th><th>target docs</th><th>segments "
            "(mismatched)</th><th>missing</th><th>extra</th><th>different</th><th>time "
            "s</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < rep->ncolls; i++) {
        const mg_validate_report_coll_t *c = &rep->colls[i];
        const mg_validate_result_t *r = c->result;
        raw(&h, "<tr><td>");
        esc(&h, c->db);
        raw(&h, ".");
        esc(&h, c->coll);
        raw(&h, "</td><td>");
        esc(&h, c->schema);
        raw(&h, ".");
        esc(&h, c->table);
        raw(&h, "</td><td class=\"");
        esc(&h, c->status);
        raw(&h, "\">");
        esc(&h, c->status);
        if (c->error != NULL) {
            raw(&h, ": ");
            esc(&h, c->error);
        }
        raw(&h, "</td>");
        if (r != NULL)
            fmt(&h,
                "<td class=\"n\">%lld</td><td class=\"n\">%lld</td><td class=\"n\">%u (%u)</td>"
                "<td class=\"n\">%lld</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td>"
                "<td class=\"n\">%.3f</td>",
                (long long)r->source_docs, (long long)r->target_docs, r->segments,
                r->segments_mismatched, (long long)r->missing, (long long)r->extra,
                (long long)r->different, r->elapsed_s);
        else
            raw(&h, "<td colspan=\"7\"></td>");
        raw(&h, "</tr>\n");
    }
    raw(&h, "</tbody></table>\n<h2>Mismatches</h2>\n");
    size_t shown = 0;
    for (size_t i = 0; i < rep->ncolls; i++) {
        const mg_validate_report_coll_t *c = &rep->colls[i];
        const mg_validate_result_t *r = c->result;
        if (r == NULL)
            continue;
        for (size_t k = 0; k < r->nmismatches; k++) {
            const mg_validate_mismatch_t *m = &r->mismatches[k];
            shown++;
            raw(&h, "<details");
            raw(&h, m->ndiffs > 0 ? " open" : "");
            raw(&h, "><summary>");
            esc(&h, c->db);
            raw(&h, ".");
            esc(&h, c->coll);
            raw(&h, " <code>");
            esc(&h, m->id_json);
            raw(&h, "</code>: <span class=\"mismatch\">");
            esc(&h, mg_validate_mismatch_kind_name(m->kind));
            raw(&h, "</span>");
            if (m->persisted)
                raw(&h, " (persisted since ");
            if (m->persisted)
                esc(&h, m->first_seen_at);
            if (m->persisted)
                raw(&h, ")");
            raw(&h, "</summary>");
            if (m->ndiffs > 0) {
                raw(&h, "<table><thead><tr><th>field</th><th>source</th><th>target</th>"
                        "</tr></thead><tbody>");
                for (size_t d = 0; d < m->ndiffs; d++) {
                    const mg_validate_field_diff_t *fd = &m->diffs[d];
                    raw(&h, "<tr><td><code>");
                    esc(&h, fd->path);
                    raw(&h, "</code></td><td><code>");
                    esc(&h, fd->source_value);
                    raw(&h, "</code> ");
                    esc(&h, fd->source_type);
                    raw(&h, "</td><td><code>");
                    esc(&h, fd->target_value);
                    raw(&h, "</code> ");
                    esc(&h, fd->target_type);
                    raw(&h, "</td></tr>");
                }
                raw(&h, "</tbody></table>");
                if (m->more_diffs)
                    raw(&h, "<p>(more fields differ)</p>");
            }
            raw(&h, "</details>\n");
        }
        if (r->truncated)
            raw(&h, "<p>More differences exist than are named here.</p>\n");
    }
    if (shown == 0)
        raw(&h, "<p class=\"clean\">No mismatch.</p>\n");
    raw(&h, "<h2>Scan time per collection</h2>\n");
    chart(&h, rep);
    if (rep->has_shadow)
        shadow_html(&h, rep);
    raw(&h, "\n</body></html>\n");
    return h.ok;
}
