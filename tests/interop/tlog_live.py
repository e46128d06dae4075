#!/usr/bin/env python3
"""Independent cross-check of a live kappalog node's verifiable-feed routes (issue 22).

Written from the C2SP texts (signed-note, tlog-checkpoint, tlog-proof, tlog-tiles) and RFC
9162, not from the Rust code (the Merkle algorithms are tlog_tree.py's, beside it). Given a node's URL and a feed's author (64 hex digits), it

1. fetches GET /feeds/AUTHOR/checkpoint and checks the note: origin kappalog/feed/<hex>,
   the author's Ed25519 signature under the key name equal to the origin, with the key ID
   of the signed-note rule, over the note's text;
2. fetches the tlog-tiles level-0 hash tiles and entry bundles of the checkpoint's tree,
   checks each entry hashes to its tile hash, each level-1 hash is its full level-0 tile's
   Merkle tree hash, and that all the leaves hash to the checkpoint's root;
3. fetches a c2sp.org/tlog-proof@v1 bundle for several seqs and checks its checkpoint (as
   in 1), its index, and the inclusion of SHA-256(0x00 || extra) in its tree;
4. fetches the consistency proof between a smaller size and the checkpoint's and checks it
   against the roots the tiles give.

It prints one line per check and exits 1 on the first disagreement, naming it (2 on bad
usage). It walks every level-0 tile: meant for test-sized feeds.

    tlog_live.py URL AUTHOR [--tamper checkpoint|proof|consistency|tile]

--tamper flips one bit in that kind of answer before it is checked: the negative control,
which must make the script fail.

Needs python3 and the `cryptography` package (Debian: python3-cryptography).
"""

import base64
import hashlib
import sys
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# RFC 9162's hashing and verification algorithms and tlog-tiles' paths, as the tree
# cross-check (also written from the texts) has them: one copy among the interop scripts.
from tlog_tree import Tree, leaf_hash, tile_path, verify_consistency, verify_inclusion

EM_DASH = "\u2014"
PROOF_HEADER = "c2sp.org/tlog-proof@v1"
TAMPER_KINDS = ("checkpoint", "proof", "consistency", "tile")


class Disagreement(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Disagreement(what)
    print("ok:", what)


def b64(text):
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise Disagreement("non-canonical base64: %r" % text)
    return raw


def sha256(data):
    return hashlib.sha256(data).digest()


def mth(leaves):
    """RFC 9162 2.1.1: the Merkle tree hash of a list of leaf hashes."""
    return Tree(leaves).mth(0, len(leaves))


class Node:
    def __init__(self, url, author, tamper):
        self.base = url.rstrip("/") + "/feeds/" + author + "/"
        self.tamper = tamper

    def get(self, path, kind):
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as answer:
                body = answer.read()
                headers = answer.headers
        except urllib.error.HTTPError as e:
            raise Disagreement("GET %s answered %d: %s" % (path, e.code, e.read()[:200]))
        if kind == self.tamper:
            print("tampering with the answer to", path)
            body = flip(body, kind)
        return body, headers


def flip(body, kind):
    """One bit flipped where the answer's meaning is, not in its syntax."""
    if kind == "tile":
        return bytes([body[0] ^ 1]) + body[1:]
    text = body.decode()
    lines = text.split("\n")
    # The first line holding a base64 hash: the root (checkpoint), the first audit path hash
    # (proof), the first consistency hash.
    for i, line in enumerate(lines):
        if len(line) == 44 and not line.startswith(EM_DASH):
            raw = bytearray(base64.b64decode(line))
            raw[0] ^= 1
            lines[i] = base64.b64encode(bytes(raw)).decode()
            return "\n".join(lines).encode()
    raise Disagreement("nothing to tamper with in the %s answer" % kind)


def check_note(note, author):
    """signed-note + tlog-checkpoint: the author's signature; returns (size, root)."""
    check(note.endswith("\n"), "note ends in a newline")
    split = note.rindex("\n\n")
    text, sig_block = note[: split + 1], note[split + 2 :]
    origin, size, root = text.split("\n")[:3]
    check(origin == "kappalog/feed/" + author, "origin is kappalog/feed/<author>")
    size, root = int(size), b64(root)
    check(len(root) == 32, "root is 32 bytes")
    public = bytes.fromhex(author)
    key_id = sha256(origin.encode() + b"\n" + b"\x01" + public)[:4]
    signed = False
    for line in sig_block.split("\n")[:-1]:
        check(line.startswith(EM_DASH + " "), "signature line starts with an em dash")
        name, encoded = line[2:].split(" ")
        raw = b64(encoded)
        if name != origin or raw[:4] != key_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], text.encode())
        except InvalidSignature:
            raise Disagreement("the author's signature on the checkpoint of size %d" % size)
        signed = True
    check(signed, "the author signed the checkpoint of size %d (key ID %s)" % (size, key_id.hex()))
    return size, root


