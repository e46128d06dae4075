//! The views' definitions file, `DATA_DIR/views.json` (docs/QUERY.md, "Named views"): kept
//! durably outside the index database, so deleting or rebuilding the index loses no view.
//!
//! Format: one JSON object, `{"version": 1, "views": [ViewDef, ...]}`, the views sorted by
//! name. A save writes `views.json.tmp`, fsyncs it, renames it over `views.json` and fsyncs
//! the directory: a crash leaves the old file or the new one, never a mix. A file that does
//! not parse, or of another version, is an error the node stops on (with the path): a view
//! is a user's work, so it is never dropped silently.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::definition::{check_name, ViewDef};

/// The file's name in the data directory.
pub const VIEWS_FILE: &str = "views.json";
/// The format version this build reads and writes.
pub const VIEWS_FILE_VERSION: u32 = 1;

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ViewsFileError {
    /// Reading, writing, syncing or renaming failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a views file this build reads.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    version: u32,
    views: Vec<ViewDef>,
}

/// The views kept in `data_dir` (none when the file does not exist), sorted by name.
pub fn load(data_dir: &Path) -> Result<Vec<ViewDef>, ViewsFileError> {
    let path = data_dir.join(VIEWS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ViewsFileError::Io {
                what: "read",
                path,
                source,
            })
        }
    };
    let malformed = |reason: String| ViewsFileError::Malformed {
        path: path.clone(),
        reason,
    };
    let body: FileBody = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if body.version != VIEWS_FILE_VERSION {
        return Err(malformed(format!(
            "version {}, this build reads {VIEWS_FILE_VERSION}",
            body.version
        )));
    }
    let mut views = body.views;
    for view in &views {
        check_name(&view.name).map_err(|e| malformed(e.to_string()))?;
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = views.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(malformed(format!("view {} appears twice", pair[0].name)));
    }
    Ok(views)
}

/// Replaces the file in `data_dir` with `views` (see the module docs).
pub fn save(data_dir: &Path, views: &[ViewDef]) -> Result<(), ViewsFileError> {
    let path = data_dir.join(VIEWS_FILE);
    let tmp = data_dir.join(format!("{VIEWS_FILE}.tmp"));
    let mut sorted = views.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let body = FileBody {
        version: VIEWS_FILE_VERSION,
        views: sorted,
    };
    let mut text = serde_json::to_string_pretty(&body).map_err(|e| ViewsFileError::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ViewsFileError::Io { what, path, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io("sync", data_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str) -> ViewDef {
        ViewDef {
            name: name.into(),
            sql: "SELECT count(*) FROM entries".into(),
            indexes: vec!["CREATE INDEX by_value ON entries(value)".into()],
            description: "how many".into(),
        }
    }

    #[test]
    fn a_saved_file_loads_back_sorted() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), []);
        save(dir.path(), &[view("b"), view("a")]).unwrap();
        assert_eq!(load(dir.path()).unwrap(), [view("a"), view("b")]);
        assert!(!dir.path().join("views.json.tmp").exists());
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "{",
            r#"{"version":2,"views":[]}"#,
            r#"{"version":1,"views":[{"name":"a b","sql":"SELECT 1"}]}"#,
            r#"{"version":1,"views":[{"name":"a","sql":"SELECT 1"},{"name":"a","sql":"SELECT 2"}]}"#,
            r#"{"version":1,"views":[],"extra":1}"#,
        ] {
            std::fs::write(dir.path().join(VIEWS_FILE), text).unwrap();
            let error = load(dir.path()).unwrap_err().to_string();
            assert!(error.contains("views.json"), "{text}: {error}");
        }
    }
}
