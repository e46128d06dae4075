//! [`Views`]: the one owner of a node's view definitions. It holds them in memory, saves
//! every change to the definitions file before answering ([`super::file`]), publishes the
//! set to the indexer (a `watch`), and keeps what the indexer last said about the views'
//! indexes ([`Builds`]) to answer each view's state.
//!
//! Data flow: `PUT`/`DELETE /views/NAME` (or `--views FILE` at start) -> [`Views::put`] /
//! [`Views::remove`] -> file saved -> watch -> the indexer drops and creates indexes ->
//! [`Views::publish_builds`] -> `GET /views`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use super::definition::{DefinitionError, ViewDef, MAX_VIEWS};
use super::file::{self, ViewsFileError};
use super::index_name::index_name;
use crate::poison::lock;

/// A view's state, as `GET /views` shows it (derived from its indexes).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ViewState {
    /// Its indexes wait for the indexer (catching up, rebuilding, or building another's).
    Pending,
    /// One of its indexes is being built; `progress` is the share done, 0 to 1 (an
    /// estimate from the work SQLite has done).
    Building {
        /// Share of the view's indexes built.
        progress: f64,
    },
    /// Every index it needs exists.
    Ready,
    /// An index could not be built or kept; the view still answers, without it.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What the indexer says about the views' indexes, each named by its statement (as in
/// [`ViewDef::indexes`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Builds {
    /// Indexes that exist in the index database.
    pub present: BTreeSet<String>,
    /// The index being built and the share done.
    pub building: Option<(String, f64)>,
    /// Indexes that failed, with why; not tried again until the views change.
    pub failed: BTreeMap<String, String>,
}

/// Why a view could not be added.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The definition breaks a rule.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// The file could not be saved: nothing changed.
    #[error(transparent)]
    File(#[from] ViewsFileError),
}

/// How a put changed the views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// A new view.
    Created,
    /// A view of that name was replaced.
    Replaced,
    /// The same definition was there already.
    Unchanged,
}

/// The node's views (see the module docs). Cloning shares them.
#[derive(Clone, Debug)]
pub struct Views {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    data_dir: PathBuf,
    /// Held across a change and its save, so saves happen in the order changes do.
    defs: Mutex<BTreeMap<String, ViewDef>>,
    published: watch::Sender<Arc<Vec<ViewDef>>>,
    builds: Mutex<Builds>,
}

impl Views {
    /// The views kept in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Views, ViewsFileError> {
        let loaded = file::load(data_dir)?;
        let published = watch::Sender::new(Arc::new(loaded.clone()));
        let defs = loaded.into_iter().map(|v| (v.name.clone(), v)).collect();
        Ok(Views {
            shared: Arc::new(Shared {
                data_dir: data_dir.to_owned(),
                defs: Mutex::new(defs),
                published,
                builds: Mutex::new(Builds::default()),
            }),
        })
    }

    /// Every view, sorted by name, with its state.
    pub fn list(&self) -> Vec<(ViewDef, ViewState)> {
        let builds = lock(&self.shared.builds).clone();
        lock(&self.shared.defs)
            .values()
            .map(|def| (def.clone(), state_of(def, &builds)))
            .collect()
    }

    /// The view named `name`.
    pub fn get(&self, name: &str) -> Option<ViewDef> {
        lock(&self.shared.defs).get(name).cloned()
    }

    /// Adds `def` or replaces the view of its name, saved before it returns (blocking: call
    /// it off the runtime). `def` has passed [`crate::query::vet`].
    pub fn put(&self, def: ViewDef) -> Result<Put, PutError> {
        let mut defs = lock(&self.shared.defs);
        let put = match defs.get(&def.name) {
            Some(old) if *old == def => return Ok(Put::Unchanged),
            Some(_) => Put::Replaced,
            None if defs.len() >= MAX_VIEWS => return Err(DefinitionError::TooMany.into()),
            None => Put::Created,
        };
        let taken: BTreeMap<String, &str> = defs
            .values()
            .filter(|other| other.name != def.name)
            .flat_map(|other| {
                other
                    .indexes
                    .iter()
                    .filter_map(|i| index_name(i))
                    .map(|index| (index.to_ascii_lowercase(), other.name.as_str()))
            })
            .collect();
        for index in def.indexes.iter().filter_map(|i| index_name(i)) {
            if let Some(view) = taken.get(&index.to_ascii_lowercase()) {
                return Err(DefinitionError::IndexTaken {
                    index,
                    view: (*view).to_owned(),
                }
                .into());
            }
        }
        let mut next = defs.clone();
        next.insert(def.name.clone(), def);
        self.save_and_publish(&mut defs, next)?;
        Ok(put)
    }

    /// Drops the view named `name` (saved before it returns; blocking): `false` when there
    /// was none. Its indexes are dropped by the indexer; the log is never touched.
    pub fn remove(&self, name: &str) -> Result<bool, ViewsFileError> {
        let mut defs = lock(&self.shared.defs);
        if !defs.contains_key(name) {
            return Ok(false);
        }
        let mut next = defs.clone();
        next.remove(name);
        self.save_and_publish(&mut defs, next)?;
        Ok(true)
    }

    fn save_and_publish(
        &self,
        defs: &mut BTreeMap<String, ViewDef>,
        next: BTreeMap<String, ViewDef>,
    ) -> Result<(), ViewsFileError> {
        let list: Vec<ViewDef> = next.values().cloned().collect();
        file::save(&self.shared.data_dir, &list)?;
        *defs = next;
        self.shared.published.send_replace(Arc::new(list));
        Ok(())
    }

    /// The definitions as they change (the indexer follows this).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<ViewDef>>> {
        self.shared.published.subscribe()
    }

    /// The indexer's latest word on the views' indexes.
    pub fn publish_builds(&self, builds: Builds) {
        *lock(&self.shared.builds) = builds;
    }

    /// The share done of the index being built (between two [`Views::publish_builds`]).
    pub fn publish_progress(&self, statement: &str, share: f64) {
        lock(&self.shared.builds).building = Some((statement.to_owned(), share));
    }

    /// Whether some view needs the index `statement`.
    pub fn wants(&self, statement: &str) -> bool {
        lock(&self.shared.defs)
            .values()
            .any(|def| def.indexes.iter().any(|i| i == statement))
    }
}