def level0_leaves(node, size):
    """Every leaf hash of the tree of `size`, from level-0 tiles, each checked against its
    entry bundle; and the level-1 hashes checked against the full level-0 tiles."""
    leaves = []
    for index in range((size + 255) // 256):
        width = min(256, size - index * 256)
        tile, headers = node.get(tile_path(0, index, width), "tile")
        check(len(tile) == 32 * width, "tile 0/%d has %d hashes" % (index, width))
        if width == 256:
            check("immutable" in headers.get("Cache-Control", ""), "full tile 0/%d is immutable" % index)
        hashes = [tile[i : i + 32] for i in range(0, len(tile), 32)]
        bundle, _ = node.get(tile_path("entries", index, width), "bundle")
        entries, at = [], 0
        while at < len(bundle):
            length = int.from_bytes(bundle[at : at + 2], "big")
            entries.append(bundle[at + 2 : at + 2 + length])
            at += 2 + length
        check(at == len(bundle) and len(entries) == width, "bundle %d holds %d entries" % (index, width))
        check([leaf_hash(e) for e in entries] == hashes, "bundle %d's entries hash to tile 0/%d" % (index, index))
        leaves.extend(hashes)
    full = size // 256
    if full:
        width = min(256, full)
        tile, _ = node.get(tile_path(1, 0, width), "tile")
        expected = b"".join(mth(leaves[i * 256 : (i + 1) * 256]) for i in range(width))
        check(tile == expected, "tile 1/0 holds the roots of the full level-0 tiles")
    return leaves


def main(argv):
    if len(argv) not in (3, 5) or (len(argv) == 5 and (argv[3] != "--tamper" or argv[4] not in TAMPER_KINDS)):
        print(__doc__, file=sys.stderr)
        return 2
    url, author = argv[1], argv[2].lower()
    node = Node(url, author, argv[4] if len(argv) == 5 else None)
    try:
        note, headers = node.get("checkpoint", "checkpoint")
        check(headers.get("Content-Type") == "text/plain; charset=utf-8", "checkpoint is text/plain")
        size, root = check_note(note.decode(), author)
        check(size >= 2, "the feed has at least two entries to check")

        leaves = level0_leaves(node, size)
        check(mth(leaves) == root, "the tiles' leaves hash to the checkpoint's root")

        for seq in sorted({1, 2, size // 2 + 1, size}):
            bundle, _ = node.get("proof?seq=%d" % seq, "proof")
            head, _, note = bundle.decode().partition("\n\n")
            lines = head.split("\n")
            check(lines[0] == PROOF_HEADER, "proof %d has the tlog-proof header" % seq)
            check(lines[1].startswith("extra "), "proof %d carries the entry" % seq)
            entry = b64(lines[1][len("extra "):])
            check(lines[2] == "index %d" % (seq - 1), "proof %d is of leaf %d" % (seq, seq - 1))
            path = [b64(line) for line in lines[3:]]
            proof_size, proof_root = check_note(note, author)
            check(
                verify_inclusion(leaf_hash(entry), seq - 1, proof_size, path, proof_root),
                "entry %d is included in the tree of %d" % (seq, proof_size),
            )
            check(leaf_hash(entry) == leaves[seq - 1], "entry %d is the tiles' leaf %d" % (seq, seq - 1))

        old = max(1, size // 3)
        answer, _ = node.get("consistency?from=%d&to=%d" % (old, size), "consistency")
        path = [b64(line) for line in answer.decode().split("\n")[:-1]]
        check(
            verify_consistency(old, size, mth(leaves[:old]), root, path),
            "the tree of %d is a prefix of the checkpoint's tree of %d" % (old, size),
        )
    except Disagreement as e:
        print("FAILED:", e)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
