//! [`MemoryIo`]: a [`LogIo`] backend that keeps its files in memory and can lose power.
//!
//! Each file remembers two things: what was synced (its content as of its last
//! `fdatasync`), and the changes made since (writes and cuts, in order). Reads see every
//! change, as they would through the page cache. [`MemoryIo::crash`] makes the state a
//! power cut could leave, drawn from a seed so that a failing case reproduces:
//!
//! - per file, the synced content, plus any subset of the changes since, applied in their
//!   order; the last write kept may be torn at any byte (only a prefix of it reached the
//!   disk). This is what a file system that writes back pages in any order may leave: a
//!   change is never kept "more than whole", and nothing synced is lost;
//! - a file created (or first opened for writing) since the last [`LogIo::sync_dir`] of
//!   its directory may vanish entirely: its directory entry was never made durable;
//! - a rename ([`LogIo::rename`]) since the last [`LogIo::sync_dir`] of its directory may be
//!   undone, whole: the file the new name replaced is back (if its name was durable), and so
//!   is the old name (if it was durable), as a journalling file system's atomic rename
//!   leaves it. Never half of it: a crash never loses both names.
//!
//! Directories themselves are not modelled: a path is only a name in the map. The crashed
//! image is a new [`MemoryIo`] whose files are all synced; handles into the old one (a
//! store that was running when the power went) keep working on the old files and can no
//! longer change the image.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{LogFile, LogIo, OpenMode};

/// Files in memory, by path (see the module docs). Clones share the files.
#[derive(Clone, Debug, Default)]
pub struct MemoryIo {
    files: Arc<Mutex<BTreeMap<PathBuf, Named>>>,
}

/// A file and whether its directory entry is durable.
#[derive(Debug)]
struct Named {
    file: Arc<Mutex<FileState>>,
    name_durable: bool,
    /// What a crash restores if it undoes the rename that made this name (not durable).
    undo: Option<Undo>,
}

/// The durable names a rename not yet made durable replaced.
#[derive(Debug)]
struct Undo {
    /// The file the new name replaced, if that name was durable.
    replaced: Option<Arc<Mutex<FileState>>>,
    /// The old name, if it was durable.
    source: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct FileState {
    /// The content as of the last sync: what a crash always keeps.
    synced: Vec<u8>,
    /// The content reads see now.
    current: Vec<u8>,
    /// The changes since the last sync, oldest first.
    unsynced: Vec<Change>,
}

#[derive(Clone, Debug)]
enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// An open memory file (inside a [`LogFile`]).
#[derive(Debug)]
pub struct Handle {
    file: Arc<Mutex<FileState>>,
    writable: bool,
}

/// Every lock here guards plain data that each method leaves consistent before it could
/// panic, so a poisoned lock is still good to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn apply(content: &mut Vec<u8>, change: &Change) -> io::Result<()> {
    match change {
        Change::Write { offset, bytes } => {
            let start = usize::try_from(*offset).map_err(|_| too_large())?;
            let end = start.checked_add(bytes.len()).ok_or_else(too_large)?;
            if content.len() < end {
                content.resize(end, 0);
            }
            content[start..end].copy_from_slice(bytes);
        }
        Change::SetLen(len) => content.resize(usize::try_from(*len).map_err(|_| too_large())?, 0),
    }
    Ok(())
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "offset past what memory can hold",
    )
}

impl Handle {
    fn change(&self, change: Change) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        let mut state = lock(&self.file);
        apply(&mut state.current, &change)?;
        state.unsynced.push(change);
        Ok(())
    }

    pub(super) fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.change(Change::Write {
            offset,
            bytes: buf.to_vec(),
        })
    }

    pub(super) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = lock(&self.file);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let Some(available) = state.current.get(start..) else {
            return Ok(0);
        };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        Ok(n)
    }

    pub(super) fn sync_data(&self) -> io::Result<()> {
        let mut state = lock(&self.file);
        let FileState {
            synced, unsynced, ..
        } = &mut *state;
        for change in unsynced.drain(..) {
            apply(synced, &change)?;
        }
        Ok(())
    }

    pub(super) fn set_len(&self, len: u64) -> io::Result<()> {
        self.change(Change::SetLen(len))
    }

    pub(super) fn len(&self) -> u64 {
        lock(&self.file).current.len() as u64
    }
}

