#!/usr/bin/env python3
"""Independent cross-check of kappalog's transparency-log vectors (issue 22).

Written from the C2SP texts (signed-note, tlog-checkpoint, tlog-cosignature, tlog-proof) and
RFC 6962/9162, not from the Rust code. Reads the JSON file named on the command line (written
by tests/it/tlog_golden.rs), checks every claim in it, prints one line per check and exits
non-zero on the first disagreement, naming it.

Needs python3 and the `cryptography` package (Debian: python3-cryptography).
"""

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EM_DASH = "\u2014"


class Disagreement(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Disagreement(what)
    print("ok:", what)


def b64decode_strict(text):
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise Disagreement("non-canonical base64: %r" % text)
    return raw


def key_id(name, sig_type, public):
    # signed-note: SHA-256(key name || 0x0A || signature type || public key)[:4]
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def vkey(name, sig_type, public):
    # signed-note: <name>+hex(key ID)+base64(type || public key)
    material = base64.b64encode(bytes([sig_type]) + public).decode()
    return "%s+%s+%s" % (name, key_id(name, sig_type, public).hex(), material)


def parse_note(note):
    """signed-note: text, then the last blank line, then '— name base64' lines."""
    check(note.endswith("\n"), "note ends in a newline")
    check(all(c == "\n" or ord(c) >= 0x20 for c in note), "note has no control characters")
    split = note.rindex("\n\n")
    text, sig_block = note[: split + 1], note[split + 2 :]
    signatures = []
    for line in sig_block.split("\n")[:-1]:
        check(line.startswith(EM_DASH + " "), "signature line starts with an em dash")
        name, encoded = line[2:].split(" ")
        raw = b64decode_strict(encoded)
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def verify_ed25519(public, signature, message):
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        return True
    except InvalidSignature:
        return False


def leaf_hash(leaf):
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """RFC 6962 section 2.1: the Merkle Tree Hash of a list of leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def check_checkpoint(note, v, entries):
    author_pub = bytes.fromhex(v["author_public_hex"])
    witness_pub = bytes.fromhex(v["witness_public_hex"])
    text, signatures = parse_note(note)
    origin, size, root_b64 = text.split("\n")[:3]
    check(origin == "kappalog/feed/" + v["author_public_hex"], "origin is kappalog/feed/<author hex>")
    check(size == str(len(entries)), "tree size is the number of entries")
    check(b64decode_strict(root_b64) == mth([leaf_hash(e) for e in entries]), "root is the RFC 6962 root of the entries")
    seen = {}
    for name, kid, sig in signatures:
        seen[(name, kid)] = sig
    author = seen.get((origin, key_id(origin, 0x01, author_pub)))
    check(author is not None, "the author signed under the origin with the type 0x01 key ID")
    check(verify_ed25519(author_pub, author, text.encode()), "author signature verifies over the note text")
    wname = v["witness_name"]
    cosig = seen.get((wname, key_id(wname, 0x04, witness_pub)))
    check(cosig is not None and len(cosig) == 72, "a 72-byte cosignature under the type 0x04 key ID")
    timestamp = int.from_bytes(cosig[:8], "big")
    check(timestamp < 2**63, "cosignature timestamp is below 2^63")
    message = b"cosignature/v1\ntime %d\n" % timestamp + text.encode()
    check(verify_ed25519(witness_pub, cosig[8:], message), "cosignature verifies over its timestamped message")
    check(timestamp == v["cosigned_at"], "cosignature time is the vector's")


def check_proof(proof, entries):
    head, _, checkpoint_note = proof.partition("\n\n")
    lines = head.split("\n")
    check(lines[0] == "c2sp.org/tlog-proof@v1", "proof header")
    check(lines[1].startswith("extra "), "proof has an extra line")
    extra = b64decode_strict(lines[1][len("extra "):])
    check(lines[2].startswith("index "), "proof has an index line")
    index = int(lines[2][len("index "):])
    hashes = [b64decode_strict(h) for h in lines[3:]]
    check(extra == entries[index], "extra is the encoded entry at the index")
    text, _ = parse_note(checkpoint_note)
    _, size, root_b64 = text.split("\n")[:3]
    check(
        verify_inclusion(leaf_hash(extra), index, int(size), hashes, b64decode_strict(root_b64)),
        "inclusion proof verifies against the embedded checkpoint's root",
    )
    return checkpoint_note


def main():
    with open(sys.argv[1]) as f:
        v = json.load(f)
    entries = [bytes.fromhex(e) for e in v["entries_hex"]]
    author_pub = bytes.fromhex(v["author_public_hex"])
    witness_pub = bytes.fromhex(v["witness_public_hex"])
    check(v["author_vkey"] == vkey(v["author_name"], 0x01, author_pub), "author vkey")
    check(v["witness_vkey"] == vkey(v["witness_name"], 0x04, witness_pub), "witness vkey")
    check(v["witness_name"] == "kappalog/node/" + v["witness_public_hex"], "cosigner name")
    embedded = check_proof(v["proof"], entries)
    check_checkpoint(embedded, v, entries)
    check_checkpoint(v["checkpoint"], v, entries)
    print("all checks agree")


if __name__ == "__main__":
    try:
        main()
    except Disagreement as e:
        print("DISAGREE:", e)
        sys.exit(1)
