"""tests/integration/mongosim/test_privileges.py - built-in roles as narrow as MongoDB's: a
deployment-wide change stream needs find + changeStream on every database (the "any normal
resource", e.g. readAnyDatabase), so a per-database readWrite user gets Unauthorized (13) but
can watch its own database; listDatabases, $collStats, serverStatus, replSetGetStatus and
getParameter need what mongod requires; connectionStatus and usersInfo show the privileges;
cursors belong to the user that opened them."""

import subprocess

import pymongo
import pytest

from msim_service import mongosim_binary

USERS = ("--auth", "root:rootpw",
         "--auth", "app:pw:readWrite@shop",
         "--auth", "reader:pw:read@shop",
         "--auth", "anyreader:pw:readAnyDatabase",
         "--auth", "mon:pw:clusterMonitor",
         "--auth", "dba:pw:dbAdmin@shop",
         "--auth", "local@shop:pw:readWrite")


@pytest.fixture(scope="module")
def server(session_services):
    from msim_service import MongosimInstance
    srv = session_services.add(MongosimInstance(session_services.root, name="privileges",
                                                args=USERS))
    root = login(srv, "root", "rootpw")
    root.shop.orders.insert_many([{"_id": i} for i in range(3)])
    root.other.things.insert_one({"_id": 1})
    root.close()
    return srv


def login(server, user, password="pw", source="admin"):
    return pymongo.MongoClient(server.host, server.port, username=user, password=password,
                               authSource=source, serverSelectionTimeoutMS=5000,
                               retryWrites=False, retryReads=False)


@pytest.fixture
def as_user(server):
    clients = []

    def make(user, password="pw", source="admin"):
        c = login(server, user, password, source)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def denied(fn):
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        fn()
    assert exc.value.code == 13, exc.value.details
    return exc.value


def watch_cluster(client):
    return client.admin.command("aggregate", 1, pipeline=[
        {"$changeStream": {"allChangesForCluster": True}}], cursor={})


def test_deployment_stream_needs_any_database_privileges(as_user):
    app = as_user("app")
    err = denied(lambda: watch_cluster(app))
    assert "not authorized on admin" in err.details["errmsg"]
    denied(lambda: watch_cluster(as_user("reader")))
    assert "cursor" in watch_cluster(as_user("anyreader"))
    assert "cursor" in watch_cluster(as_user("root", "rootpw"))


def test_database_stream_on_its_own_database(as_user):
    app = as_user("app")
    with app.shop.watch(max_await_time_ms=100) as s:
        assert s.try_next() is None
    with app.shop.orders.watch(max_await_time_ms=100) as s:
        assert s.try_next() is None
    denied(lambda: app.other.watch())
    denied(lambda: app.other.things.watch())
    reader = as_user("reader")  # read carries changeStream too
    with reader.shop.watch(max_await_time_ms=100) as s:
        assert s.try_next() is None
    denied(lambda: as_user("mon").shop.watch())  # clusterMonitor: no find/changeStream


def test_crud_is_limited_to_the_granted_database(as_user):
    app, reader = as_user("app"), as_user("reader")
    assert app.shop.orders.count_documents({}) == 3
    app.shop.scratch.insert_one({"_id": 1})
    denied(lambda: app.other.things.find_one())
    denied(lambda: app.other.things.insert_one({"_id": 2}))
    assert reader.shop.orders.find_one({"_id": 0}) == {"_id": 0}
    denied(lambda: reader.shop.orders.insert_one({"_id": 9}))
    denied(lambda: reader.shop.orders.update_one({"_id": 0}, {"$set": {"x": 1}}))
    denied(lambda: app.admin.command("renameCollection", "shop.scratch", to="other.scratch"))
    app.admin.command("renameCollection", "shop.scratch", to="shop.scratch2")
    # a user defined on shop (authSource=shop) with readWrite has it on shop
    local = as_user("local", source="shop")
    assert local.shop.orders.count_documents({}) == 3
    denied(lambda: local.other.things.find_one())


def test_list_databases_shows_what_the_user_may_see(as_user):
    app = as_user("app")
    names = app.list_database_names()
    assert names == ["shop"]
    denied(lambda: app.admin.command("listDatabases", authorizedDatabases=False))
    assert {"shop", "other"} <= set(as_user("anyreader").list_database_names())
    assert {"shop", "other"} <= set(as_user("mon").list_database_names())
    root = as_user("root", "rootpw")
    only = root.admin.command("listDatabases", nameOnly=True, authorizedDatabases=True)
    assert {"shop", "other"} <= {d["name"] for d in only["databases"]}


