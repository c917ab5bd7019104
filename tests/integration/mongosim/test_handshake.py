"""tests/integration/mongosim/test_handshake.py - hello/isMaster, OP_QUERY, OP_MSG framing,
cluster time on every reply, server information commands."""

import bson
import pytest
import pymongo

from msim_service import OP_MSG, OP_REPLY, op_msg, op_query, raw_connect, read_reply

HELLO_FIELDS = ["isWritablePrimary", "topologyVersion", "hosts", "setName", "setVersion",
                "primary", "me", "electionId", "lastWrite", "maxBsonObjectSize",
                "maxMessageSizeBytes", "maxWriteBatchSize", "localTime",
                "logicalSessionTimeoutMinutes", "connectionId", "minWireVersion",
                "maxWireVersion", "readOnly", "ok"]


@pytest.mark.replset_only
def test_hello_is_a_replica_set_primary(mongosim, msim_client):
    reply = msim_client.admin.command("hello")
    for field in HELLO_FIELDS:
        assert field in reply, field
    assert reply["isWritablePrimary"] is True
    assert reply["hosts"] == [mongosim.address]
    assert reply["me"] == mongosim.address and reply["primary"] == mongosim.address
    assert reply["setName"] == "mongosim"
    assert reply["maxWireVersion"] >= 17  # MongoDB 6.0
    assert reply["maxBsonObjectSize"] == 16 * 1024 * 1024
    assert reply["maxMessageSizeBytes"] == 48000000
    assert reply["maxWriteBatchSize"] == 100000
    assert reply["logicalSessionTimeoutMinutes"] == 30
    assert isinstance(reply["topologyVersion"]["processId"], bson.ObjectId)


@pytest.mark.replset_only
def test_pymongo_discovers_replica_set_with_primary(mongosim):
    # with replicaSet set pymongo runs server discovery and monitoring on hello
    client = mongosim.client(replicaSet="mongosim")
    try:
        client.admin.command("ping")
        # primary is None unless the client sees a replica set with a primary
        assert client.primary == (mongosim.host, mongosim.port)
        assert client.is_primary
        assert client.nodes == frozenset([(mongosim.host, mongosim.port)])
    finally:
        client.close()


def test_is_master_legacy_name(msim_client):
    reply = msim_client.admin.command("isMaster")
    assert reply["ismaster"] is True
    assert "isWritablePrimary" not in reply


def test_every_reply_carries_cluster_time(msim_client):
    for cmd in ("ping", "buildInfo", "hello", "listDatabases"):
        reply = msim_client.admin.command(cmd)
        assert isinstance(reply["operationTime"], bson.Timestamp), cmd
        assert isinstance(reply["$clusterTime"]["clusterTime"], bson.Timestamp), cmd
        assert "signature" in reply["$clusterTime"]


def test_error_replies_carry_cluster_time_too(msim_client):
    try:
        msim_client.admin.command("noSuchCommand")
    except pymongo.errors.OperationFailure as e:
        assert e.code == 59
        assert e.details["codeName"] == "CommandNotFound"
        assert "noSuchCommand" in e.details["errmsg"]
        assert "operationTime" in e.details and "$clusterTime" in e.details
    else:
        raise AssertionError("unknown command succeeded")


def test_cluster_time_advances_with_writes(msim_client, dbname):
    t1 = msim_client[dbname].command("ping")["operationTime"]
    msim_client[dbname].c.insert_one({"a": 1})
    t2 = msim_client[dbname].command("ping")["operationTime"]
    assert t2 > t1


def test_op_query_legacy_handshake(mongosim):
    with raw_connect(mongosim) as sock:
        sock.sendall(op_query("admin.$cmd", {"isMaster": 1}, request_id=7))
        opcode, response_to, doc = read_reply(sock)
    assert opcode == OP_REPLY
    assert response_to == 7
    assert doc["ok"] == 1.0 and doc["ismaster"] is True
    assert doc["maxWireVersion"] >= 17