/// What a power cut leaves of `file` (module docs): the synced content, then a subset of
/// the changes since, in order, the last write kept torn at any byte. Synced, its name
/// durable.
fn crashed(file: &Mutex<FileState>, rng: &mut StdRng) -> Named {
    let state = lock(file);
    let kept: Vec<&Change> = state
        .unsynced
        .iter()
        .filter(|_| rng.gen_bool(0.5))
        .collect();
    let last_write = kept
        .iter()
        .rposition(|change| matches!(change, Change::Write { .. }));
    let mut content = state.synced.clone();
    for (i, change) in kept.into_iter().enumerate() {
        let torn;
        let change = match change {
            Change::Write { offset, bytes } if Some(i) == last_write => {
                let keep = rng.gen_range(0..=bytes.len());
                torn = Change::Write {
                    offset: *offset,
                    bytes: bytes[..keep].to_vec(),
                };
                &torn
            }
            change => change,
        };
        // Every change was applied once already, to `current`, so it fits again.
        if apply(&mut content, change).is_err() {
            break;
        }
    }
    durable(content)
}

/// A synced file holding `content` under a durable name.
fn durable(content: Vec<u8>) -> Named {
    let file = FileState {
        synced: content.clone(),
        current: content,
        unsynced: Vec::new(),
    };
    Named {
        file: Arc::new(Mutex::new(file)),
        name_durable: true,
        undo: None,
    }
}

impl MemoryIo {
    /// An empty set of files (clone it to share them, e.g. with a reopen after a crash).
    pub fn new() -> MemoryIo {
        MemoryIo::default()
    }

    /// What a power cut now could leave on disk, chosen by `seed` (see the module docs).
    /// Every file of the image is synced and its name durable.
    pub fn crash(&self, seed: u64) -> MemoryIo {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut image = BTreeMap::new();
        for (path, named) in lock(&self.files).iter() {
            if !named.name_durable && rng.gen_bool(0.5) {
                // The name never reached the disk; a rename that made it is undone whole.
                if let Some(undo) = &named.undo {
                    if let Some(replaced) = &undo.replaced {
                        image.insert(path.clone(), crashed(replaced, &mut rng));
                    }
                    if let Some(source) = &undo.source {
                        image.insert(source.clone(), crashed(&named.file, &mut rng));
                    }
                }
                continue;
            }
            // A later entry may be the undone rename that brings back this name's old file;
            // the rename happened after this name was made, so the undone state wins.
            image
                .entry(path.clone())
                .or_insert_with(|| crashed(&named.file, &mut rng));
        }
        MemoryIo {
            files: Arc::new(Mutex::new(image)),
        }
    }

    /// A copy of every file as reads see it now, synced and its name durable: a backup of a
    /// closed store (whose every change is synced), or of a live one as a copy would read it.
    pub fn snapshot(&self) -> MemoryIo {
        let image = lock(&self.files)
            .iter()
            .map(|(path, named)| (path.clone(), durable(lock(&named.file).current.clone())))
            .collect();
        MemoryIo {
            files: Arc::new(Mutex::new(image)),
        }
    }

    /// The bytes of `path` as reads see them now, if the file exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let files = lock(&self.files);
        let named = files.get(path)?;
        let content = lock(&named.file).current.clone();
        Some(content)
    }

    /// Puts `bytes` at `path` as a synced, durable file (a test's starting state).
    pub fn insert_synced(&self, path: &Path, bytes: Vec<u8>) {
        lock(&self.files).insert(path.to_path_buf(), durable(bytes));
    }
}

