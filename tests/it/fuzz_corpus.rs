//! Replays the fuzz corpus (`fuzz/corpus/<target>/*`) through the same target functions the
//! afl binaries run, so every input the fuzzer once found interesting, and every crasher
//! kept as a regression, is checked by a plain `cargo test` with no afl installed.

#[path = "../../fuzz/src/seeds.rs"]
mod seeds;
#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_runs_its_target_without_panicking() {
    let mut replayed = 0;
    for &(name, target) in targets::TARGETS {
        let files = files_in(&corpus_dir().join(name));
        assert!(!files.is_empty(), "no corpus for target {name}");
        for file in files {
            let bytes = fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{name} panicked on {}", file.display());
            replayed += 1;
        }
    }
    assert!(replayed >= targets::TARGETS.len());
}

#[test]
fn every_corpus_directory_belongs_to_a_target() {
    let names: BTreeSet<&str> = targets::TARGETS.iter().map(|(name, _)| *name).collect();
    for dir in files_in(&corpus_dir()) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(names.contains(name.as_str()), "no target named {name}");
    }
}

/// The committed seeds are what the generator makes: a format change that alters them must
/// refresh the files (`KAPPALOG_BLESS_FUZZ_SEEDS=1 cargo test --test it fuzz_corpus::`), or the
/// fuzzer would start from inputs the decoders no longer accept.
#[test]
fn seed_files_match_their_generator() {
    let bless = std::env::var_os("KAPPALOG_BLESS_FUZZ_SEEDS").is_some();
    let mut expected = BTreeSet::new();
    for seed in seeds::seeds() {
        let path = corpus_dir()
            .join(seed.target)
            .join(format!("seed-{}", seed.name));
        assert!(expected.insert(path.clone()), "seed named twice: {path:?}");
        if bless {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &seed.bytes).unwrap();
        } else {
            let committed = fs::read(&path).unwrap_or_default();
            assert!(committed == seed.bytes, "{} is stale", path.display());
        }
    }
    for &(name, _) in targets::TARGETS {
        for file in files_in(&corpus_dir().join(name)) {
            let is_seed = file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-");
            if is_seed && !expected.contains(&file) {
                assert!(bless, "{} is no longer generated", file.display());
                fs::remove_file(&file).unwrap();
            }
        }
    }
}
