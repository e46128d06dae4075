//! Tile paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, written and parsed.
//!
//! The parser accepts exactly what [`Tile::path`] writes: `<L>` and `<W>` decimal without
//! leading zeros (`<L>` 0 to 63, `<W>` 1 to 255: a full tile has no `.p/` part), `<N>` in
//! 3-digit groups, all but the last prefixed `x`, with no leading group of zeros (`005`,
//! never `x000/005`), so every tile has one path and a cache keyed by path has no aliases.

use super::{Tile, TileKind, MAX_TILE_LEVEL, TILE_WIDTH};

/// The longest tile path: `tile/entries/` (13 bytes), the largest `u64` index in 7 groups
/// (`x018/x446/x744/x073/x709/x551/615`, 33 bytes) and `.p/255` (6 bytes). Longer input
/// is refused before it is looked at.
pub const MAX_TILE_PATH_BYTES: usize = 13 + 33 + 6;

/// The most 3-digit groups an index may have: a `u64` has at most 20 decimal digits.
const MAX_INDEX_GROUPS: usize = 7;

/// Why a string is not a tile path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TilePathError {
    /// Longer than any tile path.
    #[error("a tile path of {len} bytes is over the limit of {MAX_TILE_PATH_BYTES}")]
    TooLong {
        /// The path's length, in bytes.
        len: usize,
    },
    /// Not under `tile/`, or without an index.
    #[error("not a tile path")]
    NotTile,
    /// `<L>` is not a decimal 0 to 63 without leading zeros.
    #[error("bad tile level {0:?}")]
    BadLevel(String),
    /// `<N>` is not 3-digit groups, `x`-prefixed but the last, fitting a `u64`.
    #[error("bad tile index {0:?}")]
    BadIndex(String),
    /// `<W>` is not a decimal 1 to 255 without leading zeros.
    #[error("bad partial tile width {0:?}")]
    BadWidth(String),
    /// Well formed, but not the tile's one path (a leading group of zeros).
    #[error("not the canonical path of its tile (leading zero groups)")]
    NotCanonical,
}

