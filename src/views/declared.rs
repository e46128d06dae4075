//! `--views FILE`: views declared in TOML, so a node comes up with them. One table per
//! view under `views`, named by the view:
//!
//! ```toml
//! [views.latest_per_sensor]
//! description = "the newest reading of each sensor"
//! sql = "SELECT ... ORDER BY sensor"
//! indexes = ["CREATE INDEX by_sensor ON entries(...)"]
//! params = { author = "..." }   # optional: sample values for the order check
//! ```
//!
//! At start the node vets each as `PUT /views/NAME` would and adds it, replacing a view of
//! the same name; views it keeps that the file does not name stay. A file that does not
//! parse, or a view it refuses, stops the node with the reason.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::definition::ViewRequest;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    #[serde(default)]
    views: BTreeMap<String, ViewRequest>,
}

/// The views `text` declares, by name (in name order).
pub fn parse(text: &str) -> Result<BTreeMap<String, ViewRequest>, String> {
    toml::from_str::<Declared>(text)
        .map(|d| d.views)
        .map_err(|e| e.to_string().trim_end().to_owned())
}

/// The views the file at `path` declares; `Err` is one line naming the file.
pub fn load(path: &Path) -> Result<BTreeMap<String, ViewRequest>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {}", path.display(), e.replace('\n', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_become_requests() {
        let views = parse(
            r#"
[views.totals]
sql = "SELECT author, sum(value) FROM entries GROUP BY author ORDER BY author"

[views.by_key]
sql = "SELECT seq FROM entries WHERE author = :author ORDER BY seq"
indexes = ["CREATE INDEX by_value ON entries(value)"]
description = "d"
params = { author = "ab" }
"#,
        )
        .unwrap();
        assert_eq!(views.keys().collect::<Vec<_>>(), ["by_key", "totals"]);
        assert_eq!(views["by_key"].params["author"], "ab");
        assert!(parse("[views.x]\nsql = 1").is_err());
        assert!(parse("[views.x]\nsql = \"SELECT 1\"\nunknown = 2").is_err());
    }
}
