"""tests/integration/mongosim/test_bad_input.py - malformed and oversize messages, unknown
commands and operators get error replies (ok: 0, errmsg, code), never a crash or a hang."""

import os
import random
import socket
import struct

import bson
import pytest

from msim_service import OP_MSG, op_msg, raw_connect, read_reply, recv_exact


def header(length, opcode=OP_MSG, request_id=9):
    return struct.pack("<iiii", length, request_id, 0, opcode)


def ping(sock):
    sock.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=77))
    _, response_to, doc = read_reply(sock)
    assert response_to == 77 and doc["ok"] == 1.0


def expect_error(sock, msg, code=None, text=None):
    sock.sendall(msg)
    _, _, doc = read_reply(sock)
    assert doc["ok"] == 0.0, doc
    assert isinstance(doc["code"], int) and doc["errmsg"] and doc["codeName"]
    if code is not None:
        assert doc["code"] == code, doc
    if text is not None:
        assert text in doc["errmsg"], doc
    return doc


@pytest.fixture
def server(mongosim_factory):
    s = mongosim_factory()
    yield s
    # whatever a test sent, the server must still answer
    with raw_connect(s) as sock:
        ping(sock)


def test_too_short_length_answers_and_closes(server):
    with raw_connect(server) as sock:
        sock.sendall(header(8) + b"\x00" * 4)
        _, _, doc = read_reply(sock)
        assert doc["ok"] == 0.0 and "msgLen" in doc["errmsg"]
        with pytest.raises((EOFError, ConnectionResetError)):
            recv_exact(sock, 1)


def test_oversize_length_answers_and_closes(server):
    with raw_connect(server) as sock:
        sock.sendall(header(48000001))
        _, _, doc = read_reply(sock)
        assert doc["ok"] == 0.0 and "48000000" in doc["errmsg"]


def test_bad_bson_keeps_the_connection(server):
    with raw_connect(server) as sock:
        body = struct.pack("<I", 0) + b"\x00" + struct.pack("<i", 50) + b"\x02a\x00junk"
        expect_error(sock, header(16 + len(body)) + body, code=22)
        ping(sock)
        doc = bson.encode({"ping": 1, "$db": "admin"})
        broken = doc[:-1] + b"\x01"  # missing terminator
        body = struct.pack("<I", 0) + b"\x00" + broken
        expect_error(sock, header(16 + len(body)) + body, code=22)
        ping(sock)
        string_overrun = bytearray(bson.encode({"s": "abc", "$db": "admin"}))
        string_overrun[7:11] = struct.pack("<i", 1000)
        body = struct.pack("<I", 0) + b"\x00" + bytes(string_overrun)
        expect_error(sock, header(16 + len(body)) + body, code=22)
        ping(sock)


def test_unknown_opcode_and_flags_and_sections(server):
    with raw_connect(server) as sock:
        expect_error(sock, header(20, opcode=2001) + b"\x00" * 4, code=9, text="opcode")
        ping(sock)
        expect_error(sock, op_msg({"ping": 1, "$db": "admin"}, flags=1 << 4), code=9,
                     text="flags")
        body = struct.pack("<I", 0) + b"\x07" + bson.encode({"ping": 1})
        expect_error(sock, header(16 + len(body)) + body, code=9, text="section kind")
        body = struct.pack("<I", 0)
        expect_error(sock, header(16 + len(body)) + body, code=9)
        expect_error(sock, header(20, opcode=2012) + b"\x00" * 4, code=9, text="OP_COMPRESSED")
        ping(sock)


def test_missing_db_unknown_command_empty_command(server):
    with raw_connect(server) as sock:
        expect_error(sock, op_msg({"ping": 1}), code=40571, text="$db")
        expect_error(sock, op_msg({"frobnicate": 1, "$db": "x"}), code=59, text="frobnicate")
        expect_error(sock, op_msg({}), code=9)
        ping(sock)


def nested_bson(depth):
    """nested_bson returns {"a": {"a": ... {"x": 1}}} as bytes (Python's encoder recurses)."""
    doc = bson.encode({"x": 1})
    for _ in range(depth):
        body = b"\x03a\x00" + doc + b"\x00"
        doc = struct.pack("<i", 4 + len(body)) + body
    return doc


def test_too_deeply_nested(server):
    for depth in (250, 5000):
        inner = nested_bson(depth)
        body = struct.pack("<I", 0) + b"\x00" + bson.encode({"insert": "c", "$db": "deep"})
        seq = b"documents\x00" + inner
        body += b"\x01" + struct.pack("<i", 4 + len(seq)) + seq
        with raw_connect(server) as sock:
            expect_error(sock, header(16 + len(body)) + body, code=22, text="depth")
            ping(sock)


def test_unsupported_operators_and_stages(server):
    with raw_connect(server) as sock:
        expect_error(sock, op_msg({"find": "c", "filter": {"a": {"$geoWithin": {}}}, "$db": "x"}),
                     code=2, text="$geoWithin")
        expect_error(sock, op_msg({"aggregate": "c", "pipeline": [{"$lookup": {}}], "cursor": {},
                                   "$db": "x"}), code=115, text="$lookup")
        sock.sendall(op_msg({"update": "c", "updates": [{"q": {}, "u": {"$x": {"a": 1}}}],
                             "$db": "x"}))
        _, _, doc = read_reply(sock)
        assert doc["ok"] == 1.0 and doc["writeErrors"][0]["code"] == 9  # a write error
        assert "$x" in doc["writeErrors"][0]["errmsg"]
        ping(sock)


def test_random_garbage_never_kills_the_server(server):
    rng = random.Random(1234)
    valid = op_msg({"insert": "g", "documents": [{"_id": 1, "a": [1, {"b": "c"}]}], "$db": "g"})
    for i in range(300):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(16, len(data))
            data[pos] = rng.randrange(256)
        with raw_connect(server, timeout=5) as sock:
            sock.sendall(bytes(data))
            try:
                read_reply(sock)
            except (EOFError, ConnectionResetError, socket.timeout, AssertionError):
                pass
    for i in range(50):
        junk = os.urandom(rng.randint(0, 200))
        with raw_connect(server, timeout=2) as sock:
            sock.sendall(header(16 + len(junk)) + junk)
            try:
                read_reply(sock)
            except (EOFError, ConnectionResetError, socket.timeout, AssertionError):
                pass