impl Tile {
    /// The tile's path relative to the log's prefix.
    pub fn path(&self) -> String {
        let mut path = String::from("tile/");
        match self.kind {
            TileKind::Hashes { level } => path.push_str(&level.to_string()),
            TileKind::Entries => path.push_str("entries"),
        }
        let digits = self.index.to_string();
        // Groups of three from the right; the first one padded with zeros.
        let padded = format!("{digits:0>width$}", width = digits.len().div_ceil(3) * 3);
        let groups: Vec<&str> = padded
            .as_bytes()
            .chunks(3)
            .filter_map(|group| std::str::from_utf8(group).ok())
            .collect();
        for (i, group) in groups.iter().enumerate() {
            path.push('/');
            if i + 1 < groups.len() {
                path.push('x');
            }
            path.push_str(group);
        }
        if !self.is_full() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a tile path relative to the log's prefix (`tile/...`), strictly.
    pub fn parse_path(path: &str) -> Result<Tile, TilePathError> {
        if path.len() > MAX_TILE_PATH_BYTES {
            return Err(TilePathError::TooLong { len: path.len() });
        }
        let rest = path.strip_prefix("tile/").ok_or(TilePathError::NotTile)?;
        let (rest, width) = match rest.split_once(".p/") {
            Some((rest, width)) => (rest, parse_width(width)?),
            None => (rest, TILE_WIDTH),
        };
        let (kind, index) = rest.split_once('/').ok_or(TilePathError::NotTile)?;
        let kind = match kind {
            "entries" => TileKind::Entries,
            level => TileKind::Hashes {
                level: parse_level(level)?,
            },
        };
        let tile = Tile {
            kind,
            index: parse_index(index)?,
            width,
        };
        if tile.path() != path {
            return Err(TilePathError::NotCanonical);
        }
        Ok(tile)
    }
}

/// Decimal digits without a leading zero (but "0" itself), as a number.
fn canonical_decimal(text: &str) -> Option<u64> {
    let well_formed = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    well_formed.then(|| text.parse().ok()).flatten()
}

fn parse_level(text: &str) -> Result<u8, TilePathError> {
    canonical_decimal(text)
        .filter(|&level| level <= u64::from(MAX_TILE_LEVEL))
        .and_then(|level| u8::try_from(level).ok())
        .ok_or_else(|| TilePathError::BadLevel(text.to_string()))
}

fn parse_width(text: &str) -> Result<u16, TilePathError> {
    canonical_decimal(text)
        .filter(|&width| (1..u64::from(TILE_WIDTH)).contains(&width))
        .and_then(|width| u16::try_from(width).ok())
        .ok_or_else(|| TilePathError::BadWidth(text.to_string()))
}

fn parse_index(text: &str) -> Result<u64, TilePathError> {
    let bad = || TilePathError::BadIndex(text.to_string());
    let groups: Vec<&str> = text.split('/').collect();
    if groups.len() > MAX_INDEX_GROUPS {
        return Err(bad());
    }
    let mut index = 0u64;
    for (i, group) in groups.iter().enumerate() {
        let digits = match i + 1 < groups.len() {
            true => group.strip_prefix('x').ok_or_else(bad)?,
            false => group,
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let value: u64 = digits.parse().map_err(|_| bad())?;
        index = index
            .checked_mul(1000)
            .and_then(|index| index.checked_add(value))
            .ok_or_else(bad)?;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(kind: TileKind, index: u64, width: u16) -> Tile {
        Tile::new(kind, index, width).unwrap()
    }

    #[test]
    fn paths_are_written_as_the_spec_shows() {
        let level = |level| TileKind::Hashes { level };
        let cases = [
            (tile(level(0), 1_234_067, 256), "tile/0/x001/x234/067"),
            (tile(level(0), 0, 256), "tile/0/000"),
            (tile(level(1), 5, 17), "tile/1/005.p/17"),
            (tile(level(63), 999, 1), "tile/63/999.p/1"),
            (tile(level(2), 1000, 255), "tile/2/x001/000.p/255"),
            (tile(TileKind::Entries, 273, 112), "tile/entries/273.p/112"),
            (
                tile(TileKind::Entries, u64::MAX, 255),
                "tile/entries/x018/x446/x744/x073/x709/x551/615.p/255",
            ),
        ];
        for (tile, path) in cases {
            assert_eq!(tile.path(), path);
            assert_eq!(Tile::parse_path(path), Ok(tile), "{path}");
        }
        assert_eq!(cases[6].1.len(), MAX_TILE_PATH_BYTES);
    }

    #[test]
    fn anything_else_is_refused() {
        use TilePathError::*;
        let bad = |s: &str| BadIndex(s.to_string());
        let cases: [(&str, TilePathError); 22] = [
            ("tile/0/x000/005", NotCanonical),
            ("tile/0/x000/000", NotCanonical),
            ("tile/0/5", bad("5")),
            ("tile/0/0005", bad("0005")),
            ("tile/0/x1/234", bad("x1/234")),
            ("tile/0/001/234", bad("001/234")),
            ("tile/0/x001/x234", bad("x001/x234")),
            ("tile/0/x001//234", bad("x001//234")),
            ("tile/0/+12", bad("+12")),
            ("tile/0/", bad("")),
            (
                "tile/0/x018/x446/x744/x073/x709/x551/616",
                bad("x018/x446/x744/x073/x709/x551/616"),
            ),
            ("tile/00/001", BadLevel("00".into())),
            ("tile/64/001", BadLevel("64".into())),
            ("tile/-1/001", BadLevel("-1".into())),
            ("tile/x/001", BadLevel("x".into())),
            ("tile/0/001.p/0", BadWidth("0".into())),
            ("tile/0/001.p/256", BadWidth("256".into())),
            ("tile/0/001.p/07", BadWidth("07".into())),
            ("tile/0/001.p/", BadWidth("".into())),
            ("tile/0/001.p/5/", BadWidth("5/".into())),
            ("tiles/0/001", NotTile),
            ("tile/0", NotTile),
        ];
        for (path, error) in cases {
            assert_eq!(Tile::parse_path(path), Err(error), "{path}");
        }
        let long = format!("tile/0/{}001", "x000/".repeat(10));
        assert_eq!(Tile::parse_path(&long), Err(TooLong { len: long.len() }));
        assert!(Tile::parse_path("tile/0/001.p/5.p/5").is_err());
        assert!(Tile::parse_path("tile/entries/001.p/1 ").is_err());
    }

    #[test]
    fn every_small_tile_round_trips() {
        for index in (0..5000u64).chain([999_999, 1_000_000, u64::MAX - 1]) {
            for width in [1, 2, 99, 255, 256] {
                for kind in [TileKind::Entries, TileKind::Hashes { level: 7 }] {
                    let tile = tile(kind, index, width);
                    assert_eq!(Tile::parse_path(&tile.path()), Ok(tile));
                }
            }
        }
    }

    proptest::proptest! {
        /// Any text: an error or a tile whose path is that text, never a panic.
        #[test]
        fn parsing_never_panics_and_accepts_only_canonical_paths(
            text in "(tile/)?(entries|[0-9]{1,3})?(/x?[0-9]{0,4}){0,8}(\\.p/[0-9]{0,4})?|\\PC{0,80}"
        ) {
            if let Ok(tile) = Tile::parse_path(&text) {
                proptest::prop_assert_eq!(tile.path(), text);
            }
        }
    }
}
