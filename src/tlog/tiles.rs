//! tlog-tiles (C2SP): a tree served as static *tiles* of height 8.
//!
//! A hash tile at level `L` holds up to 256 consecutive hashes of Merkle level `8L`: tile
//! `N`'s `i`th hash is the hash of the full subtree of `256^L` leaves starting at leaf
//! `(N * 256 + i) * 256^L`, that is stored hash `(8L, N * 256 + i)`
//! ([`crate::tlog::merkle::stored_hash_index`]). Levels in between are recomputed from a
//! tile's hashes. A *full* tile has 256 hashes (8,192 bytes) and never changes; the
//! rightmost tile of a level is *partial* (1 to 255 hashes) while the tree grows, and is
//! never hashed into the level above. An *entry bundle* is the level-0 tile's entries
//! themselves, each big-endian `u16` length-prefixed ([`bundle`]).
//!
//! Paths ([`Tile::path`], [`Tile::parse_path`]), relative to the log's prefix:
//! `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, with `N` in 3-digit groups, all
//! but the last prefixed `x` (`1234067` is `x001/x234/067`), and `.p/<W>` only on partial
//! tiles. Parsing is strict: exactly what [`Tile::path`] writes, nothing else.

pub mod bundle;
mod path;

pub use path::{TilePathError, MAX_TILE_PATH_BYTES};

use std::ops::Range;

use crate::tlog::merkle::{stored_hash_index, HashReader, HASH_BYTES};

/// The tile height: a tile spans 8 Merkle levels.
pub const TILE_HEIGHT: u32 = 8;
/// The hashes (or entries) in a full tile: 2^[`TILE_HEIGHT`].
pub const TILE_WIDTH: u16 = 256;
/// The highest tile level a path may name (tlog-tiles: `<L>` is 0 to 63).
pub const MAX_TILE_LEVEL: u8 = 63;

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TileKind {
    /// Hashes of Merkle level `8 * level`.
    Hashes {
        /// The tile level, at most [`MAX_TILE_LEVEL`].
        level: u8,
    },
    /// The entries themselves (an entry bundle), beside level 0.
    Entries,
}

/// One tile: its kind, its index within its level, and its width (256 when full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tile {
    kind: TileKind,
    index: u64,
    width: u16,
}

/// Why a tile cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// A width outside 1..=256.
    #[error("tile width {width} is not in 1..=256")]
    BadWidth {
        /// The width given.
        width: u16,
    },
    /// A level over [`MAX_TILE_LEVEL`].
    #[error("tile level {level} is over {MAX_TILE_LEVEL}")]
    BadLevel {
        /// The level given.
        level: u8,
    },
}

/// Why a hash tile's bytes cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashTileError<E> {
    /// An entry bundle asked for as a hash tile.
    #[error("an entry bundle has no hashes to build")]
    NotHashTile,
    /// A tile (or a width of it) the tree of this size does not have.
    #[error("the tree of {size} leaves has no tile {tile}")]
    NotInTree {
        /// The tile's path.
        tile: String,
        /// The tree's size.
        size: u64,
    },
    /// The reader failed.
    #[error("reading the tile's hashes: {0}")]
    Read(#[source] E),
    /// The reader answered with the wrong number of hashes.
    #[error("the hash reader returned {got} hashes for {asked} indexes")]
    ReaderCount {
        /// Indexes asked for.
        asked: usize,
        /// Hashes returned.
        got: usize,
    },
}

impl Tile {
    /// A tile, checked: width 1..=256, level at most [`MAX_TILE_LEVEL`].
    pub fn new(kind: TileKind, index: u64, width: u16) -> Result<Tile, TileError> {
        if width == 0 || width > TILE_WIDTH {
            return Err(TileError::BadWidth { width });
        }
        if let TileKind::Hashes { level } = kind {
            if level > MAX_TILE_LEVEL {
                return Err(TileError::BadLevel { level });
            }
        }
        Ok(Tile { kind, index, width })
    }

