#!/usr/bin/env python3
"""An independent RFC 6962 / tlog-tiles check of vectors written by kappalog's Rust code.

Written from the texts, not from the Rust: RFC 6962 section 2.1 (MTH, PATH, PROOF and
SUBPROOF, recursive as the RFC states them), RFC 9162 sections 2.1.3.2 and 2.1.4.2 (the
verification algorithms), and C2SP tlog-tiles (tile contents and paths, entry bundles).

Usage: tlog_tree.py VECTORS.json
Exits 0 when every vector agrees, 1 (listing each disagreement) otherwise.
Only the standard library is used.
"""

import hashlib
import json
import sys
from functools import lru_cache


def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def largest_power_of_two_below(n):
    """k: the largest power of two smaller than n (n > 1), RFC 6962 section 2.1."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Tree:
    """The list D of leaf hashes, with MTH over any range D[lo:hi]."""

    def __init__(self, leaf_hashes):
        self.d = leaf_hashes
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, lo, hi):
        n = hi - lo
        if n == 0:
            return sha256(b"")
        if n == 1:
            return self.d[lo]
        k = largest_power_of_two_below(n)
        return node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def path(self, m, lo, hi):
        """PATH(m, D[lo:hi]): the audit path of leaf lo + m."""
        n = hi - lo
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < k:
            return self.path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self.path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def proof(self, m, n):
        """PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true)."""
        return self.subproof(m, 0, n, True)

    def subproof(self, m, lo, hi, b):
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return self.subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self.subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]


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
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, path):
    """RFC 9162 section 2.1.4.2 (0 < first < second)."""
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def tile_path(level, index, width):
    """tlog-tiles: tile/<L>/<N>[.p/<W>], N in x-prefixed 3-digit groups."""
    groups = []
    n = index
    while True:
        groups.append("%03d" % (n % 1000))
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    encoded = "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])
    path = "tile/%s/%s" % (level, encoded)
    if width != 256:
        path += ".p/%d" % width
    return path


def tiles_of(size, entries):
    """Every tile of a tree of `size` (tlog-tiles "Partial Tiles"), hash tiles level by
    level, or the entry bundles."""
    paths = []
    levels = [0] if entries else range(64)
    for level in levels:
        count = size // 256 ** level
        if count == 0:
            break
        name = "entries" if entries else str(level)
        paths += [tile_path(name, n, 256) for n in range(count // 256)]
        if count % 256:
            paths.append(tile_path(name, count // 256, count % 256))
    return paths


def tile_contents(tree, level, index, width):
    """MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l]) for i < width."""
    span = 256 ** level
    return b"".join(
        tree.mth((index * 256 + i) * span, (index * 256 + i + 1) * span)
        for i in range(width)
    )


def bundle(entries):
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def check(vectors):
    failures = []
    fail = failures.append
    unhex = bytes.fromhex

    leaves = [unhex(x) for x in vectors["leaves"]]
    tree = Tree([leaf_hash(x) for x in leaves])
    roots = [unhex(x) for x in vectors["roots"]]
    for size, root in enumerate(roots):
        if tree.mth(0, size) != root:
            fail("root of size %d" % size)

    for v in vectors["inclusion"]:
        size, index = v["size"], v["index"]
        proof = [unhex(x) for x in v["proof"]]
        if proof != tree.path(index, 0, size):
            fail("inclusion proof of %d in %d differs from PATH" % (index, size))
        if not verify_inclusion(tree.d[index], index, size, proof, tree.mth(0, size)):
            fail("inclusion proof of %d in %d does not verify" % (index, size))

    for v in vectors["consistency"]:
        old, new = v["old"], v["new"]
        proof = [unhex(x) for x in v["proof"]]
        # PROOF is defined for 0 < m < n; from the empty tree or to the same size there
        # is nothing to prove, and the proof is empty.
        want = tree.proof(old, new) if 0 < old < new else []
        if proof != want:
            fail("consistency proof %d -> %d differs from PROOF" % (old, new))
        if 0 < old < new and not verify_consistency(
            old, new, tree.mth(0, old), tree.mth(0, new), proof
        ):
            fail("consistency proof %d -> %d does not verify" % (old, new))

    for v in vectors["tile_paths"]:
        want = tile_path(v["level"], v["index"], v["width"])
        if v["path"] != want:
            fail("tile path %r, want %r" % (v["path"], want))

    big = vectors["big_tree"]
    big_tree = Tree([leaf_hash(i.to_bytes(8, "big")) for i in range(big["size"])])
    if big_tree.mth(0, big["size"]).hex() != big["root"]:
        fail("root of the big tree")
    for v in big["tiles"]:
        want = tile_contents(big_tree, v["level"], v["index"], v["width"])
        if unhex(v["hex"]) != want:
            fail("contents of %s" % v["path"])
        if v["path"] != tile_path(v["level"], v["index"], v["width"]):
            fail("path of tile %r" % v["path"])

    for v in vectors["tile_lists"]:
        for entries in (False, True):
            key = "bundles" if entries else "tiles"
            if v[key] != tiles_of(v["size"], entries):
                fail("the %s of a tree of %d" % (key, v["size"]))

    for v in vectors["bundles"]:
        if bundle([unhex(e) for e in v["entries"]]).hex() != v["hex"]:
            fail("entry bundle of %d entries" % len(v["entries"]))

    return failures


def main():
    with open(sys.argv[1]) as f:
        vectors = json.load(f)
    failures = check(vectors)
    for failure in failures:
        print("disagree:", failure)
    if failures:
        return 1
    print(
        "ok: %d roots, %d inclusion proofs, %d consistency proofs, %d tile paths, "
        "%d tiles, %d tile lists, %d bundles"
        % (
            len(vectors["roots"]),
            len(vectors["inclusion"]),
            len(vectors["consistency"]),
            len(vectors["tile_paths"]),
            len(vectors["big_tree"]["tiles"]),
            len(vectors["tile_lists"]),
            len(vectors["bundles"]),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
