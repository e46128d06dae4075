#!/usr/bin/env python3
"""Independent cross-check of kappalog's tlog-witness answers (issue 22).

Written from the C2SP texts (tlog-witness `add-checkpoint`, signed-note, tlog-checkpoint,
tlog-cosignature) and RFC 9162, not from the Rust code. Reads the JSON file named on the
command line (written by tests/it/tlog_witness.rs): the log's vkey, the witness's vkey and a
sequence of exchanges, each a request body and the status and body kappalog's witness
answered. This script plays a witness of its own over the same requests, in order, and exits
non-zero on the first answer it would not have given, naming it.

kappalog's own limit on tree sizes (2^62 leaves, 422 above it) is not in the spec, so the
exchanges stay below it.

Needs python3 and the `cryptography` package (Debian: python3-cryptography).
"""

import binascii
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tlog_note import EM_DASH, Disagreement, b64decode_strict, key_id, verify_ed25519  # noqa: E402
from tlog_tree import verify_consistency  # noqa: E402

EMPTY_ROOT = hashlib.sha256(b"").digest()
TYPE_ED25519, TYPE_COSIGNATURE_V1 = 0x01, 0x04


class Malformed(Exception):
    """The request breaks the body's grammar: 400."""


def b64(text):
    try:
        return b64decode_strict(text)
    except (binascii.Error, Disagreement) as e:
        raise Malformed("bad base64 %r: %s" % (text, e))


def decimal(text):
    # "an ASCII decimal with no leading zeroes (unless the size is zero)"
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise Malformed("not a decimal: %r" % text)
    return int(text)


def parse_vkey(text):
    name, kid, material = text.split("+", 2)
    raw = b64(material)
    sig_type, public = raw[0], raw[1:]
    assert key_id(name, sig_type, public).hex() == kid, "vkey key ID"
    return name, sig_type, public


def parse_request(body):
    """tlog-witness: 'old N' line, proof lines, an empty line, the checkpoint note."""
    first, sep, rest = body.partition("\n")
    if not sep or not first.startswith("old "):
        raise Malformed("no old size line")
    old = decimal(first[4:])
    proof = []
    while True:
        line, sep, rest = rest.partition("\n")
        if not sep:
            raise Malformed("no empty line")
        if line == "":
            break
        hash_ = b64(line)
        if len(hash_) != 32:
            raise Malformed("proof line is not a 32-byte hash")
        proof.append(hash_)
    if len(proof) > 63:
        raise Malformed("more than 63 proof lines")
    note = rest
    if "\n\n" not in note or not note.endswith("\n"):
        raise Malformed("not a signed note")
    split = note.rindex("\n\n")
    text, sig_block = note[: split + 1], note[split + 2 :]
    signatures = []
    for line in sig_block.split("\n")[:-1]:
        if not line.startswith(EM_DASH + " ") or line.count(" ") != 2:
            raise Malformed("bad signature line")
        name, encoded = line[2:].split(" ")
        raw = b64(encoded)
        signatures.append((name, raw[:4], raw[4:]))
    lines = text.split("\n")
    if len(lines) < 4:
        raise Malformed("checkpoint too short")
    origin, size, root = lines[0], decimal(lines[1]), b64(lines[2])
    if len(root) != 32:
        raise Malformed("root is not 32 bytes")
    return old, proof, text, signatures, origin, size, root


class Witness:
    def __init__(self, log_vkey, witness_vkey):
        self.log = parse_vkey(log_vkey)
        self.witness = parse_vkey(witness_vkey)
        assert self.log[1] == TYPE_ED25519 and self.witness[1] == TYPE_COSIGNATURE_V1
        self.latest = (0, EMPTY_ROOT)

    def expect(self, body):
        """The status this witness would answer, and (size, root) if it would cosign."""
        try:
            old, proof, text, sigs, origin, size, root = parse_request(body)
        except Malformed:
            return 400, None
        name, _, public = self.log
        if origin != name:
            return 404, None
        log_kid = key_id(name, TYPE_ED25519, public)
        known = [s for (n, kid, s) in sigs if n == name and kid == log_kid]
        if not known or not all(verify_ed25519(public, s, text.encode()) for s in known):
            return 403, None
        if old > size:
            return 400, None
        latest_size, latest_root = self.latest
        if old != latest_size:
            return 409, None
        if size == 0 and root != EMPTY_ROOT:
            return 422, None
        if old == 0 and proof:
            return 422, None
        if old == size and (root != latest_root or proof):
            return 422, None
        if 0 < old < size and not verify_consistency(old, size, latest_root, root, proof):
            return 422, None
        return 200, (size, root, text)

    def check_cosignature(self, answer, text):
        name, _, public = self.witness
        lines = answer.split("\n")
        assert len(lines) == 2 and lines[1] == "", "one newline-terminated line"
        assert lines[0].startswith(EM_DASH + " " + name + " "), "the witness's name"
        raw = b64decode_strict(lines[0].split(" ")[2])
        assert raw[:4] == key_id(name, TYPE_COSIGNATURE_V1, public), "cosignature key ID"
        assert len(raw) == 4 + 72, "a timestamped signature"
        timestamp = int.from_bytes(raw[4:12], "big")
        assert 0 < timestamp < 2**63, "timestamp present and below 2^63"
        message = b"cosignature/v1\ntime %d\n" % timestamp + text.encode()
        assert verify_ed25519(public, raw[12:], message), "cosignature verifies"


def main():
    with open(sys.argv[1]) as f:
        v = json.load(f)
    witness = Witness(v["log_vkey"], v["witness_vkey"])
    for i, exchange in enumerate(v["exchanges"]):
        status, cosigned = witness.expect(exchange["request"])
        if status != exchange["status"]:
            print("DISAGREE: exchange %d: expected %d, kappalog answered %d (%s)"
                  % (i, status, exchange["status"], exchange["body"].strip()))
            return 1
        try:
            if status == 409:
                assert exchange["body"] == "%d\n" % witness.latest[0], "409 body is the latest size"
            if status == 200:
                witness.check_cosignature(exchange["body"], cosigned[2])
                witness.latest = cosigned[:2]
        except AssertionError as e:
            print("DISAGREE: exchange %d: %s" % (i, e))
            return 1
        print("ok: exchange %d answered %d" % (i, status))
    print("ok: %d exchanges" % len(v["exchanges"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