def test_coll_stats_and_catalog(as_user):
    app = as_user("app")
    stats = list(app.shop.orders.aggregate([{"$collStats": {"count": {}}}]))
    assert stats[0]["count"]["count"] == 3
    denied(lambda: list(app.other.things.aggregate([{"$collStats": {"count": {}}}])))
    mon = as_user("mon")  # clusterMonitor: collStats on every database, no find
    assert list(mon.other.things.aggregate([{"$collStats": {"count": {}}}]))[0]["count"][
        "count"] == 1
    denied(lambda: mon.other.things.find_one())
    assert "orders" in app.shop.list_collection_names()
    denied(lambda: app.other.list_collection_names())
    dba = as_user("dba")  # dbAdmin: catalog but no reads
    assert "orders" in dba.shop.list_collection_names()
    dba.shop.command("collStats", "orders")
    denied(lambda: dba.shop.orders.find_one())


def test_server_commands(as_user):
    app, mon, root = as_user("app"), as_user("mon"), as_user("root", "rootpw")
    for cmd in ("serverStatus", "replSetGetStatus"):
        denied(lambda: app.admin.command(cmd))
        assert mon.admin.command(cmd)["ok"] == 1
        assert root.admin.command(cmd)["ok"] == 1
    denied(lambda: app.admin.command("getParameter", 1, featureCompatibilityVersion=1))
    assert mon.admin.command("getParameter", 1, featureCompatibilityVersion=1)["ok"] == 1
    # hello and buildInfo need nothing
    assert app.admin.command("hello")["isWritablePrimary"] is True
    assert app.admin.command("buildInfo")["ok"] == 1


def test_connection_status_shows_the_narrow_privileges(as_user):
    status = as_user("app").admin.command("connectionStatus", showPrivileges=True)["authInfo"]
    assert status["authenticatedUsers"] == [{"user": "app", "db": "admin"}]
    assert status["authenticatedUserRoles"] == [{"role": "readWrite", "db": "shop"}]
    privs = status["authenticatedUserPrivileges"]
    shop = [p for p in privs if p["resource"] == {"db": "shop", "collection": ""}]
    assert shop and {"find", "changeStream", "insert", "update", "remove"} <= set(
        shop[0]["actions"])
    assert not any(p["resource"].get("cluster") or p["resource"] == {"db": "", "collection": ""}
                   for p in privs)
    any_status = as_user("anyreader").admin.command("connectionStatus", showPrivileges=True)
    any_privs = any_status["authInfo"]["authenticatedUserPrivileges"]
    normal = [p for p in any_privs if p["resource"] == {"db": "", "collection": ""}]
    assert normal and {"find", "changeStream"} <= set(normal[0]["actions"])


def test_users_info(as_user):
    app = as_user("app")
    me = app.admin.command("usersInfo", "app")["users"]
    assert [(u["user"], u["db"]) for u in me] == [("app", "admin")]
    assert me[0]["roles"] == [{"role": "readWrite", "db": "shop"}]
    assert me[0]["mechanisms"] == ["SCRAM-SHA-256"]
    denied(lambda: app.admin.command("usersInfo", "root"))
    denied(lambda: app.admin.command("usersInfo", 1))
    root = as_user("root", "rootpw")
    everyone = root.admin.command("usersInfo", {"forAllDBs": True})["users"]
    assert {(u["user"], u["db"]) for u in everyone} == {
        ("root", "admin"), ("app", "admin"), ("reader", "admin"), ("anyreader", "admin"),
        ("mon", "admin"), ("dba", "admin"), ("local", "shop")}
    shown = root.admin.command("usersInfo", {"user": "anyreader", "db": "admin"},
                               showPrivileges=True)["users"][0]
    assert any(p["resource"] == {"cluster": True} and "listDatabases" in p["actions"]
               for p in shown["inheritedPrivileges"])


def test_cursors_belong_to_their_user(server, as_user):
    app, local = as_user("app"), as_user("local", source="shop")
    reply = app.shop.command("find", "orders", batchSize=1)
    cid = reply["cursor"]["id"]
    assert cid != 0
    err = denied(lambda: local.shop.command("getMore", cid, collection="orders"))
    assert "not created by the authenticated user" in err.details["errmsg"]
    assert len(app.shop.command("getMore", cid, collection="orders")["cursor"]["nextBatch"]) == 2


@pytest.mark.parametrize("spec", ["u:p:readAnyDatabase@shop", "u@shop:p", "u:p:read@shop,root@x"])
def test_bad_role_specs_are_refused(spec):
    # an admin-only role on another database, a user outside admin without
    # roles (root exists only on admin): refused at start-up, exit code 2
    proc = subprocess.run([mongosim_binary(), "--port", "0", "--auth", spec], capture_output=True,
                          text=True, timeout=10)
    assert proc.returncode == 2, proc.stderr
    assert "--auth" in proc.stderr
