"""tests/integration/randomized/ops.py - run a scenario's operations with pymongo; log every ack.

`Executor(client, dbnames)` runs `Op`s (gen.py) against the source. Values
travel as raw BSON (`RawBSONDocument` over bsonx's bytes), so duplicate
field names, int32 vs int64 and invalid UTF-8 reach the server exactly as
generated. Every operation's outcome goes into an `AckLog` record: what the
server acknowledged (counts, upserted `_id`s) or the error it returned, so a
document the target lacks can be traced to the acknowledged writes that
touched it.
"""

import time

import pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from pymongo.errors import AutoReconnect, PyMongoError, ServerSelectionTimeoutError

import bsonx as B

RAW = CodecOptions(document_class=RawBSONDocument)

def raw(v):
    """raw turns a bsonx document into a RawBSONDocument (bytes unchanged)."""
    return RawBSONDocument(B.encode(v))


def raw_list(v):
    """raw_list turns a bsonx array of documents into a list of RawBSONDocument."""
    return [raw(x) for _, x in v[1]]


def update_arg(v):
    return raw_list(v) if v[0] == B.ARRAY else raw(v)


class AckLog:
    """AckLog: one record per operation run (dicts, JSON-able).

    A record: slot, i (index in the scenario's ops), kind, db, coll, ok,
    acknowledged (the server said yes to at least part of it), result or
    error (code, message), ids (show() of the _ids the op names)."""

    def __init__(self):
        self.records = []

    def add(self, rec):
        self.records.append(rec)

    def for_slot(self, slot):
        return [r for r in self.records if r["slot"] == slot]


def _did_something(res):
    if isinstance(res, list):
        return any(_did_something(r) for r in res)
    if "commands" in res:
        return _did_something(res["commands"])
    return bool(res.get("n")) or bool(res.get("upserted"))


def _error(e):
    return {"code": getattr(e, "code", None), "message": str(e)[:300]}