    /// What the tile holds.
    pub fn kind(&self) -> TileKind {
        self.kind
    }

    /// The tile's index within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// How many hashes (or entries) it holds: 256 when full.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile is full (immutable; served without `.p/<W>`).
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// Whether a tree of `size` leaves has this tile (a partial one at least as wide).
    pub fn in_tree(&self, size: u64) -> bool {
        let level = match self.kind {
            TileKind::Hashes { level } => level,
            TileKind::Entries => 0,
        };
        let available = size
            .checked_shr(TILE_HEIGHT * u32::from(level))
            .unwrap_or(0);
        self.index
            .checked_mul(u64::from(TILE_WIDTH))
            .and_then(|start| start.checked_add(u64::from(self.width)))
            .is_some_and(|end| end <= available)
    }
}

/// The tile that stored hash `(level, n)` is computed from, with the smallest width that
/// holds it, and the positions within that tile of the hashes it folds (one position when
/// `level` is a multiple of 8, the tile's own level).
pub fn tile_for_stored_hash(level: u32, n: u64) -> (Tile, Range<u16>) {
    let tile_level = level / TILE_HEIGHT;
    let within = level % TILE_HEIGHT;
    // The stored hash covers positions [first, first + 2^within) of the tile's level.
    let first = n << within;
    let start = first % u64::from(TILE_WIDTH);
    let end = start + (1 << within);
    let tile = Tile {
        kind: TileKind::Hashes {
            level: u8::try_from(tile_level).unwrap_or(u8::MAX),
        },
        index: first / u64::from(TILE_WIDTH),
        // end <= 256: a subtree of 2^within positions, within < 8, starts at a multiple of
        // its width, so it does not cross a tile's edge.
        width: u16::try_from(end).unwrap_or(TILE_WIDTH),
    };
    let range = u16::try_from(start).unwrap_or(0)..tile.width;
    (tile, range)
}

/// The hash tiles a tree growing from `old` to `new` leaves adds or widens, level by level:
/// the full tiles completed, then the level's partial tile if it changed. From `old = 0`,
/// every hash tile of the tree. Lazy: a large growth yields many tiles.
pub fn hash_tiles_between(old: u64, new: u64) -> impl Iterator<Item = Tile> {
    let old = old.min(new);
    (0..=MAX_TILE_LEVEL)
        .map(move |level| {
            let shift = TILE_HEIGHT * u32::from(level);
            let count = |size: u64| size.checked_shr(shift).unwrap_or(0);
            (level, count(old), count(new))
        })
        .take_while(|&(_, _, new_count)| new_count > 0)
        .flat_map(|(level, old_count, new_count)| {
            level_tiles(TileKind::Hashes { level }, old_count, new_count)
        })
}

/// The entry bundles a tree growing from `old` to `new` leaves adds or widens.
pub fn entry_bundles_between(old: u64, new: u64) -> impl Iterator<Item = Tile> {
    level_tiles(TileKind::Entries, old.min(new), new)
}

/// The tiles of one level whose hashes go from `old` to `new` in number.
fn level_tiles(kind: TileKind, old: u64, new: u64) -> impl Iterator<Item = Tile> {
    let width = u64::from(TILE_WIDTH);
    let full = if old == new {
        0..0
    } else {
        old / width..new / width
    };
    let partial_width = new % width;
    let partial = (old != new && partial_width > 0).then(|| Tile {
        kind,
        index: new / width,
        width: u16::try_from(partial_width).unwrap_or(TILE_WIDTH),
    });
    full.map(move |index| Tile {
        kind,
        index,
        width: TILE_WIDTH,
    })
    .chain(partial)
}