def test_op_query_wrapped_in_dollar_query(mongosim):
    with raw_connect(mongosim) as sock:
        sock.sendall(op_query("admin.$cmd", {"$query": {"ping": 1}, "$readPreference": {}}))
        opcode, _, doc = read_reply(sock)
    assert opcode == OP_REPLY and doc["ok"] == 1.0


def test_op_msg_with_checksum_flag_is_accepted(mongosim):
    with raw_connect(mongosim) as sock:
        sock.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=3, checksum=True))
        opcode, response_to, doc = read_reply(sock)
    assert opcode == OP_MSG and response_to == 3 and doc["ok"] == 1.0


def test_op_msg_document_sequence(mongosim, msim_client, dbname):
    docs = [{"_id": i, "v": "x" * i} for i in range(5)]
    with raw_connect(mongosim) as sock:
        sock.sendall(op_msg({"insert": "seq", "$db": dbname}, sequences=[("documents", docs)]))
        _, _, doc = read_reply(sock)
    assert doc["ok"] == 1.0 and doc["n"] == 5
    assert list(msim_client[dbname].seq.find().sort("_id", 1)) == docs


def test_more_to_come_gets_no_reply(mongosim, msim_client, dbname):
    with raw_connect(mongosim) as sock:
        # moreToCome (bit 1): fire and forget, then a normal ping is answered first
        sock.sendall(op_msg({"insert": "mtc", "documents": [{"_id": 1}], "$db": dbname,
                             "writeConcern": {"w": 0}}, request_id=1, flags=2))
        sock.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=2))
        _, response_to, doc = read_reply(sock)
    assert response_to == 2 and doc["ok"] == 1.0
    assert msim_client[dbname].mtc.count_documents({}) == 1


def test_lsid_accepted_and_end_sessions(msim_client, dbname):
    with msim_client.start_session() as s:
        msim_client[dbname].c.insert_one({"x": 1}, session=s)
        assert msim_client[dbname].c.find_one({"x": 1}, session=s)["x"] == 1
        lsid = s.session_id
    assert msim_client.admin.command("endSessions", [lsid])["ok"] == 1.0


def test_build_info_and_server_status(msim_client):
    # by default mongosim claims MongoDB 7.0 (maxWireVersion 21)
    info = msim_client.admin.command("buildInfo")
    assert info["version"].startswith("7.0.")
    assert info["versionArray"][:2] == [7, 0]
    assert msim_client.admin.command("hello")["maxWireVersion"] == 21
    fcv = msim_client.admin.command("getParameter", 1, featureCompatibilityVersion=1)
    assert fcv["featureCompatibilityVersion"]["version"] == "7.0"
    status = msim_client.admin.command("serverStatus")
    assert status["connections"]["current"] >= 1
    assert "opcounters" in status and status["uptimeMillis"] >= 0


def test_server_version_6_0(mongosim_factory):
    # --server-version 6.0 claims 6.0.8: the last 6.0 release without
    # $changeStreamSplitLargeEvent (added in 7.0 and 6.0.9)
    client = mongosim_factory("--server-version", "6.0").client()
    try:
        info = client.admin.command("buildInfo")
        assert info["version"] == "6.0.8" and info["versionArray"][:3] == [6, 0, 8]
        assert client.admin.command("hello")["maxWireVersion"] == 17
        assert client.admin.command("serverStatus")["version"] == "6.0.8"
        fcv = client.admin.command("getParameter", 1, featureCompatibilityVersion=1)
        assert fcv["featureCompatibilityVersion"]["version"] == "6.0"
    finally:
        client.close()


def test_many_concurrent_connections(mongosim):
    import threading
    errors = []

    def worker(i):
        try:
            c = mongosim.client(maxPoolSize=1)
            db = c["conc"]
            for j in range(20):
                db.c.insert_one({"w": i, "j": j})
            assert db.c.count_documents({"w": i}) == 20
            c.close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