class Executor:
    """Executor runs ops of one scenario slot against the source."""

    def __init__(self, client, dbnames, slot, log):
        self.client = client
        self.dbnames = dbnames  # role ("main", "aux") -> database name
        self.slot = slot
        self.log = log

    def coll(self, op):
        # raw replies too: a returned document may hold what pymongo cannot decode
        return self.client[self.dbnames[op.db]].get_collection(op.coll, codec_options=RAW)

    def run(self, i, op):
        """run executes op (index i of the scenario) and records the outcome."""
        rec = {"slot": self.slot, "i": i, "kind": op.kind, "db": op.db, "coll": op.coll,
               "phase": op.phase, "ids": [B.show(x, 120) for x in op.ids()]}
        try:
            res = self._run(op, None)
            rec.update(ok=True, acknowledged=True, result=res)
        except WriteErrors as e:
            rec.update(ok=False, acknowledged=_did_something(e.result), result=e.result,
                       error={"code": e.code, "message": e.message[:300]})
        except (AutoReconnect, ServerSelectionTimeoutError) as e:
            rec.update(ok=False, acknowledged=False, error=_error(e))
            rec["at"] = time.time()
            self.log.add(rec)
            raise SourceDown(self.slot, i, op, self.dbnames["main"], e) from None
        except PyMongoError as e:
            rec.update(ok=False, acknowledged=False, error=_error(e))
        rec["at"] = time.time()
        self.log.add(rec)
        return rec

    def _cmd(self, op, body, session):
        """_cmd runs one command on op's database; returns its reply as a bsonx document.

        Commands, not pymongo's helpers: those look inside the documents
        (pymongo 3.11 inflates a RawBSONDocument to validate it, which fails
        on dates beyond year 9999 and strings that are not UTF-8)."""
        db = self.client[self.dbnames[op.db]]
        reply = db.command(SON(body), codec_options=RAW, session=session)
        return B.decode(reply.raw)

    def _write(self, op, name, field, stmts, ordered, session):
        r = self._cmd(op, [(name, op.coll), (field, [raw(x) for x in stmts]),
                           ("ordered", ordered)], session)
        errs = B.get(r, "writeErrors")
        res = {"n": _num(B.get(r, "n"))}
        if B.get(r, "nModified") is not None:
            res["modified"] = _num(B.get(r, "nModified"))
        up = B.get(r, "upserted")
        if up is not None:
            res["upserted"] = [B.show(B.get(u, "_id"), 120) for _, u in up[1]]
        if errs is not None and errs[1]:
            first = errs[1][0][1]
            raise WriteErrors(res, _num(B.get(first, "code")),
                              "; ".join(f"#{_num(B.get(e, 'index'))}: "
                                        f"{B.get(e, 'errmsg')[1].decode('utf-8', 'replace')}"
                                        for _, e in errs[1][:3]))
        return res

    def _run(self, op, session):
        a = op.args
        k = op.kind
        if k == "txn":
            return self._txn(op)
        if k == "create":
            self._cmd(op, [("create", op.coll)], session)
            return {}
        if k == "drop":
            self._cmd(op, [("drop", op.coll)], session)
            return {}
        if k == "rename":
            names = self.dbnames[op.db]
            self.client.admin.command(SON([("renameCollection", f"{names}.{op.coll}"),
                                           ("to", f"{names}.{a['to']}"),
                                           ("dropTarget", a["drop_target"])]), session=session)
            return {}
        if k == "drop_database":
            self._cmd(op, [("dropDatabase", 1)], session)
            return {}
        if k in ("insert", "insert_many"):
            docs = [a["doc"]] if k == "insert" else a["docs"]
            return self._write(op, "insert", "documents", docs, a.get("ordered", True), session)
        if k in ("update", "replace", "delete"):
            name, field, stmt = _statement(k, a)
            return self._write(op, name, field, [stmt], True, session)
        if k == "find_modify":
            body = [("findAndModify", op.coll), ("query", raw(a["filter"]))]
            if a.get("remove"):
                body.append(("remove", True))
            else:
                u = a.get("replacement") if a.get("replacement") is not None else a["update"]
                body += [("update", update_arg(u)), ("upsert", a["upsert"]),
                         ("new", bool(a.get("new")))]
            r = self._cmd(op, body, session)
            v = B.get(r, "value")
            return {"found": v is not None and v[0] == B.DOC}
        if k == "bulk":
            # consecutive statements of one kind go in one command, as drivers do
            res = []
            groups = []
            for kind, sub in a["requests"]:
                name, field, stmt = _statement(kind, sub)
                if groups and groups[-1][0] == name:
                    groups[-1][2].append(stmt)
                else:
                    groups.append((name, field, [stmt]))
            for name, field, stmts in groups:
                try:
                    res.append(self._write(op, name, field, stmts, a["ordered"], session))
                except WriteErrors as e:
                    if a["ordered"]:
                        raise WriteErrors(res + [e.result], e.code, e.message) from None
                    res.append({"error": e.message, **e.result})
            return {"commands": res}
        raise ValueError(f"unknown op kind {k}")

    def _txn(self, op):
        with self.client.start_session() as s:
            s.start_transaction()
            try:
                for sub in op.args["ops"]:
                    self._run(sub, s)
            except PyMongoError:
                if s.in_transaction:
                    s.abort_transaction()
                raise
            if op.args["commit"]:
                s.commit_transaction()
                return {"committed": True}
            s.abort_transaction()
            return {"committed": False}


class SourceDown(Exception):
    """SourceDown: the source stopped answering while op i of a slot ran (a crash?)."""

    def __init__(self, slot, i, op, dbname, cause):
        super().__init__(f"the source stopped answering during op {i} ({op.kind}) of "
                         f"{dbname}: {cause}")
        self.slot = slot
        self.i = i


class WriteErrors(PyMongoError):
    """WriteErrors: a write command answered ok with writeErrors (result: what it did)."""

    def __init__(self, result, code, message):
        super().__init__(message)
        self.result = result
        self.code = code
        self.message = message


def _num(v):
    return None if v is None else (B.double_value(v) if v[0] == B.DOUBLE else v[1])


def _statement(kind, a):
    """_statement is (command, field, statement document) of an update/replace/delete/insert."""
    if kind in ("insert", "insert_many"):
        return "insert", "documents", a["doc"]
    if kind == "delete":
        return "delete", "deletes", B.doc(("q", a["filter"]), ("limit", B.i32(0 if a["multi"]
                                                                            else 1)))
    items = [("q", a["filter"]), ("u", a["replacement"] if kind == "replace" else a["update"]),
             ("upsert", (B.BOOL, bool(a["upsert"]))), ("multi", (B.BOOL, bool(a.get("multi"))))]
    if a.get("array_filters") is not None:
        items.append(("arrayFilters", a["array_filters"]))
    return "update", "updates", B.doc(*items)


def source_client(uri):
    """source_client is a pymongo client for the randomized test (caller closes it)."""
    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, retryWrites=False)