/// A view's state from its indexes'.
fn state_of(def: &ViewDef, builds: &Builds) -> ViewState {
    if let Some(reason) = def.indexes.iter().find_map(|i| builds.failed.get(i)) {
        return ViewState::Failed {
            reason: reason.clone(),
        };
    }
    let present = def
        .indexes
        .iter()
        .filter(|i| builds.present.contains(*i))
        .count();
    if present == def.indexes.len() {
        return ViewState::Ready;
    }
    match &builds.building {
        Some((index, share)) if def.indexes.contains(index) => ViewState::Building {
            progress: (present as f64 + share.clamp(0.0, 1.0)) / def.indexes.len() as f64,
        },
        _ => ViewState::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, indexes: &[&str]) -> ViewDef {
        ViewDef {
            name: name.into(),
            sql: "SELECT count(*) FROM entries".into(),
            indexes: indexes.iter().map(|s| s.to_string()).collect(),
            description: String::new(),
        }
    }

    #[test]
    fn puts_are_saved_published_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let views = Views::open(dir.path()).unwrap();
        let mut seen = views.subscribe();
        let a = view("a", &["CREATE INDEX a_value ON entries(value)"]);
        assert_eq!(views.put(a.clone()).unwrap(), Put::Created);
        assert_eq!(views.put(a.clone()).unwrap(), Put::Unchanged);
        assert!(seen.has_changed().unwrap());
        assert_eq!(
            seen.borrow_and_update().as_slice(),
            std::slice::from_ref(&a)
        );
        let taken = views
            .put(view("b", &["CREATE INDEX A_VALUE ON entries(seq)"]))
            .unwrap_err();
        assert!(taken.to_string().contains("view a's"), "{taken}");
        assert_eq!(Views::open(dir.path()).unwrap().get("a"), Some(a));
        assert!(views.remove("a").unwrap());
        assert!(!views.remove("a").unwrap());
        assert_eq!(Views::open(dir.path()).unwrap().list(), []);
    }

    #[test]
    fn a_views_state_follows_its_indexes() {
        let def = view(
            "v",
            &[
                "CREATE INDEX i1 ON entries(value)",
                "CREATE INDEX i2 ON entries(seq)",
            ],
        );
        let mut builds = Builds::default();
        assert_eq!(state_of(&def, &builds), ViewState::Pending);
        builds.present.insert(def.indexes[0].clone());
        builds.building = Some((def.indexes[1].clone(), 0.5));
        assert_eq!(
            state_of(&def, &builds),
            ViewState::Building { progress: 0.75 }
        );
        builds.present.insert(def.indexes[1].clone());
        assert_eq!(state_of(&def, &builds), ViewState::Ready);
        builds.failed.insert(def.indexes[0].clone(), "no".into());
        assert_eq!(
            state_of(&def, &builds),
            ViewState::Failed {
                reason: "no".into()
            }
        );
        assert_eq!(
            state_of(&view("w", &[]), &Builds::default()),
            ViewState::Ready
        );
    }
}
