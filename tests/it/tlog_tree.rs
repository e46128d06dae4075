//! The Merkle tree and tiles cross-checked by an independent Python implementation written
//! from RFC 6962/9162 and C2SP tlog-tiles (`tests/interop/tlog_tree.py`): every root, every
//! inclusion proof and every consistency proof of the trees of 0..=40 leaves, tile paths,
//! tile contents and tile lists of a tree with tiles on three levels, and entry bundles.
//!
//! python3 missing: the test skips with a note, unless `KAPPALOG_REQUIRE_PYTHON` is set
//! (CI sets it), where it fails.

use std::path::Path;
use std::process::{Command, Output};

use kappalog::tlog::merkle::{
    leaf_hash, prove_consistency, prove_inclusion, tree_hash, MemoryTree,
};
use kappalog::tlog::tiles::bundle::entry_bundle_bytes;
use kappalog::tlog::tiles::{
    entry_bundles_between, hash_tile_bytes, hash_tiles_between, Tile, TileKind,
};
use serde_json::{json, Value};

const SMALL_TREE: u64 = 40;
/// Tiles on three levels: 257 full level-0 tiles and one of 44, one full level-1 tile and
/// one of 1, a level-2 tile of 1.
const BIG_TREE: u64 = 256 * 257 + 44;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tlog_tree.py")
}

/// Runs the Python check over `vectors`; None (with a note) when python3 cannot run and
/// `KAPPALOG_REQUIRE_PYTHON` is unset.
fn python_check(vectors: &Value) -> Option<Output> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.json");
    std::fs::write(&path, serde_json::to_vec(vectors).unwrap()).unwrap();
    match Command::new("python3").arg(script()).arg(&path).output() {
        Ok(output) => Some(output),
        Err(e) => {
            assert!(
                std::env::var_os("KAPPALOG_REQUIRE_PYTHON").is_none(),
                "KAPPALOG_REQUIRE_PYTHON is set but python3 cannot run: {e}"
            );
            eprintln!("note: python3 not found, skipping the Python cross-check of the tree");
            None
        }
    }
}

fn hexes(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn small_tree_vectors() -> Value {
    let leaves: Vec<Vec<u8>> = (0..SMALL_TREE)
        .map(|i| {
            format!("kappalog leaf {i}")
                .repeat(i as usize % 3)
                .into_bytes()
        })
        .collect();
    let mut tree = MemoryTree::new();
    for leaf in &leaves {
        tree.append(leaf_hash(leaf)).unwrap();
    }
    let roots: Vec<String> = (0..=SMALL_TREE)
        .map(|size| hex::encode(tree_hash(size, &tree).unwrap()))
        .collect();
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for size in 0..=SMALL_TREE {
        for index in 0..size {
            let proof = prove_inclusion(size, index, &tree).unwrap();
            inclusion.push(json!({"size": size, "index": index, "proof": hexes(&proof)}));
        }
        for old in 0..=size {
            let proof = prove_consistency(old, size, &tree).unwrap();
            consistency.push(json!({"old": old, "new": size, "proof": hexes(&proof)}));
        }
    }
    json!({
        "leaves": leaves.iter().map(hex::encode).collect::<Vec<_>>(),
        "roots": roots,
        "inclusion": inclusion,
        "consistency": consistency,
    })
}

fn tile_json(tile: &Tile) -> Value {
    let level = match tile.kind() {
        TileKind::Hashes { level } => json!(level),
        TileKind::Entries => json!("entries"),
    };
    json!({"level": level, "index": tile.index(), "width": tile.width(), "path": tile.path()})
}

fn tile_vectors() -> Value {
    let mut tree = MemoryTree::new();
    for i in 0..BIG_TREE {
        tree.append(leaf_hash(&i.to_be_bytes())).unwrap();
    }
    let hashes = |level| TileKind::Hashes { level };
    let chosen = [
        Tile::new(hashes(0), 0, 256),
        Tile::new(hashes(0), 256, 256),
        Tile::new(hashes(0), 257, 44),
        Tile::new(hashes(0), 257, 3),
        Tile::new(hashes(1), 0, 256),
        Tile::new(hashes(1), 1, 1),
        Tile::new(hashes(2), 0, 1),
    ];
    let tiles: Vec<Value> = chosen
        .into_iter()
        .map(|tile| {
            let tile = tile.unwrap();
            let bytes = hash_tile_bytes(&tile, BIG_TREE, &tree).unwrap();
            let mut v = tile_json(&tile);
            v["hex"] = json!(hex::encode(bytes));
            v
        })
        .collect();
    let mut paths: Vec<Value> = Vec::new();
    for index in [0, 1, 999, 1000, 1_234_067, 1 << 54, u64::MAX] {
        for width in [1, 17, 255, 256] {
            for kind in [hashes(0), hashes(5), hashes(63), TileKind::Entries] {
                paths.push(tile_json(&Tile::new(kind, index, width).unwrap()));
            }
        }
    }
    let lists: Vec<Value> = [
        1, 255, 256, 257, 65_535, 65_536, BIG_TREE, 70_000, 16_777_216,
    ]
    .iter()
    .map(|&size| {
        let tiles: Vec<String> = hash_tiles_between(0, size).map(|t| t.path()).collect();
        let bundles: Vec<String> = entry_bundles_between(0, size).map(|t| t.path()).collect();
        json!({"size": size, "tiles": tiles, "bundles": bundles})
    })
    .collect();
    let bundles: Vec<Value> = [vec![vec![]], vec![b"ab".to_vec(), vec![7; 4254], vec![]]]
        .iter()
        .map(|entries| {
            let bytes = entry_bundle_bytes(entries).unwrap();
            json!({"entries": entries.iter().map(hex::encode).collect::<Vec<_>>(), "hex": hex::encode(bytes)})
        })
        .collect();
    json!({
        "big_tree": {
            "size": BIG_TREE,
            "root": hex::encode(tree.root().unwrap()),
            "tiles": tiles,
        },
        "tile_paths": paths,
        "tile_lists": lists,
        "bundles": bundles,
    })
}

fn vectors() -> Value {
    let mut vectors = small_tree_vectors();
    let tiles = tile_vectors();
    for key in ["big_tree", "tile_paths", "tile_lists", "bundles"] {
        vectors[key] = tiles[key].clone();
    }
    vectors
}

/// Changes the first hex digit of a string.
fn tamper(value: &mut Value) {
    let text = value.as_str().unwrap();
    let first = if text.starts_with('0') { "1" } else { "0" };
    *value = json!(format!("{first}{}", &text[1..]));
}

#[test]
fn python_agrees_with_the_tree_and_tiles_and_catches_a_changed_vector() {
    let vectors = vectors();
    let Some(output) = python_check(&vectors) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python disagrees:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{stdout}");

    // Each kind of vector, changed, is caught: the check above could fail.
    let pointers = [
        "/roots/17",
        "/inclusion/300/proof/2",
        "/consistency/500/proof/0",
        "/big_tree/tiles/4/hex",
        "/tile_paths/9/path",
        "/tile_lists/6/tiles/100",
        "/bundles/1/hex",
    ];
    for pointer in pointers {
        let mut changed = vectors.clone();
        tamper(changed.pointer_mut(pointer).unwrap());
        let output = python_check(&changed).unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{pointer} changed, yet: {stdout}");
        assert!(stdout.contains("disagree:"), "{pointer}: {stdout}");
    }
}