/// The bytes of hash tile `tile` of the tree of `size` leaves: its hashes, concatenated
/// (32 bytes each), read in one call.
pub fn hash_tile_bytes<R: HashReader>(
    tile: &Tile,
    size: u64,
    reader: &R,
) -> Result<Vec<u8>, HashTileError<R::Error>> {
    let TileKind::Hashes { level } = tile.kind else {
        return Err(HashTileError::NotHashTile);
    };
    if !tile.in_tree(size) {
        return Err(HashTileError::NotInTree {
            tile: tile.path(),
            size,
        });
    }
    // in_tree bounds index * 256 + width by the tree's size.
    let first = tile.index * u64::from(TILE_WIDTH);
    let merkle_level = TILE_HEIGHT * u32::from(level);
    let indexes: Vec<u64> = (0..u64::from(tile.width))
        .map(|i| stored_hash_index(merkle_level, first + i))
        .collect();
    let hashes = reader.read_hashes(&indexes).map_err(HashTileError::Read)?;
    if hashes.len() != indexes.len() {
        return Err(HashTileError::ReaderCount {
            asked: indexes.len(),
            got: hashes.len(),
        });
    }
    let mut bytes = Vec::with_capacity(hashes.len() * HASH_BYTES);
    for hash in &hashes {
        bytes.extend_from_slice(hash);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, node_hash, tree_hash, Hash, MemoryTree};

    fn hashes(level: u8) -> TileKind {
        TileKind::Hashes { level }
    }

    fn tile(kind: TileKind, index: u64, width: u16) -> Tile {
        Tile::new(kind, index, width).unwrap()
    }

    #[test]
    fn a_tree_of_70000_has_the_tiles_the_spec_lists() {
        // tlog-tiles: "273 full level 0 tiles, one partial level 0 tile of width 112, one
        // full level 1 tile, one partial level 1 tile of width 17, and one partial level 2
        // tile of width 1".
        let tiles: Vec<Tile> = hash_tiles_between(0, 70_000).collect();
        let mut expected: Vec<Tile> = (0..273).map(|n| tile(hashes(0), n, 256)).collect();
        expected.extend([
            tile(hashes(0), 273, 112),
            tile(hashes(1), 0, 256),
            tile(hashes(1), 1, 17),
            tile(hashes(2), 0, 1),
        ]);
        assert_eq!(tiles, expected);
        assert!(tiles.iter().all(|t| t.in_tree(70_000)));
        // "a tree of size 256 will be represented by a full level 0 tile and a partial level
        // 1 tile of width 1".
        let tiles: Vec<Tile> = hash_tiles_between(0, 256).collect();
        assert_eq!(tiles, [tile(hashes(0), 0, 256), tile(hashes(1), 0, 1)]);
        let bundles: Vec<Tile> = entry_bundles_between(0, 70_000).collect();
        assert_eq!(bundles.len(), 274);
        assert_eq!(bundles[273], tile(TileKind::Entries, 273, 112));
        assert_eq!(hash_tiles_between(0, 0).count(), 0);
    }

    #[test]
    fn growth_lists_only_the_tiles_that_changed() {
        let grown: Vec<Tile> = hash_tiles_between(250, 260).collect();
        assert_eq!(
            grown,
            [
                tile(hashes(0), 0, 256),
                tile(hashes(0), 1, 4),
                tile(hashes(1), 0, 1)
            ]
        );
        let grown: Vec<Tile> = hash_tiles_between(260, 261).collect();
        assert_eq!(grown, [tile(hashes(0), 1, 5)]);
        assert_eq!(hash_tiles_between(261, 261).count(), 0);
        assert_eq!(hash_tiles_between(300, 261).count(), 0);
        let grown: Vec<Tile> = entry_bundles_between(511, 512).collect();
        assert_eq!(grown, [tile(TileKind::Entries, 1, 256)]);
        // Every tile of a size is what growing to it leaf by leaf lists last at each spot.
        for size in 1..=600u64 {
            for tile in hash_tiles_between(0, size) {
                assert!(tile.in_tree(size), "{} in {size}", tile.path());
                let wider = Tile {
                    width: tile.width + 1,
                    ..tile
                };
                assert!(tile.is_full() || !wider.in_tree(size), "{}", tile.path());
            }
        }
    }

    #[test]
    fn a_stored_hash_lives_in_the_tile_of_its_level() {
        assert_eq!(tile_for_stored_hash(0, 0), (tile(hashes(0), 0, 1), 0..1));
        assert_eq!(
            tile_for_stored_hash(0, 300),
            (tile(hashes(0), 1, 45), 44..45)
        );
        assert_eq!(tile_for_stored_hash(8, 3), (tile(hashes(1), 0, 4), 3..4));
        // Level 3: 8 positions of level 0, inside one tile.
        assert_eq!(tile_for_stored_hash(3, 33), (tile(hashes(0), 1, 16), 8..16));
        assert_eq!(
            tile_for_stored_hash(7, 1),
            (tile(hashes(0), 0, 256), 128..256)
        );
        assert_eq!(tile_for_stored_hash(17, 0), (tile(hashes(2), 0, 2), 0..2));
    }

    fn tree(size: u64) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for i in 0..size {
            tree.append(leaf_hash(&i.to_be_bytes())).unwrap();
        }
        tree
    }

    /// The hash of `width` consecutive hashes folded as RFC 6962 does (a power of two).
    fn fold(hashes: &[Hash]) -> Hash {
        match hashes {
            [one] => *one,
            _ => {
                let (left, right) = hashes.split_at(hashes.len() / 2);
                node_hash(&fold(left), &fold(right))
            }
        }
    }

    #[test]
    fn hash_tiles_hold_their_level_hashes() {
        let size = 256 * 256 + 300;
        let tree = tree(size);
        let level0 = hash_tile_bytes(&tile(hashes(0), 1, 256), size, &tree).unwrap();
        let leaves: Vec<Hash> = (256..512u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        assert_eq!(level0, leaves.concat());
        let level1 = hash_tile_bytes(&tile(hashes(1), 0, 256), size, &tree).unwrap();
        let chunks: Vec<Hash> = level1.chunks(32).map(|c| c.try_into().unwrap()).collect();
        // The level-1 tile's first hash is the tree of the first 256 leaves; its 256 hashes
        // fold to the tree of the first 65,536.
        assert_eq!(chunks[0], tree_hash(256, &tree).unwrap());
        assert_eq!(fold(&chunks), tree_hash(65_536, &tree).unwrap());
        let partial = hash_tile_bytes(&tile(hashes(1), 1, 1), size, &tree).unwrap();
        assert_eq!(partial.len(), 32);
        let partial0 = hash_tile_bytes(&tile(hashes(0), 257, 44), size, &tree).unwrap();
        assert_eq!(partial0.len(), 44 * 32);
    }

    #[test]
    fn tiles_a_tree_lacks_are_refused() {
        let tree = tree(300);
        let wide = tile(hashes(0), 1, 45);
        assert_eq!(
            hash_tile_bytes(&wide, 300, &tree),
            Err(HashTileError::NotInTree {
                tile: "tile/0/001.p/45".into(),
                size: 300
            })
        );
        let far = tile(hashes(7), u64::MAX, 256);
        assert!(matches!(
            hash_tile_bytes(&far, 300, &tree),
            Err(HashTileError::NotInTree { .. })
        ));
        assert_eq!(
            hash_tile_bytes(&tile(TileKind::Entries, 0, 1), 300, &tree),
            Err(HashTileError::NotHashTile)
        );
        // In the size, but not in the reader: the reader's error.
        assert!(matches!(
            hash_tile_bytes(&tile(hashes(0), 1, 44), 300, &tree),
            Ok(bytes) if bytes.len() == 44 * 32
        ));
        assert!(matches!(
            hash_tile_bytes(&tile(hashes(0), 2, 1), 600, &tree),
            Err(HashTileError::Read(_))
        ));
        assert_eq!(
            Tile::new(hashes(64), 0, 1),
            Err(TileError::BadLevel { level: 64 })
        );
        assert_eq!(
            Tile::new(hashes(0), 0, 0),
            Err(TileError::BadWidth { width: 0 })
        );
        assert_eq!(
            Tile::new(hashes(0), 0, 257),
            Err(TileError::BadWidth { width: 257 })
        );
    }
}