impl LogIo for MemoryIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<LogFile> {
        let mut files = lock(&self.files);
        let file = match (files.get(path), mode) {
            (Some(named), _) => named.file.clone(),
            (None, OpenMode::Read) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no file {} in memory", path.display()),
                ))
            }
            (None, OpenMode::ReadWrite) => {
                let file = Arc::new(Mutex::new(FileState::default()));
                files.insert(
                    path.to_path_buf(),
                    Named {
                        file: file.clone(),
                        name_durable: false,
                        undo: None,
                    },
                );
                file
            }
        };
        Ok(LogFile::from(Handle {
            file,
            writable: mode == OpenMode::ReadWrite,
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        for (path, named) in lock(&self.files).iter_mut() {
            if path.parent() == Some(dir) {
                named.name_durable = true;
                named.undo = None;
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = lock(&self.files);
        let Some(moved) = files.remove(from) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {} in memory", from.display()),
            ));
        };
        // The durable names a crash may bring back: a name made by an earlier rename not
        // yet durable brings back what that rename would.
        let durable_file = |named: Named| match named.name_durable {
            true => Some(named.file),
            false => named.undo.and_then(|undo| undo.replaced),
        };
        let source = match (moved.name_durable, &moved.undo) {
            (true, _) => Some(from.to_path_buf()),
            (false, Some(undo)) => undo.source.clone(),
            (false, None) => None,
        };
        let replaced = files.remove(to).and_then(durable_file);
        files.insert(
            to.to_path_buf(),
            Named {
                file: moved.file,
                name_durable: false,
                undo: Some(Undo { replaced, source }),
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> PathBuf {
        PathBuf::from("/mem/f")
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_at_most_the_unsynced_writes_in_order() {
        let io = MemoryIo::new();
        let file = io.open(&path(), OpenMode::ReadWrite).unwrap();
        io.sync_dir(Path::new("/mem")).unwrap();
        io.write_all_at(&file, b"synced", 0).unwrap();
        io.sync_data(&file).unwrap();
        io.write_all_at(&file, b"+one", 6).unwrap();
        io.write_all_at(&file, b"+two", 10).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let bytes = io.crash(seed).contents(&path()).expect("a durable name");
            assert!(bytes.starts_with(b"synced"), "seed {seed}: {bytes:?}");
            let tail = &bytes[6..];
            // Either write may be missing (a hole of zeros), and the later kept one torn.
            assert!(tail.len() <= 8, "seed {seed}: {bytes:?}");
            for (i, &b) in tail.iter().enumerate() {
                assert!(b == 0 || b == b"+one+two"[i], "seed {seed}: {bytes:?}");
            }
            seen.insert(bytes);
        }
        assert!(seen.contains(b"synced".as_slice()), "nothing kept");
        assert!(seen.contains(b"synced+one+two".as_slice()), "all kept");
        assert!(seen.len() > 4, "torn images too: {}", seen.len());
        assert_eq!(io.contents(&path()).unwrap(), b"synced+one+two");
    }

    #[test]
    fn a_file_whose_directory_was_never_synced_may_vanish_and_one_that_was_never_does() {
        let io = MemoryIo::new();
        let file = io.open(&path(), OpenMode::ReadWrite).unwrap();
        io.write_all_at(&file, b"x", 0).unwrap();
        io.sync_data(&file).unwrap();
        let vanished = (0..64).filter(|&s| io.crash(s).contents(&path()).is_none());
        assert!(vanished.count() > 0);
        io.sync_dir(Path::new("/mem")).unwrap();
        assert!((0..64).all(|s| io.crash(s).contents(&path()) == Some(b"x".to_vec())));
    }

    #[test]
    fn a_rename_not_made_durable_is_kept_or_undone_whole() {
        let io = MemoryIo::new();
        let (old, tmp) = (path(), PathBuf::from("/mem/f.tmp"));
        io.insert_synced(&old, b"old".to_vec());
        let file = io.open(&tmp, OpenMode::ReadWrite).unwrap();
        io.write_all_at(&file, b"new", 0).unwrap();
        io.sync_data(&file).unwrap();
        io.rename(&tmp, &old).unwrap();
        assert_eq!(io.contents(&old).unwrap(), b"new");
        assert!(io.contents(&tmp).is_none());
        let images: std::collections::BTreeSet<_> = (0..64)
            .map(|seed| {
                io.crash(seed)
                    .contents(&old)
                    .expect("never both names lost")
            })
            .collect();
        // The tmp file's own name was never durable, so an undone rename leaves no tmp.
        assert!((0..64).all(|seed| io.crash(seed).contents(&tmp).is_none()));
        let both = [b"new".to_vec(), b"old".to_vec()].into_iter().collect();
        assert_eq!(images, both);
        io.sync_dir(Path::new("/mem")).unwrap();
        assert!((0..64).all(|seed| io.crash(seed).contents(&old) == Some(b"new".to_vec())));
    }

    #[test]
    fn the_same_seed_gives_the_same_image() {
        let io = MemoryIo::new();
        let file = io.open(&path(), OpenMode::ReadWrite).unwrap();
        for i in 0..20u8 {
            io.write_all_at(&file, &[i; 7], u64::from(i) * 7).unwrap();
        }
        for seed in 0..16 {
            assert_eq!(
                io.crash(seed).contents(&path()),
                io.crash(seed).contents(&path())
            );
        }
    }

    #[test]
    fn a_read_only_handle_cannot_write_and_a_missing_file_is_not_found() {
        let io = MemoryIo::new();
        let err = io.open(&path(), OpenMode::Read).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        io.insert_synced(&path(), b"abc".to_vec());
        let file = io.open(&path(), OpenMode::Read).unwrap();
        let err = io.write_all_at(&file, b"z", 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(io.len(&file).unwrap(), 3);
    }
}
