//! Key files on real temp dirs: creation, loading, and each way a key file can be unusable.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kappalog::identity::Identity;
use kappalog::keys::{
    generate_key_files, key_path, load_key, load_or_create, public_key_path, write_key_files,
    KeyError, KeyOrigin, KeyWarning, MAX_KEY_FILE_BYTES,
};

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Writes `contents` as a key file with mode 0600 (so no permission warning interferes).
fn write_private(path: &Path, contents: &[u8]) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A valid PEM made by kappalog from a fixed seed.
fn valid_pem(dir: &Path) -> String {
    let path = dir.join("valid.key");
    write_key_files(&path, &Identity::from_seed([5; 32])).unwrap();
    fs::read_to_string(path).unwrap()
}

/// Runs openssl with `args`; None (with a note on stderr) if openssl is not installed —
/// unless `KAPPALOG_REQUIRE_OPENSSL` is set (CI sets it), where a missing openssl fails the
/// test instead of letting the cross-checks pass without running.
fn openssl(args: &[&str]) -> Option<Vec<u8>> {
    match Command::new("openssl").args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(out.stdout)
        }
        Err(e) => {
            assert!(
                std::env::var_os("KAPPALOG_REQUIRE_OPENSSL").is_none(),
                "KAPPALOG_REQUIRE_OPENSSL is set but openssl cannot run: {e}"
            );
            eprintln!("note: openssl not found, skipping the openssl part of this test");
            None
        }
    }
}

fn assert_one_line_naming(err: &KeyError, path: &Path) {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn generated_key_round_trips() {
    let dir = temp();
    let path = dir.path().join("node.key");
    let identity = generate_key_files(&path).unwrap();
    let (loaded, warnings) = load_key(&path).unwrap();
    assert_eq!(loaded.author(), identity.author());
    assert_eq!(warnings, vec![]);
    assert!(fs::read_to_string(&path)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\n"));
}

#[test]
fn secret_key_is_created_with_mode_0600() {
    let dir = temp();
    let path = dir.path().join("node.key");
    generate_key_files(&path).unwrap();
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn pub_file_is_lowercase_hex_and_newline() {
    let dir = temp();
    let path = dir.path().join("node.key");
    let identity = generate_key_files(&path).unwrap();
    let pub_path = dir.path().join("node.pub");
    assert_eq!(public_key_path(&path), pub_path);
    assert_eq!(
        fs::read_to_string(pub_path).unwrap(),
        format!("{}\n", identity.author().to_hex())
    );
}

#[test]
fn public_key_path_never_equals_the_secret_path() {
    assert_eq!(
        public_key_path(Path::new("a/n.key")),
        PathBuf::from("a/n.pub")
    );
    assert_eq!(public_key_path(Path::new("a/n")), PathBuf::from("a/n.pub"));
    assert_eq!(
        public_key_path(Path::new("a/n.pub")),
        PathBuf::from("a/n.pub.pub")
    );
}

#[test]
fn missing_parent_directory_is_created() {
    let dir = temp();
    let path = dir.path().join("deep/er/node.key");
    generate_key_files(&path).unwrap();
    assert!(path.exists());
    assert_eq!(mode_of(&dir.path().join("deep/er")), 0o700);
}

#[test]
fn existing_key_is_never_overwritten() {
    let dir = temp();
    let path = dir.path().join("node.key");
    generate_key_files(&path).unwrap();
    let before = fs::read(&path).unwrap();
    let err = generate_key_files(&path).unwrap_err();
    assert!(
        matches!(&err, KeyError::AlreadyExists { path: p } if p == &path),
        "{err:?}"
    );
    assert_one_line_naming(&err, &path);
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn key_from_seed_writes_the_same_identity() {
    let dir = temp();
    let path = dir.path().join("seeded.key");
    let identity = Identity::from_seed([9; 32]);
    write_key_files(&path, &identity).unwrap();
    let (loaded, _) = load_key(&path).unwrap();
    assert_eq!(loaded.signing_key().to_bytes(), [9; 32]);
}

#[test]
fn openssl_key_loads_with_the_same_public_key() {
    let dir = temp();
    let path = dir.path().join("ossl.key");
    let p = path.to_str().unwrap();
    if openssl(&["genpkey", "-algorithm", "ed25519", "-out", p]).is_none() {
        return;
    }
    let spki_der = openssl(&["pkey", "-in", p, "-pubout", "-outform", "DER"]).unwrap();
    // An ed25519 SubjectPublicKeyInfo is a fixed 12-byte header then the raw 32-byte key.
    assert_eq!(spki_der.len(), 44);
    let (identity, _) = load_key(&path).unwrap();
    assert_eq!(identity.author().as_bytes()[..], spki_der[12..]);
}

#[test]
fn openssl_rsa_and_ec_keys_are_not_ed25519() {
    let dir = temp();
    let rsa = dir.path().join("rsa.key");
    let ec = dir.path().join("ec.key");
    let made = openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        rsa.to_str().unwrap(),
    ])
    .and_then(|_| {
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            ec.to_str().unwrap(),
        ])
    });
    if made.is_none() {
        return;
    }
    for (path, what) in [(rsa, "RSA"), (ec, "EC")] {
        let err = load_key(&path).unwrap_err();
        match &err {
            KeyError::NotEd25519 { found, .. } => assert!(found.contains(what), "{found}"),
            other => panic!("{what}: expected NotEd25519, got {other:?}"),
        }
        assert_one_line_naming(&err, &path);
    }
}

