/*
 * schema/src/schema_sql.c - the SQL helper functions init creates in every
 * target schema, so an application writing documents after the flip writes
 * them in the mapping's format (docs/application.md, docs/type-mapping.md):
 * bson_oid, bson_new_oid, bson_date, bson_long, bson_double, bson_decimal,
 * bson_binary build the wrappers; bson_date_value reads a date back.
 *
 * The schema's name never enters a function body (a name holding the dollar
 * quote would end it early): only the CREATE line names it, quoted.
 * Every function pins search_path to pg_catalog first, so an object named
 * like a built-in in another schema cannot stand in for it.
 */
#include "mg/schema.h"

#include <string.h>

/* One statement per entry; "@" is the quoted schema (only outside the bodies). */
static const char *const helpers[] = {
    /* bson_oid: {"$oid": hex}, refusing anything but 24 hex digits */
    "CREATE OR REPLACE FUNCTION @.bson_oid(hex text) RETURNS jsonb\n"
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp\n"
    "AS $mg$\n"
    "BEGIN\n"
    "    IF hex !~ '^[0-9A-Fa-f]{24}$' THEN\n"
    "        RAISE EXCEPTION 'could not make an ObjectId of \"%\": not 24 hexadecimal digits', "
    "hex\n"
    "            USING ERRCODE = '22023';\n"
    "    END IF;\n"
    "    RETURN jsonb_build_object('$oid', lower(hex));\n"
    "END\n"
    "$mg$",
    /* bson_new_oid: a new ObjectId's hex (seconds since the epoch, then 8
     * bytes that differ between calls), for the _id of a new document */
    "CREATE OR REPLACE FUNCTION @.bson_new_oid() RETURNS text\n"
    "LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp\n"
    "AS $mg$\n"
    "SELECT lpad(to_hex(floor(extract(epoch FROM clock_timestamp()))::bigint), 8, '0')\n"
    "    || substr(md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text), 1, "
    "16)\n"
    "$mg$",
    /* bson_date: the renderer's form: ISO text with milliseconds from 1970
     * to 9999, {"$numberLong": ms} outside; microseconds are cut toward the
     * past (BSON dates hold milliseconds) */
    "CREATE OR REPLACE FUNCTION @.bson_date(t timestamptz) RETURNS jsonb\n"
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp\n"
    "AS $mg$\n"
    "DECLARE\n"
    "    u timestamp;\n"
    "    ms bigint;\n"
    "BEGIN\n"
    "    IF NOT isfinite(t) THEN\n"
    "        RAISE EXCEPTION 'could not make a BSON date of \"%\": not finite', t\n"
    "            USING ERRCODE = '22008';\n"
    "    END IF;\n"
    "    /* whole days and microseconds of the day: exact (no float beyond 2^37) */\n"
    "    u := t AT TIME ZONE 'UTC';\n"
    "    ms := (u::date - date '1970-01-01')::bigint * 86400000\n"
    "        + round(extract(epoch FROM u::time) * 1000000)::bigint / 1000;\n"
    "    IF ms >= 0 AND ms < 253402300800000 THEN\n"
    "        RETURN jsonb_build_object('$date', to_char(u, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'));\n"
    "    END IF;\n"
    "    RETURN jsonb_build_object('$date', jsonb_build_object('$numberLong', ms::text));\n"
    "END\n"
    "$mg$",
    /* bson_date_value: the time a stored date holds (either form) */
    "CREATE OR REPLACE FUNCTION @.bson_date_value(v jsonb) RETURNS timestamptz\n"
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp\n"
    "AS $mg$\n"
    "DECLARE\n"
    "    d jsonb := v -> '$date';\n"
    "    ms bigint;\n"
    "BEGIN\n"
    "    IF jsonb_typeof(d) = 'string' AND d #>> '{}' ~\n"
    "            '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d{1,3})?Z$' THEN\n"
    "        RETURN (d #>> '{}')::timestamptz;\n"
    "    END IF;\n"
    "    IF jsonb_typeof(d) = 'object' AND d - '$numberLong' = '{}'::jsonb\n"
    "            AND jsonb_typeof(d -> '$numberLong') = 'string'\n"
    "            AND d ->> '$numberLong' ~ '^-?\\d{1,19}$' THEN\n"
    "        ms := (d ->> '$numberLong')::bigint;\n"
    "        /* whole days, then the milliseconds of the day: exact */\n"
    "        RETURN (timestamp 'epoch' + floor(ms / 86400000.0) * interval '1 day'\n"
    "            + (ms - floor(ms / 86400000.0)::bigint * 86400000) * interval '1 millisecond')\n"
    "            AT TIME ZONE 'UTC';\n"
    "    END IF;\n"
    "    RAISE EXCEPTION 'could not read a BSON date from %: not a $date wrapper', v\n"
    "        USING ERRCODE = '22023';\n"
    "END\n"
    "$mg$",
    /* bson_long: an int64 that stays an int64 even when small */
    "CREATE OR REPLACE FUNCTION @.bson_long(n bigint) RETURNS jsonb\n"
    "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp\n"
    "AS $mg$ SELECT jsonb_build_object('$numberLong', n::text) $mg$",
    /* bson_double: a double that reads back as the same double: a number with
     * a '.' and no exponent (a JSON 10 is an int32, and jsonb prints 1e10
     * without a '.'); NaN, the infinities and -0.0 as the wrapper. The
     * digits are float8out's shortest exact ones (extra_float_digits >= 1). */
    "CREATE OR REPLACE FUNCTION @.bson_double(x float8) RETURNS jsonb\n"
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE\n"
    "SET search_path = pg_catalog, pg_temp SET extra_float_digits = 1\n"
    "AS $mg$\n"
    "DECLARE\n"
    "    t text;\n"
    "BEGIN\n"
    "    IF x = 'NaN'::float8 THEN\n"
    "        RETURN '{\"$numberDouble\": \"NaN\"}'::jsonb;\n"
    "    ELSIF x = 'Infinity'::float8 THEN\n"
    "        RETURN '{\"$numberDouble\": \"Infinity\"}'::jsonb;\n"
    "    ELSIF x = '-Infinity'::float8 THEN\n"
    "        RETURN '{\"$numberDouble\": \"-Infinity\"}'::jsonb;\n"
    "    ELSIF x = 0 AND x::text LIKE '-%' THEN\n"
    "        RETURN '{\"$numberDouble\": \"-0.0\"}'::jsonb;\n"
    "    END IF;\n"
    "    t := (x::text)::numeric::text;\n"
    "    IF strpos(t, '.') = 0 THEN\n"
    "        t := t || '.0';\n"
    "    END IF;\n"
    "    RETURN t::jsonb;\n"
    "END\n"
    "$mg$",
    /* bson_decimal: {"$numberDecimal": text}, refusing what Decimal128
     * cannot hold exactly (more than 34 significant digits, or an exponent
     * beyond its range) rather than storing a document with no BSON form */
    "CREATE OR REPLACE FUNCTION @.bson_decimal(n numeric) RETURNS jsonb\n"
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp\n"
    "AS $mg$\n"
    "DECLARE\n"
    "    t text := n::text;\n"
    "    digits text;\n"
    "    point int;\n"
    "    exponent int;\n"
    "BEGIN\n"
    "    IF t IN ('NaN', 'Infinity', '-Infinity') THEN\n"
    "        RETURN jsonb_build_object('$numberDecimal', t);\n"
    "    END IF;\n"
    "    point := strpos(t, '.');\n"
    "    digits := ltrim(replace(ltrim(t, '-'), '.', ''), '0');\n"
    "    /* the exponent of the last digit kept when the coefficient is digits */\n"
    "    exponent := CASE WHEN point = 0 THEN 0 ELSE point - length(t) END;\n"
    "    IF point = 0 THEN\n"
    "        /* an integer's trailing zeros go into the exponent */\n"
    "        exponent := length(digits) - length(rtrim(digits, '0'));\n"
    "        digits := rtrim(digits, '0');\n"
    "    END IF;\n"
    "    IF length(digits) > 34 OR exponent < -6176 OR exponent + greatest(length(digits), 1) "
    "- 1 > 6144 THEN\n"
    "        RAISE EXCEPTION 'could not make a Decimal128 of %: more than 34 significant digits "
    "or an exponent out of range', t\n"
    "            USING ERRCODE = '22003';\n"
    "    END IF;\n"
    "    RETURN jsonb_build_object('$numberDecimal', t);\n"
    "END\n"
    "$mg$",
    /* bson_binary: {"$binary": {"base64": ..., "subType": "hh"}} */
    "CREATE OR REPLACE FUNCTION @.bson_binary(bytes bytea, subtype int DEFAULT 0) RETURNS jsonb\n"
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp\n"
    "AS $mg$\n"
    "BEGIN\n"
    "    IF subtype < 0 OR subtype > 255 THEN\n"
    "        RAISE EXCEPTION 'could not make a BSON binary of subtype %: not 0 to 255', subtype\n"
    "            USING ERRCODE = '22023';\n"
    "    END IF;\n"
    "    RETURN jsonb_build_object('$binary', jsonb_build_object(\n"
    "        'base64', translate(encode(bytes, 'base64'), E'\\n', ''),\n"
    "        'subType', lpad(to_hex(subtype), 2, '0')));\n"
    "END\n"
    "$mg$",
    NULL,
};

bool
mg_schema_sql_helpers_ddl(const char *schema, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_t quoted;
    bool ok;

    mg_buf_init(&quoted, 1024);
    ok = mg_schema_quote_ident(schema, &quoted, error);
    for (int i = 0; ok && helpers[i] != NULL; i++) {
        const char *at = strchr(helpers[i], '@');

        ok = mg_buf_append(out, helpers[i], (size_t)(at - helpers[i]), error) &&
             mg_buf_append(out, quoted.data, quoted.len, error) &&
             mg_buf_append_str(out, at + 1, error) && mg_buf_append_str(out, ";\n", error);
    }
    mg_buf_cleanup(&quoted);
    return ok;
}
