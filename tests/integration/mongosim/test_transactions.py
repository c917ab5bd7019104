"""tests/integration/mongosim/test_transactions.py - multi-document transactions: writes
visible and change events produced only at commit, each event with lsid and txnNumber."""

import time

import pymongo
import pytest

from test_change_streams import drain


def test_events_only_at_commit_with_lsid_and_txn_number(msim_client, dbname):
    coll = msim_client[dbname].tx
    msim_client[dbname].create_collection("tx")
    coll.insert_one({"_id": "pre", "n": 0})
    with coll.watch(max_await_time_ms=100) as s, msim_client.start_session() as sess:
        with sess.start_transaction():
            coll.insert_one({"_id": 1}, session=sess)
            coll.update_one({"_id": "pre"}, {"$inc": {"n": 1}}, session=sess)
            coll.delete_one({"_id": "pre"}, session=sess)
            coll.insert_one({"_id": 2}, session=sess)
            # nothing visible to others, no events yet
            assert coll.count_documents({"_id": {"$in": [1, 2]}}) == 0
            assert coll.find_one({"_id": "pre"}) == {"_id": "pre", "n": 0}
            time.sleep(0.3)
            assert s.try_next() is None
        assert coll.count_documents({"_id": {"$in": [1, 2]}}) == 2
        assert coll.find_one({"_id": "pre"}) is None
        evs = drain(s, 4)
        lsid = sess.session_id
    assert [e["operationType"] for e in evs] == ["insert", "update", "delete", "insert"]
    assert len({e["clusterTime"] for e in evs}) == 1  # one commit time
    def uuid_bytes(v):
        return v.bytes if hasattr(v, "bytes") else bytes(v)

    for e in evs:
        assert uuid_bytes(e["lsid"]["id"]) == uuid_bytes(lsid["id"])
        assert e["txnNumber"] == evs[0]["txnNumber"]
    tokens = [e["_id"]["_data"] for e in evs]
    assert tokens == sorted(tokens) and len(set(tokens)) == 4


def test_abort_discards_writes_and_events(msim_client, dbname):
    coll = msim_client[dbname].ab
    msim_client[dbname].create_collection("ab")
    with coll.watch(max_await_time_ms=100) as s, msim_client.start_session() as sess:
        sess.start_transaction()
        coll.insert_one({"_id": 1}, session=sess)
        sess.abort_transaction()
        coll.insert_one({"_id": "outside"})
        evs = drain(s, 1)
    assert evs[0]["documentKey"] == {"_id": "outside"} and "lsid" not in evs[0]
    assert coll.count_documents({}) == 1


def test_with_transaction_helper_and_commit_retry(msim_client, dbname):
    coll = msim_client[dbname].wt

    def body(sess):
        coll.insert_one({"_id": "a"}, session=sess)
        coll.insert_one({"_id": "b"}, session=sess)

    with msim_client.start_session() as sess:
        sess.with_transaction(body)
    assert coll.count_documents({}) == 2


def test_transaction_errors(msim_client, dbname):
    db = msim_client[dbname]
    with msim_client.start_session() as sess:
        sess.start_transaction()
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            db.command("create", "nope", session=sess)
        assert exc.value.code == 263
        sess.abort_transaction()
    # commit of a transaction that was never started
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        msim_client.admin.command({"commitTransaction": 1, "lsid": {"id": __import__("bson").Binary(b"0" * 16, 4)},
                                   "txnNumber": __import__("bson").Int64(7), "autocommit": False})
    assert exc.value.code == 251
    assert exc.value.has_error_label("TransientTransactionError")


def test_write_conflict_at_commit(msim_client, dbname):
    coll = msim_client[dbname].wc
    coll.insert_one({"_id": 1, "v": 0})
    with msim_client.start_session() as sess:
        sess.start_transaction()
        coll.update_one({"_id": 1}, {"$set": {"v": 1}}, session=sess)
        coll.delete_one({"_id": 1})  # someone else removes the document first
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            sess.commit_transaction()
        assert exc.value.code == 112
    assert coll.count_documents({}) == 0


def test_statements_see_the_transactions_own_writes(msim_client, dbname):
    coll = msim_client[dbname].own
    coll.insert_many([{"_id": "keep", "n": 1}, {"_id": "drop", "n": 2}])
    with coll.watch(max_await_time_ms=100) as s, msim_client.start_session() as sess:
        with sess.start_transaction():
            coll.insert_one({"_id": "new", "n": 0}, session=sess)
            r = coll.update_one({"_id": "new"}, {"$inc": {"n": 5}}, session=sess)
            assert r.modified_count == 1
            coll.delete_one({"_id": "drop"}, session=sess)
            coll.update_many({}, {"$set": {"seen": True}}, session=sess)
            inside = sorted((d["_id"], d["n"], d.get("seen")) for d in coll.find({}, session=sess))
            assert inside == [("keep", 1, True), ("new", 5, True)]
            assert coll.count_documents({}, session=sess) == 2
        evs = drain(s, 5)
    outside = sorted((d["_id"], d["n"], d.get("seen")) for d in coll.find())
    assert outside == [("keep", 1, True), ("new", 5, True)]
    assert [e["operationType"] for e in evs] == ["insert", "update", "delete", "update", "update"]


def test_a_failed_statement_aborts_the_transaction(msim_client, dbname):
    coll = msim_client[dbname].fail
    coll.insert_one({"_id": 1})
    with msim_client.start_session() as sess:
        sess.start_transaction()
        coll.insert_one({"_id": 2}, session=sess)
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            coll.insert_one({"_id": 1}, session=sess)
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            sess.commit_transaction()
        assert exc.value.code == 251
    assert coll.count_documents({}) == 1


def test_a_new_collection_written_twice_in_one_transaction(msim_client, dbname):
    # regression: a statement on a document that exists only in the transaction,
    # in a collection that exists only in the transaction, crashed the server
    # (SIGSEGV) when it staged its write (found by the randomized test)
    db = msim_client[dbname]
    with db.watch(max_await_time_ms=100) as s, msim_client.start_session() as sess:
        with sess.start_transaction():
            db.fresh.insert_one({"_id": 1}, session=sess)
            db.fresh.update_one({"_id": 1}, {"$set": {"x": 1}}, session=sess)
            db.fresh.replace_one({"_id": 1}, {"y": 2}, session=sess)
            assert db.fresh.find_one_and_update({"_id": 1}, {"$inc": {"y": 1}}, session=sess,
                                                return_document=True) == {"_id": 1, "y": 3}
            db.fresh.insert_one({"_id": 2}, session=sess)
            db.fresh.delete_one({"_id": 2}, session=sess)
            db.fresh.insert_one({"_id": 3}, session=sess)
            assert db.fresh.find_one_and_delete({"_id": 3}, session=sess) == {"_id": 3}
        evs = drain(s, 8)
    assert list(db.fresh.find()) == [{"_id": 1, "y": 3}]
    assert [(e["operationType"], e["documentKey"]["_id"]) for e in evs] == [
        ("insert", 1), ("update", 1), ("replace", 1), ("update", 1),
        ("insert", 2), ("delete", 2), ("insert", 3), ("delete", 3)]
    assert len({e["clusterTime"] for e in evs}) == 1