#[test]
fn missing_file_is_missing() {
    let dir = temp();
    let path = dir.path().join("nope.key");
    let err = load_key(&path).unwrap_err();
    assert!(matches!(err, KeyError::Missing { .. }), "{err:?}");
    assert_one_line_naming(&err, &path);
}

#[test]
fn unreadable_file_is_unreadable() {
    // A directory passes `metadata` and fails `read`, whatever user runs the test (a chmod 000
    // file would still be readable by root).
    let dir = temp();
    let path = dir.path().join("adir.key");
    fs::create_dir(&path).unwrap();
    let err = load_key(&path).unwrap_err();
    assert!(matches!(err, KeyError::Unreadable { .. }), "{err:?}");
    assert_one_line_naming(&err, &path);
}

#[test]
fn huge_file_is_rejected_before_reading() {
    let dir = temp();
    let path = dir.path().join("big.key");
    let len = MAX_KEY_FILE_BYTES + 1;
    fs::File::create(&path).unwrap().set_len(len).unwrap();
    let err = load_key(&path).unwrap_err();
    assert!(
        matches!(err, KeyError::TooLarge { len: l, .. } if l == len),
        "{err:?}"
    );
}

#[test]
fn text_and_binary_files_are_not_pem() {
    let dir = temp();
    for (name, contents) in [
        ("text.key", &b"just some text\n"[..]),
        (
            "hex.key",
            &b"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\n"[..],
        ),
        ("binary.key", &[0xff, 0xfe, 0x00, 0x01][..]),
        ("empty.key", &b""[..]),
    ] {
        let path = dir.path().join(name);
        write_private(&path, contents);
        let err = load_key(&path).unwrap_err();
        assert!(matches!(err, KeyError::NotPem { .. }), "{name}: {err:?}");
        assert_one_line_naming(&err, &path);
    }
}

#[test]
fn cut_off_file_is_truncated() {
    let dir = temp();
    let pem = valid_pem(dir.path());
    // Cut in the base64, inside the BEGIN line, and inside the END line.
    for cut in [pem.len() / 2, 15, pem.len() - 10] {
        let path = dir.path().join(format!("cut{cut}.key"));
        write_private(&path, &pem.as_bytes()[..cut]);
        let err = load_key(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::Truncated { .. }),
            "cut {cut}: {err:?}"
        );
        assert_one_line_naming(&err, &path);
    }
}

