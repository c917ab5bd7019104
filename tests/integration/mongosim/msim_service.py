"""tests/integration/mongosim/msim_service.py - raw wire-protocol helpers of the mongosim suite.

The server itself is started with the harness's MongosimInstance
(mgharness/mongosim.py), re-exported here together with mongosim_binary.
"""

import socket
import struct

import bson

from mgharness.mongosim import MongosimInstance, mongosim_binary  # noqa: F401 (re-exported)


# ---------------------------------------------------------------------------
# Raw wire protocol, for handshake and bad-input tests
# ---------------------------------------------------------------------------

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013


def op_msg(body, request_id=1, flags=0, sequences=(), checksum=False):
    """op_msg returns the bytes of an OP_MSG with a kind 0 body and kind 1 sequences."""
    payload = b"\x00" + bson.encode(body)
    for ident, docs in sequences:
        seq = ident.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
        payload += b"\x01" + struct.pack("<i", 4 + len(seq)) + seq
    if checksum:
        flags |= 1
    msg = struct.pack("<I", flags) + payload
    if checksum:
        msg += b"\x00\x00\x00\x00"
    return struct.pack("<iiii", 16 + len(msg), request_id, 0, OP_MSG) + msg


def op_query(ns, query, request_id=1):
    """op_query returns the bytes of a legacy OP_QUERY (the old handshake)."""
    body = struct.pack("<i", 0) + ns.encode() + b"\x00" + struct.pack("<ii", 0, -1)
    body += bson.encode(query)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, OP_QUERY) + body


def recv_exact(sock, n):
    """recv_exact reads n bytes or raises EOFError."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_reply(sock):
    """read_reply reads one reply; returns (opcode, response_to, document)."""
    header = recv_exact(sock, 16)
    length, _, response_to, opcode = struct.unpack("<iiii", header)
    body = recv_exact(sock, length - 16)
    if opcode == OP_MSG:
        assert body[4] == 0, "reply must be a kind 0 section"
        return opcode, response_to, bson.decode(body[5:])
    if opcode == OP_REPLY:
        return opcode, response_to, bson.decode(body[20:])
    raise AssertionError(f"unexpected reply opcode {opcode}")


def raw_connect(instance, timeout=5.0):
    """raw_connect opens a plain TCP connection to the instance."""
    sock = socket.create_connection((instance.host, instance.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock
