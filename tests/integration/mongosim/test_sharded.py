"""tests/integration/mongosim/test_sharded.py - mongosim as a sharded cluster (mongosim
--shards 3), checked through its router with pymongo and directly on its shards: mongos's
hello and config.* catalog, ranged and hashed shard keys (the hash checked against MongoDB's
hashed-index function computed here independently), targeted and scatter-gather operations,
$collStats per shard, splits and migrations (no user events, orphans until the range deleter
runs), the balancer, change streams merged in cluster-time order with resume tokens that
work through the router, an idle shard holding the merge back until its no-op, updateLookup
after a migration, transactions across shards, the write freeze on every shard, privileges."""

import hashlib
import struct
import threading
import time

import bson
import pymongo
import pytest
from bson.son import SON

pytestmark = pytest.mark.sharded_only


def mongo_hash(value):
    """mongo_hash is MongoDB's hashed-index hash of an integer (md5 of seed 0, the numeric
    canonical type 10 and the value as int64, all little-endian; first 8 digest bytes)."""
    digest = hashlib.md5(struct.pack("<iiq", 0, 10, value)).digest()
    return struct.unpack("<q", digest[:8])[0]


def chunks_of(client, ns):
    uuid = client.config.collections.find_one({"_id": ns})["uuid"]
    # pymongo 3's legacy UUID encoding would query subtype 3: ask for subtype 4
    return list(client.config.chunks.find({"uuid": bson.Binary.from_uuid(uuid)}).sort("min", 1))


def owner(chunks, field, key):
    for ch in chunks:
        lo, hi = ch["min"][field], ch["max"][field]
        if (isinstance(lo, bson.MinKey) or lo <= key) and (isinstance(hi, bson.MaxKey) or key < hi):
            return ch["shard"]
    raise AssertionError(f"no chunk owns {key}")


def shard_counts(server, db, coll):
    out = []
    for i in range(server.nshards):
        c = server.shard_client(i)
        try:
            out.append(c[db][coll].count_documents({}))
        finally:
            c.close()
    return out