#[test]
fn armor_intact_but_der_cut_short_is_truncated() {
    let dir = temp();
    let pem = valid_pem(dir.path());
    // Drop the last 4 base64 characters (one whole quantum, padding included): the armor and
    // the base64 stay valid, the DER loses its last bytes.
    let lines: Vec<&str> = pem.lines().collect();
    let last = lines[lines.len() - 2];
    assert!(last.len() > 4 && last.len().is_multiple_of(4), "{last}");
    let short = pem.replace(last, &last[..last.len() - 4]);
    let path = dir.path().join("short.key");
    write_private(&path, short.as_bytes());
    let err = load_key(&path).unwrap_err();
    assert!(matches!(err, KeyError::Truncated { .. }), "{err:?}");
}

#[test]
fn other_pem_labels_are_not_ed25519() {
    let dir = temp();
    let pem = valid_pem(dir.path());
    for label in [
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "PUBLIC KEY",
    ] {
        let path = dir.path().join("relabelled.key");
        write_private(&path, pem.replace("PRIVATE KEY", label).as_bytes());
        let err = load_key(&path).unwrap_err();
        match &err {
            KeyError::NotEd25519 { found, .. } => assert!(found.contains(label), "{found}"),
            other => panic!("{label}: expected NotEd25519, got {other:?}"),
        }
    }
}

#[test]
fn garbage_inside_the_armor_is_malformed() {
    let dir = temp();
    let path = dir.path().join("garbage.key");
    write_private(
        &path,
        b"-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n",
    );
    let err = load_key(&path).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
    assert_one_line_naming(&err, &path);
}

#[test]
fn group_or_world_readable_key_loads_with_a_warning() {
    let dir = temp();
    let path = dir.path().join("open.key");
    let identity = generate_key_files(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let (loaded, warnings) = load_key(&path).unwrap();
    assert_eq!(loaded.author(), identity.author());
    assert_eq!(
        warnings,
        vec![KeyWarning::PermissiveMode {
            path: path.clone(),
            mode: 0o644
        }]
    );
    assert!(warnings[0].to_string().contains("0644"));
}

#[test]
fn stale_pub_file_gives_a_warning() {
    let dir = temp();
    let path = dir.path().join("node.key");
    let identity = generate_key_files(&path).unwrap();
    fs::write(
        dir.path().join("node.pub"),
        format!("{}\n", "00".repeat(32)),
    )
    .unwrap();
    let (_, warnings) = load_key(&path).unwrap();
    assert_eq!(
        warnings,
        vec![KeyWarning::PublicFileMismatch {
            path: dir.path().join("node.pub"),
            actual: identity.author()
        }]
    );
}

#[test]
fn load_or_create_creates_once_then_loads() {
    let dir = temp();
    let path = dir.path().join("keys/node.key");
    let (created, origin, warnings) = load_or_create(&path).unwrap();
    assert_eq!(origin, KeyOrigin::Created);
    assert_eq!(warnings, vec![]);
    let (loaded, origin, _) = load_or_create(&path).unwrap();
    assert_eq!(origin, KeyOrigin::Loaded);
    assert_eq!(loaded.author(), created.author());
}

#[test]
fn load_or_create_does_not_replace_a_broken_key() {
    let dir = temp();
    let path = dir.path().join("broken.key");
    write_private(&path, b"not a key");
    assert!(matches!(
        load_or_create(&path),
        Err(KeyError::NotPem { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), b"not a key");
}

#[test]
fn key_names_cannot_escape_the_directory() {
    let dir = Path::new("keys");
    assert_eq!(key_path(dir, "node-1_a").unwrap(), dir.join("node-1_a.key"));
    for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
        assert!(
            matches!(key_path(dir, bad), Err(KeyError::InvalidName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn kappalog_key_is_readable_by_openssl() {
    let dir = temp();
    let path = dir.path().join("ours.key");
    let identity = generate_key_files(&path).unwrap();
    let Some(spki_der) = openssl(&[
        "pkey",
        "-in",
        path.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]) else {
        return;
    };
    assert_eq!(spki_der[12..], identity.author().as_bytes()[..]);
}

#[test]
fn pkcs8_v2_key_with_public_key_loads() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let dir = temp();
    let path = dir.path().join("v2.key");
    let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    write_private(&path, pem.as_bytes());
    let (identity, _) = load_key(&path).unwrap();
    assert_eq!(identity.author(), Identity::from_seed([4; 32]).author());
}
