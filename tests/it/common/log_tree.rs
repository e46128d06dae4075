//! A test log's tree and its forks: `leaves` leaves, the first `common` of them shared by
//! every tree made with the same `common`, the rest labelled, so two labels make a log and a
//! fork of it that part after leaf `common`.

use kappalog::tlog::merkle::{leaf_hash, MemoryTree};

pub fn labelled_tree(leaves: u32, common: u32, label: &str) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..leaves {
        let input = match i < common {
            true => format!("common {i}"),
            false => format!("{label} {i}"),
        };
        tree.append(leaf_hash(input.as_bytes())).unwrap();
    }
    tree
}
