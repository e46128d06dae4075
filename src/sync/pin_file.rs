//! The learned peer pins on disk: `DATA_DIR/peer-pins`, the text of [`super::pins`]. Written
//! whole to a temporary file beside it, synced, then renamed over it and the directory
//! synced, so a crash leaves either the old pins or the new ones, never half a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::admission::Admission;
use super::pins::{parse_learned, render_learned, PinFileError};
use crate::identity::Author;

/// The pin file's name in the data directory.
pub const PIN_FILE: &str = "peer-pins";

/// Why the pin file could not be loaded or saved. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PinIoError {
    /// The file exists but reading it failed.
    #[error("reading {path}: {error}")]
    Read {
        /// The pin file.
        path: PathBuf,
        /// The read's error.
        error: std::io::Error,
    },
    /// The file's text is not a pin file.
    #[error("{path}: {error}")]
    Parse {
        /// The pin file.
        path: PathBuf,
        /// Which line is wrong and how.
        error: PinFileError,
    },
    /// Writing the temporary file, syncing it, renaming it over the pin file or syncing the
    /// directory failed; the previous pin file is intact.
    #[error("writing {path}: {error}")]
    Write {
        /// The pin file.
        path: PathBuf,
        /// The failing step's error.
        error: std::io::Error,
    },
}

/// The learned pins of the node in `data_dir` (none if the file does not exist).
pub fn load(data_dir: &Path) -> Result<BTreeMap<String, Author>, PinIoError> {
    let path = data_dir.join(PIN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_learned(&text).map_err(|error| PinIoError::Parse { path, error }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(PinIoError::Read { path, error }),
    }
}

/// Replaces the pin file with `learned` (see the module docs).
pub fn save(data_dir: &Path, learned: &BTreeMap<String, Author>) -> Result<(), PinIoError> {
    let path = data_dir.join(PIN_FILE);
    let tmp = data_dir.join(format!("{PIN_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(render_learned(learned).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|error| PinIoError::Write { path, error })
}

/// Saves the learned pins of one node, one save at a time, each of the pins as they are when
/// it starts (so a slower save can never write an older set over a newer one).
#[derive(Debug)]
pub struct PinStore {
    data_dir: PathBuf,
    saving: tokio::sync::Mutex<()>,
}

impl PinStore {
    /// Saves into `data_dir`'s [`PIN_FILE`].
    pub fn new(data_dir: PathBuf) -> PinStore {
        PinStore {
            data_dir,
            saving: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes `admission`'s learned pins, off the async workers.
    pub async fn save(&self, admission: &Admission) -> Result<(), PinIoError> {
        let _one_at_a_time = self.saving.lock().await;
        let learned = admission.learned_pins();
        let dir = self.data_dir.clone();
        match crate::determinism::blocking(move || save(&dir, &learned)).await {
            Ok(saved) => saved,
            Err(e) => Err(PinIoError::Write {
                path: self.data_dir.join(PIN_FILE),
                error: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_pins_load_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let pins = BTreeMap::from([("h:1".to_owned(), Author([3; 32]))]);
        save(dir.path(), &pins).unwrap();
        assert_eq!(load(dir.path()).unwrap(), pins);
        std::fs::write(dir.path().join(PIN_FILE), "h:1\n").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
