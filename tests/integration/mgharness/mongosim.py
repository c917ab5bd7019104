"""tests/integration/mgharness/mongosim.py - mongosim as a harness Service.

MongosimInstance starts build/bin/mongosim (tests/mongosim, our MongoDB
wire-protocol server) on a free 127.0.0.1 port with the harness's
guarantees: own process group, PR_SET_PDEATHSIG, bounded teardown, a temp
directory. Extra command-line options go in `args` (e.g. ["--auth",
"user:pw"], ["--oplog-size-mb", "1"]).
"""

import os

from .paths import build_path
from .ports import LOOPBACK, port_is_listening
from .service import Service


def mongosim_binary():
    """mongosim_binary returns the path of the built mongosim."""
    return os.environ.get("MG_MONGOSIM_BINARY") or build_path("bin", "mongosim")


class MongosimInstance(Service):
    """MongosimInstance is one mongosim server for a test or a session.

    Attributes: host, port, args. Properties: uri, address.
    Methods: client(**kw) returns a pymongo MongoClient (imported lazily,
    so the harness itself does not need pymongo).
    """

    kind = "mongosim"
    start_timeout = 20.0

    def __init__(self, root=None, *, name=None, args=(), port_picker=None):
        super().__init__(root, name=name, port_picker=port_picker)
        self.host = LOOPBACK
        self.port = None
        self.args = list(args)

    def _assign_ports(self):
        self.port = self._pick_port()

    def _argv(self):
        return [mongosim_binary(), "--port", str(self.port), "--bind", self.host,
                "--log-format", "json"] + self.args

    def _ready(self):
        return port_is_listening(self.port, self.host)

    @property
    def address(self):
        """address is "127.0.0.1:<port>"."""
        return f"{self.host}:{self.port}"

    @property
    def uri(self):
        """uri is a MongoDB connection string for the server."""
        return f"mongodb://{self.address}/"

    def client(self, **kwargs):
        """client returns a new pymongo MongoClient (caller closes it)."""
        import pymongo

        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        return pymongo.MongoClient(self.host, self.port, **kwargs)


class MongosimCluster(MongosimInstance):
    """MongosimCluster is mongosim as a sharded cluster: `mongosim --shards N`.

    Its port is the router's (speaking as mongos); the N shard replica sets
    listen on ports the kernel picks, read back through listShards. Extra
    options go in `args` as for MongosimInstance.

    Attributes: nshards. Methods: shards() -> [(name, host, port)],
    shard_client(i, **kw) -> a pymongo client of shard i (direct).
    """

    kind = "mongosim-cluster"

    def __init__(self, root=None, *, name=None, shards=3, args=(), port_picker=None):
        super().__init__(root, name=name, args=args, port_picker=port_picker)
        self.nshards = shards

    def _argv(self):
        return super()._argv() + ["--shards", str(self.nshards)]

    def _ready(self):
        # the router listens after the shards: once its port answers, all do
        return super()._ready()

    def shards(self):
        """shards returns [(name, host, port)] of the shard replica sets (from listShards)."""
        client = self.client()
        try:
            out = []
            for s in client.admin.command("listShards")["shards"]:
                addr = s["host"].split("/", 1)[1]
                host, port = addr.rsplit(":", 1)
                out.append((s["_id"], host, int(port)))
            return out
        finally:
            client.close()

    def shard_client(self, i, **kwargs):
        """shard_client returns a direct pymongo client of shard i (caller closes it)."""
        import pymongo

        _, host, port = self.shards()[i]
        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        return pymongo.MongoClient(host, port, **kwargs)