def drain(stream, n, timeout=20.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        ev = stream.try_next()
        if ev is not None:
            out.append(ev)
        assert time.monotonic() < deadline, f"only {len(out)} of {n} events: {out}"
    return out


@pytest.fixture
def cluster(mongosim_factory):
    return mongosim_factory()


def test_router_speaks_as_mongos(cluster):
    client = cluster.client()
    try:
        hello = client.admin.command("hello")
        assert hello["msg"] == "isdbgrid" and hello["isWritablePrimary"] is True
        assert "setName" not in hello and "hosts" not in hello
        shards = client.admin.command("listShards")["shards"]
        assert [s["_id"] for s in shards] == ["shard0", "shard1", "shard2"]
        assert all(s["host"].startswith(s["_id"] + "/127.0.0.1:") and s["state"] == 1
                   for s in shards)
        assert [s["_id"] for s in client.config.shards.find()] == ["shard0", "shard1", "shard2"]
        assert client.admin.command("balancerStatus")["mode"] == "full"
        assert client.admin.command("serverStatus")["process"] == "mongos"
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            client.admin.command("replSetGetStatus")
        assert exc.value.code == 59
        # each shard is a replica set of its own name
        for i, (name, host, port) in enumerate(cluster.shards()):
            direct = cluster.shard_client(i)
            try:
                assert direct.admin.command("hello")["setName"] == name
            finally:
                direct.close()
        # pymongo sees a sharded topology
        assert client.is_mongos
    finally:
        client.close()


def test_hashed_key_spreads_documents_as_mongodb_hashes(cluster):
    client = cluster.client()
    try:
        reply = client.admin.command("shardCollection", "shop.h", key={"_id": "hashed"})
        assert reply["collectionsharded"] == "shop.h"
        coll_doc = client.config.collections.find_one({"_id": "shop.h"})
        assert coll_doc["key"] == {"_id": "hashed"}
        chunks = chunks_of(client, "shop.h")
        # an empty hashed collection starts with two chunks per shard
        assert len(chunks) == 6 and {c["shard"] for c in chunks} == {"shard0", "shard1",
                                                                    "shard2"}
        client.shop.h.insert_many([{"_id": i, "v": i % 7} for i in range(3000)])
        counts = shard_counts(cluster, "shop", "h")
        assert sum(counts) == 3000 and min(counts) > 600, counts
        # every document is on the shard that owns its hash (computed here)
        for i in range(cluster.nshards):
            direct = cluster.shard_client(i)
            try:
                for d in direct.shop.h.find({}, {"_id": 1}):
                    assert owner(chunks, "_id", mongo_hash(d["_id"])) == f"shard{i}"
            finally:
                direct.close()
        stats = list(client.shop.h.aggregate([{"$collStats": {"count": {}}}]))
        assert sorted(s["shard"] for s in stats) == ["shard0", "shard1", "shard2"]
        assert sorted(s["count"]["count"] for s in stats) == sorted(counts)
        cs = client.shop.command("collStats", "h")
        assert cs["sharded"] is True and cs["count"] == 3000 and cs["nchunks"] == 6
        assert set(cs["shards"]) == {"shard0", "shard1", "shard2"}
        # reads through the router see each document once
        assert client.shop.h.count_documents({}) == 3000
        assert client.shop.h.count_documents({"v": 3}) == len([i for i in range(3000)
                                                               if i % 7 == 3])
        assert [d["_id"] for d in client.shop.h.find().sort("_id", -1).limit(3)] == [2999, 2998,
                                                                                    2997]
        assert sorted(client.shop.h.distinct("v")) == list(range(7))
        res = client.shop.h.update_many({"v": 1}, {"$inc": {"v": 10}})
        assert res.matched_count == res.modified_count == len([i for i in range(3000)
                                                               if i % 7 == 1])
        assert client.shop.h.delete_many({"v": 11}).deleted_count == res.matched_count
        assert client.shop.h.find_one_and_update({"_id": 5}, {"$set": {"x": 1}},
                                                 return_document=True) == {"_id": 5, "v": 5,
                                                                          "x": 1}
    finally:
        client.close()


def test_targeted_operations_reach_only_the_owning_shard(cluster):
    client = cluster.client(retryReads=False, retryWrites=False)
    try:
        client.admin.command("shardCollection", "t.c", key={"_id": "hashed"})
        client.t.c.insert_many([{"_id": i} for i in range(60)])
        chunks = chunks_of(client, "t.c")
        victim = 1
        mine = next(i for i in range(60) if owner(chunks, "_id", mongo_hash(i)) != "shard1")
        direct = cluster.shard_client(victim)
        try:
            direct.admin.command("configureFailPoint", "failCommand", mode="alwaysOn",
                                 data={"failCommands": ["find", "update"], "errorCode": 2})
            # a key the filter pins: only its owner is asked
            assert client.t.c.find_one({"_id": mine}) == {"_id": mine}
            assert client.t.c.find_one({"_id": {"$eq": mine}}) == {"_id": mine}
            client.t.c.update_one({"_id": mine}, {"$set": {"x": 1}})
            # $eq with another operator does not pin the key: every shard is asked
            with pytest.raises(pymongo.errors.OperationFailure):
                client.t.c.find_one({"_id": {"$eq": mine, "$gte": 0}})
            # no key: every shard is asked, shard1 fails the operation
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                list(client.t.c.find({"x": 1}))
            assert exc.value.code == 2
            with pytest.raises(pymongo.errors.OperationFailure):
                client.t.c.update_many({}, {"$set": {"y": 1}})
        finally:
            direct.admin.command("configureFailPoint", "failCommand", mode="off")
            direct.close()
        # an upsert without the shard key cannot be routed
        with pytest.raises(pymongo.errors.WriteError) as exc:
            client.t.c.update_one({"v": 1}, {"$set": {"v": 2}}, upsert=True)
        assert exc.value.code == 61
    finally:
        client.close()


def test_ranged_key_split_migration_and_orphans(cluster):
    client = cluster.client()
    try:
        # the chunks move only when this test says so: a balancer round (every 10 s) on a
        # loaded machine moved the other chunk too and the recipient held 100 documents
        client.admin.command("balancerStop")
        client.r.c.insert_many([{"_id": i, "k": i} for i in range(100)])
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            client.admin.command("shardCollection", "r.c", key={"k": 1})
        assert exc.value.code == 72  # a non-empty collection needs an index on the key
        client.r.c.create_index("k")
        client.admin.command("shardCollection", "r.c", key={"k": 1})
        chunks = chunks_of(client, "r.c")
        primary = client.config.databases.find_one({"_id": "r"})["primary"]
        assert len(chunks) == 1 and chunks[0]["shard"] == primary
        assert isinstance(chunks[0]["min"]["k"], bson.MinKey)
        client.admin.command("split", "r.c", middle={"k": 50})
        assert [c["max"]["k"] for c in chunks_of(client, "r.c")][0] == 50
        other = next(s for s in ("shard0", "shard1", "shard2") if s != primary)
        donor, recipient = int(primary[-1]), int(other[-1])
        with client.watch(max_await_time_ms=100) as routed:
            direct_streams = [cluster.shard_client(i) for i in range(cluster.nshards)]
            watches = [c.watch(max_await_time_ms=100) for c in direct_streams]
            client.admin.command("moveChunk", "r.c", find={"k": 75}, to=other)
            counts = shard_counts(cluster, "r", "c")
            # the donor keeps its copies (orphans) until the range deleter runs
            assert counts[donor] == 100 and counts[recipient] == 50
            assert client.r.c.count_documents({}) == 100
            assert sorted(d["k"] for d in client.r.c.find()) == list(range(100))
            assert client.r.c.count_documents({"k": {"$gte": 50}}) == 50
            client.r.c.insert_one({"_id": "marker", "k": 1000})
            ev = drain(routed, 1)[0]
            assert ev["documentKey"] == {"k": 1000, "_id": "marker"}
            assert routed.try_next() is None  # the migration's copies are not events
            for w in watches:
                seen = [w.try_next() for _ in range(3)]
                assert all(e is None or e["documentKey"]["_id"] == "marker" for e in seen), seen
                w.close()
            for c in direct_streams:
                c.close()
        # _waitForDelete: the range deleter runs before the reply
        client.admin.command("split", "r.c", middle={"k": 25})
        client.admin.command("moveChunk", "r.c", find={"k": 30}, to=other, _waitForDelete=True)
        counts = shard_counts(cluster, "r", "c")
        assert counts[donor] == 75 and counts[recipient] == 76  # plus the marker
        assert client.r.c.count_documents({}) == 101
        chunks = chunks_of(client, "r.c")
        assert [(c["min"]["k"], c["shard"]) for c in chunks][1:] == [(25, other), (50, other)]
        assert all(isinstance(c["lastmod"], bson.Timestamp) for c in chunks)
    finally:
        client.close()


def test_merged_change_stream_order_and_resume_through_the_router(cluster):
    client = cluster.client()
    try:
        client.admin.command("shardCollection", "cs.c", key={"_id": "hashed"})
        with client.cs.c.watch(max_await_time_ms=200) as s:
            for i in range(30):
                client.cs.c.insert_one({"_id": i})
            evs = drain(s, 30)
        assert [e["documentKey"]["_id"] for e in evs] == list(range(30))
        times = [e["clusterTime"] for e in evs]
        assert times == sorted(times) and len(set(times)) == 30
        tokens = [e["_id"]["_data"] for e in evs]
        assert tokens == sorted(tokens)
        # the documents came from every shard
        chunks = chunks_of(client, "cs.c")
        assert {owner(chunks, "_id", mongo_hash(i)) for i in range(30)} == {"shard0", "shard1",
                                                                            "shard2"}
        for k in (0, 11, 28):
            with client.cs.c.watch(resume_after=evs[k]["_id"], max_await_time_ms=200) as s2:
                again = drain(s2, 29 - k)
            assert [e["_id"] for e in again] == [e["_id"] for e in evs[k + 1:]]
        with client.cs.c.watch(start_at_operation_time=times[5], max_await_time_ms=200) as s3:
            assert [e["documentKey"]["_id"] for e in drain(s3, 25)] == list(range(5, 30))
        with client.cs.watch(max_await_time_ms=200) as dbs, \
                client.watch(max_await_time_ms=200) as whole:
            client.cs.other.insert_one({"_id": "x"})
            client.cs.c.delete_one({"_id": 3})
            assert [e["operationType"] for e in drain(dbs, 2)] == ["insert", "delete"]
            assert [e["ns"]["coll"] for e in drain(whole, 2)] == ["other", "c"]
    finally:
        client.close()


def test_an_idle_shard_holds_the_merged_stream_until_its_no_op(mongosim_factory):
    # MongoDB's periodicNoopIntervalSecs default: an event on one shard waits
    # for the other shards' high-water marks, which move only with a write or
    # their no-op; writes on the other shards release it at once
    cluster = mongosim_factory("--periodic-noop-interval-secs", "10")
    client = cluster.client()
    try:
        client.admin.command("shardCollection", "idle.c", key={"_id": "hashed"})
        chunks = chunks_of(client, "idle.c")
        per_shard = {}
        for i in range(1000):
            per_shard.setdefault(owner(chunks, "_id", mongo_hash(i)), i)
        db = client.idle
        first = db.command("aggregate", "c", pipeline=[{"$changeStream": {}}], cursor={})
        cid = first["cursor"]["id"]

        def get_more(ms):
            return db.command(SON([("getMore", bson.Int64(cid)), ("collection", "c"),
                                   ("maxTimeMS", ms)]))["cursor"]["nextBatch"]

        db.c.insert_one({"_id": per_shard["shard0"]})
        assert get_more(300) == [], "returned before the idle shards' high-water marks moved"
        # writes on the other shards move their high-water marks past it: released at once
        t1 = time.monotonic()
        db.c.insert_one({"_id": per_shard["shard1"]})
        db.c.insert_one({"_id": per_shard["shard2"]})
        got = []
        while not got and time.monotonic() - t1 < 30:
            got = get_more(200)
        assert [e["documentKey"]["_id"] for e in got][:1] == [per_shard["shard0"]]
        assert time.monotonic() - t1 < 3.0
        # the last write waits for the others' no-ops (within two 10 s intervals)
        while len(got) < 3 and time.monotonic() - t1 < 30:
            got += get_more(1000)
        assert [e["documentKey"]["_id"] for e in got] == [per_shard[s] for s in
                                                          ("shard0", "shard1", "shard2")]
        db.command("killCursors", "c", cursors=[bson.Int64(cid)])
    finally:
        client.close()


def test_update_lookup_follows_a_migrated_document(cluster):
    client = cluster.client()
    try:
        client.admin.command("shardCollection", "ul.c", key={"k": 1})
        client.ul.c.insert_many([{"_id": i, "k": i} for i in range(10)])
        primary = client.config.databases.find_one({"_id": "ul"})["primary"]
        other = next(s for s in ("shard0", "shard1", "shard2") if s != primary)
        with client.ul.c.watch(full_document="updateLookup", max_await_time_ms=200) as s:
            client.ul.c.update_one({"_id": 3, "k": 3}, {"$set": {"v": "new"}})
            client.admin.command("moveChunk", "ul.c", find={"k": 3}, to=other,
                                 _waitForDelete=True)
            ev = drain(s, 1)[0]
        assert ev["operationType"] == "update"
        assert ev["documentKey"] == {"k": 3, "_id": 3}
        assert ev["fullDocument"] == {"_id": 3, "k": 3, "v": "new"}
    finally:
        client.close()


def test_transactions_across_shards_commit_as_one(cluster):
    client = cluster.client()
    try:
        client.admin.command("shardCollection", "tx.c", key={"_id": "hashed"})
        chunks = chunks_of(client, "tx.c")
        ids = {}
        for i in range(1000):
            ids.setdefault(owner(chunks, "_id", mongo_hash(i)), i)
        with client.tx.c.watch(max_await_time_ms=200) as s:
            with client.start_session() as sess:
                sess.start_transaction()
                for shard in ("shard0", "shard1", "shard2"):
                    client.tx.c.insert_one({"_id": ids[shard]}, session=sess)
                assert client.tx.c.count_documents({}) == 0  # nothing before the commit
                assert client.tx.c.count_documents({}, session=sess) == 3
                sess.commit_transaction()
            evs = drain(s, 3)
            assert len({e["clusterTime"] for e in evs}) == 1  # one commit time
            assert all("lsid" in e and "txnNumber" in e for e in evs)
            assert len({e["_id"]["_data"] for e in evs}) == 3
            with client.start_session() as sess:
                sess.start_transaction()
                client.tx.c.delete_many({}, session=sess)
                sess.abort_transaction()
        assert client.tx.c.count_documents({}) == 3
    finally:
        client.close()


def test_write_freeze_through_the_router_blocks_every_shard(cluster):
    client = cluster.client(retryWrites=False)
    directs = [cluster.shard_client(i, retryWrites=False) for i in range(cluster.nshards)]
    try:
        client.admin.command("shardCollection", "fz.c", key={"_id": "hashed"})
        client.fz.c.insert_many([{"_id": i} for i in range(30)])
        fence = client.admin.command({"setUserWriteBlockMode": 1, "global": True})[
            "operationTime"]
        for d in directs:
            assert d.admin.command("ping")["operationTime"] <= fence
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                d.fz.other.insert_one({"_id": 1})
            assert exc.value.code == 371
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            client.fz.c.insert_one({"_id": 100})
        assert exc.value.code == 371
        client.admin.command({"setUserWriteBlockMode": 1, "global": False})
        client.fz.c.insert_one({"_id": 1000})
    finally:
        client.admin.command({"setUserWriteBlockMode": 1, "global": False})
        for d in directs:
            d.close()
        client.close()


def test_unsharded_collections_live_on_the_database_primary(cluster):
    client = cluster.client()
    try:
        client.un.c.insert_many([{"_id": i} for i in range(500)])
        primary = client.config.databases.find_one({"_id": "un"})["primary"]
        counts = shard_counts(cluster, "un", "c")
        assert counts[int(primary[-1])] == 500 and sum(counts) == 500
        # cursors pass through the router
        assert [d["_id"] for d in client.un.c.find().batch_size(7)] == list(range(500))
        assert client.config.collections.find_one({"_id": "un.c"}) is None
        cs = client.un.command("collStats", "c")
        assert cs["sharded"] is False and cs["primary"] == primary and cs["count"] == 500
        dbs = {d["name"] for d in client.list_databases()}
        assert "un" in dbs
    finally:
        client.close()


def test_list_databases_merges_every_shards_databases(cluster):
    # 300 databases, spread over the shards as their primaries: all listed, sizes summed
    client = cluster.client()
    try:
        names = [f"many{i:03d}" for i in range(300)]
        for n in names:
            client[n].c.insert_one({"_id": 1, "pad": "x" * 100})
        reply = client.admin.command("listDatabases")
        listed = {d["name"]: d for d in reply["databases"]}
        assert set(names) <= set(listed)
        assert all(listed[n]["sizeOnDisk"] > 0 for n in names)
        assert reply["totalSize"] == sum(d["sizeOnDisk"] for d in reply["databases"])
        primaries = {d["primary"] for d in client.config.databases.find({"_id": {"$in": names}})}
        assert len(primaries) == cluster.nshards
    finally:
        client.close()


def test_balancer_spreads_chunks(mongosim_factory):
    cluster = mongosim_factory("--balancer-interval-secs", "1")
    client = cluster.client()
    try:
        client.admin.command("balancerStop")
        assert client.admin.command("balancerStatus")["mode"] == "off"
        client.bal.c.insert_many([{"_id": i, "k": i} for i in range(120)])
        client.bal.c.create_index("k")
        client.admin.command("shardCollection", "bal.c", key={"k": 1})
        for m in range(10, 120, 10):
            client.admin.command("split", "bal.c", middle={"k": m})
        assert {c["shard"] for c in chunks_of(client, "bal.c")} == {
            client.config.databases.find_one({"_id": "bal"})["primary"]}
        time.sleep(2.5)  # stopped: nothing moves
        assert len({c["shard"] for c in chunks_of(client, "bal.c")}) == 1
        client.admin.command("balancerStart")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            per = {}
            for c in chunks_of(client, "bal.c"):
                per[c["shard"]] = per.get(c["shard"], 0) + 1
            if len(per) == 3 and max(per.values()) - min(per.values()) <= 1:
                break
            time.sleep(0.5)
        assert len(per) == 3 and max(per.values()) - min(per.values()) <= 1, per
        assert client.admin.command("balancerStatus")["numBalancerRounds"] > 0
        assert client.bal.c.count_documents({}) == 120
        assert sorted(d["k"] for d in client.bal.c.find()) == list(range(120))
    finally:
        client.close()


def test_concurrent_writes_during_migrations_lose_nothing(mongosim_factory):
    cluster = mongosim_factory("--balancer-interval-secs", "1")
    client = cluster.client()
    stop = threading.Event()
    errors = []
    written = []

    def writer(k):
        c = cluster.client(retryWrites=False)
        n = 0
        try:
            while not stop.is_set():
                c.mig.c.insert_one({"_id": f"{k}-{n}", "k": (k * 1000 + n) % 200})
                written.append(f"{k}-{n}")
                n += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            c.close()

    try:
        client.mig.c.create_index("k")
        client.admin.command("shardCollection", "mig.c", key={"k": 1})
        for m in range(20, 200, 20):
            client.admin.command("split", "mig.c", middle={"k": m})
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(6)  # the balancer migrates chunks meanwhile
        stop.set()
        for t in threads:
            t.join(10)
        assert errors == []
        assert len({c["shard"] for c in chunks_of(client, "mig.c")}) == 3
        got = sorted(d["_id"] for d in client.mig.c.find({}, {"_id": 1}))
        assert got == sorted(written) and len(written) > 50
    finally:
        stop.set()
        client.close()


USERS = ("--auth", "root:rootpw", "--auth", "app:pw:readWrite@shop",
         "--auth", "ops:pw:clusterManager,clusterMonitor")


def test_sharding_commands_need_their_privileges(mongosim_factory):
    cluster = mongosim_factory(*USERS)

    def login(user, pw="pw"):
        return pymongo.MongoClient(cluster.host, cluster.port, username=user, password=pw,
                                   authSource="admin", serverSelectionTimeoutMS=5000)

    root, app, ops = login("root", "rootpw"), login("app"), login("ops")
    try:
        root.admin.command("shardCollection", "shop.c", key={"_id": "hashed"})
        app.shop.c.insert_many([{"_id": i} for i in range(20)])
        assert app.shop.c.count_documents({}) == 20
        for cmd in (lambda: app.admin.command("listShards"),
                    lambda: app.admin.command("moveChunk", "shop.c", find={"_id": 1},
                                              to="shard0"),
                    lambda: app.admin.command("shardCollection", "shop.d", key={"_id": 1})):
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                cmd()
            assert exc.value.code == 13
        assert len(ops.admin.command("listShards")["shards"]) == 3
        ops.admin.command("moveChunk", "shop.c", find={"_id": 1}, to="shard2")
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            app.watch()  # a deployment-wide stream needs any-database privileges here too
        assert exc.value.code == 13
    finally:
        for c in (root, app, ops):
            c.close()


def test_cross_database_rename_needs_one_primary(cluster):
    client = cluster.client()
    try:
        # spread two databases over different primaries
        client.ra.c.insert_one({"_id": 1})
        client.rb.c.insert_one({"_id": 1})
        pa = client.config.databases.find_one({"_id": "ra"})["primary"]
        pb = client.config.databases.find_one({"_id": "rb"})["primary"]
        assert pa != pb
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            client.admin.command("renameCollection", "ra.c", to="rb.d")
        assert exc.value.code == 20
        client.admin.command("renameCollection", "ra.c", to="ra.d")
        assert client.ra.d.find_one() == {"_id": 1}
    finally:
        client.close()
