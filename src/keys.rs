//! Key files: where a node's [`Identity`] lives on disk.
//!
//! # Files
//!
//! - `NAME.key`: the secret key, an ed25519 private key in PKCS#8 PEM (RFC 5208 / RFC 8410,
//!   label `PRIVATE KEY`). kappalog writes PKCS#8 version 1 (the 32-byte secret only), the
//!   exact form `openssl genpkey -algorithm ed25519` writes, so keys can be made and inspected
//!   with standard tools; it reads version 1 and version 2 (secret plus public key, checked
//!   to match). kappalog writes it with
//!   mode 0600, set when the file is created (never a window where it is world readable), and
//!   never overwrites an existing key file.
//! - `NAME.pub`: the public key (the feed's [`Author`]) as 64 lowercase hex digits and a
//!   newline. It is derived from the secret and only written for humans and scripts; loading
//!   never needs it, but if it exists and disagrees with the secret, loading warns.
//!
//! # Outcomes
//!
//! Every way a key file can be unusable is its own [`KeyError`] variant whose message is one
//! line naming the path. A usable key with a problem that does not stop the node (a secret
//! readable by group or others, a stale `.pub`) loads and comes back with [`KeyWarning`]s for
//! the caller to log: this module does no logging of its own decisions.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

// ed25519-dalek re-exports only part of `pkcs8`; `der` (with its `pem` module) is reached
// through `spki`, so no extra dependency is needed for the PEM and DER parsing.
use ed25519_dalek::pkcs8::spki::der::{self, pem, pem::LineEnding};
use ed25519_dalek::pkcs8::{
    self, EncodePrivateKey, KeypairBytes, ObjectIdentifier, PrivateKeyInfoRef,
};
use ed25519_dalek::SigningKey;

use crate::identity::{Author, Identity};

/// The largest key file read. A PKCS#8 ed25519 PEM is about 120 bytes; anything far larger
/// is not a key, and the limit is checked before the file is read into memory.
pub const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// The mode of a secret key file kappalog creates: owner read/write only.
pub const SECRET_KEY_MODE: u32 = 0o600;

/// The PEM label of an unencrypted PKCS#8 private key.
const PKCS8_LABEL: &str = "PRIVATE KEY";

/// Why a key file cannot be used (or created). Each message is one line naming the path.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No file at the path (loading never creates one; [`load_or_create`] does).
    #[error("key file {path} does not exist")]
    Missing {
        /// The secret key file looked for.
        path: PathBuf,
    },
    /// The file exists but reading it failed (permissions, a directory, an I/O error).
    #[error("key file {path} cannot be read: {source}")]
    Unreadable {
        /// The secret key file.
        path: PathBuf,
        /// The read's error.
        source: io::Error,
    },
    /// The file is over [`MAX_KEY_FILE_BYTES`]; refused before it is read into memory.
    #[error(
        "key file {path} is {len} bytes, larger than any key ({MAX_KEY_FILE_BYTES} bytes at most)"
    )]
    TooLarge {
        /// The secret key file.
        path: PathBuf,
        /// Its size on disk, in bytes.
        len: u64,
    },
    /// No `PRIVATE KEY` PEM block in the file.
    #[error("key file {path} is not PEM (expected a '-----BEGIN PRIVATE KEY-----' block)")]
    NotPem {
        /// The secret key file.
        path: PathBuf,
    },
    /// The PEM block or the DER inside it ends early.
    #[error("key file {path} is truncated ({reason})")]
    Truncated {
        /// The secret key file.
        path: PathBuf,
        /// Where it ends early, for the operator.
        reason: String,
    },
    /// A key of another kind: a PEM block with another label, or PKCS#8 of another algorithm.
    #[error("key file {path} is not an ed25519 PKCS#8 private key (found {found})")]
    NotEd25519 {
        /// The secret key file.
        path: PathBuf,
        /// What was found instead: another PEM label, or the key's algorithm.
        found: String,
    },
    /// A `PRIVATE KEY` block that is not a usable ed25519 key: bad base64 or DER, or a key
    /// the ed25519 parser refuses (such as a v2 public key that does not match the secret).
    #[error("key file {path} is a malformed ed25519 PKCS#8 key: {reason}")]
    Malformed {
        /// The secret key file.
        path: PathBuf,
        /// What is wrong, for the operator.
        reason: String,
    },
    /// Creating a key found a file already there; keys are never overwritten.
    #[error("key file {path} already exists; refusing to overwrite a key")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The key name could escape the key directory or hide the file (see [`key_path`]).
    #[error("key name {name:?} is invalid: use 1-64 letters, digits, '-' or '_'")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// Creating or writing a key file (secret or public) failed.
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The write's error.
        source: io::Error,
    },
}

/// A loaded key that is usable but deserves the operator's attention.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyWarning {
    /// The secret key file is readable by group or others.
    #[error(
        "secret key file {path} has mode {mode:04o}: readable by group or others, run chmod 600"
    )]
    PermissiveMode {
        /// The secret key file.
        path: PathBuf,
        /// Its permission bits (the low 12 bits of the Unix mode).
        mode: u32,
    },
    /// The `.pub` file next to the secret names another key; the secret wins.
    #[error("public key file {path} does not match the secret key (secret is {actual})")]
    PublicFileMismatch {
        /// The `.pub` file.
        path: PathBuf,
        /// The author the secret key actually gives.
        actual: Author,
    },
}

/// Whether [`load_or_create`] found a key or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// An existing key file was read.
    Loaded,
    /// No key file existed; a fresh key was generated and written (mode 0600).
    Created,
}

/// `dir/NAME.key` for a key name, checking the name cannot escape `dir` or hide the file.
pub fn key_path(dir: &Path, name: &str) -> Result<PathBuf, KeyError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(KeyError::InvalidName { name: name.into() });
    }
    Ok(dir.join(format!("{name}.key")))
}

/// The public key file next to a secret key file: `NAME.key` -> `NAME.pub`; any other name
/// gets `.pub` appended (so the two paths can never be the same file).
pub fn public_key_path(secret_path: &Path) -> PathBuf {
    if secret_path.extension().is_some_and(|ext| ext == "key") {
        secret_path.with_extension("pub")
    } else {
        let mut name = secret_path.as_os_str().to_owned();
        name.push(".pub");
        PathBuf::from(name)
    }
}

/// Generates a fresh identity and writes `secret_path` (PKCS#8 PEM, mode 0600, refusing to
/// overwrite) and its `.pub` sibling. Creates the parent directory (mode 0700) if missing.
pub fn generate_key_files(secret_path: &Path) -> Result<Identity, KeyError> {
    let identity = Identity::generate();
    write_key_files(secret_path, &identity)?;
    Ok(identity)
}

/// Writes an existing identity to `secret_path` and its `.pub` sibling, as
/// [`generate_key_files`] does.
pub fn write_key_files(secret_path: &Path, identity: &Identity) -> Result<(), KeyError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source: io::Error| KeyError::Write { path, source }
    };
    if let Some(parent) = secret_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent).map_err(write_err(parent))?;
    }
    // PKCS#8 v1 (secret only), as openssl writes it. ed25519-dalek's own encoding is v2 with
    // the public key included, which OpenSSL 3.0 refuses to read ("unsupported"); the public
    // key is derived from the secret anyway.
    let secret_only = KeypairBytes {
        secret_key: identity.signing_key().to_bytes(),
        public_key: None,
    };
    let pem = secret_only
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Write {
            path: secret_path.to_owned(),
            source: io::Error::other(e.to_string()),
        })?;
    let mut file = open_new_secret(secret_path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists {
                path: secret_path.to_owned(),
            }
        } else {
            KeyError::Write {
                path: secret_path.to_owned(),
                source,
            }
        }
    })?;
    // Synced before the .pub is written, so a crash never leaves a .pub without its secret.
    let written = file
        .write_all(pem.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        // A half-written secret would later fail to load as truncated; remove it so a retry
        // can create the key. The removal's own failure changes nothing for the caller.
        drop(file);
        let _ = fs::remove_file(secret_path);
        return Err(KeyError::Write {
            path: secret_path.to_owned(),
            source,
        });
    }
    let pub_path = public_key_path(secret_path);
    fs::write(&pub_path, format!("{}\n", identity.author().to_hex()))
        .map_err(write_err(&pub_path))?;
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_new_secret(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SECRET_KEY_MODE)
        .open(path)
}

#[cfg(not(unix))]
fn open_new_secret(path: &Path) -> io::Result<fs::File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Loads a PKCS#8 PEM ed25519 secret key (as written by kappalog or by
/// `openssl genpkey -algorithm ed25519`).
pub fn load_key(path: &Path) -> Result<(Identity, Vec<KeyWarning>), KeyError> {
    let unreadable = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            KeyError::Missing {
                path: path.to_owned(),
            }
        } else {
            KeyError::Unreadable {
                path: path.to_owned(),
                source,
            }
        }
    };
    let metadata = fs::metadata(path).map_err(unreadable)?;
    if metadata.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
            len: metadata.len(),
        });
    }
    let bytes = fs::read(path).map_err(unreadable)?;
    let key = parse_pkcs8_pem(&bytes).map_err(|problem| problem.at(path))?;
    let identity = Identity::from_signing_key(key);

    let mut warnings = Vec::new();
    if let Some(mode) = permissive_mode(&metadata) {
        warnings.push(KeyWarning::PermissiveMode {
            path: path.to_owned(),
            mode,
        });
    }
    let pub_path = public_key_path(path);
    // The .pub is advisory: a missing or unreadable one is not worth a warning.
    if let Ok(text) = fs::read_to_string(&pub_path) {
        if text.trim() != identity.author().to_hex() {
            warnings.push(KeyWarning::PublicFileMismatch {
                path: pub_path,
                actual: identity.author(),
            });
        }
    }
    Ok((identity, warnings))
}

/// Loads the key at `path`, or creates it (and its `.pub`) if there is no file there. This is
/// what `--key` does: a node gets an identity on first start.
pub fn load_or_create(path: &Path) -> Result<(Identity, KeyOrigin, Vec<KeyWarning>), KeyError> {
    match load_key(path) {
        Ok((identity, warnings)) => Ok((identity, KeyOrigin::Loaded, warnings)),
        Err(KeyError::Missing { .. }) => match generate_key_files(path) {
            Ok(identity) => Ok((identity, KeyOrigin::Created, Vec::new())),
            // Another process created it between our two calls: use theirs.
            Err(KeyError::AlreadyExists { .. }) => {
                load_key(path).map(|(identity, w)| (identity, KeyOrigin::Loaded, w))
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn permissive_mode(metadata: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn permissive_mode(_metadata: &fs::Metadata) -> Option<u32> {
    None
}

/// What is wrong with a key file's contents, before the path is attached.
enum ParseProblem {
    NotPem,
    Truncated(String),
    NotEd25519(String),
    Malformed(String),
}

impl ParseProblem {
    fn at(self, path: &Path) -> KeyError {
        let path = path.to_owned();
        match self {
            ParseProblem::NotPem => KeyError::NotPem { path },
            ParseProblem::Truncated(reason) => KeyError::Truncated { path, reason },
            ParseProblem::NotEd25519(found) => KeyError::NotEd25519 { path, found },
            ParseProblem::Malformed(reason) => KeyError::Malformed { path, reason },
        }
    }
}

/// Parses the first PEM block of a key file. Text before `-----BEGIN` (openssl can write
/// "Bag Attributes" there) is ignored.
fn parse_pkcs8_pem(bytes: &[u8]) -> Result<SigningKey, ParseProblem> {
    let text = std::str::from_utf8(bytes).map_err(|_| ParseProblem::NotPem)?;
    let begin = text.find("-----BEGIN ").ok_or(ParseProblem::NotPem)?;
    let block = &text[begin..];
    let after_begin = &block["-----BEGIN ".len()..];
    let label_end = after_begin
        .find("-----")
        .ok_or_else(|| ParseProblem::Truncated("the BEGIN line is cut off".into()))?;
    let label = &after_begin[..label_end];
    let end_line = format!("-----END {label}-----");
    let end = block
        .find(&end_line)
        .ok_or_else(|| ParseProblem::Truncated(format!("no '{end_line}' line")))?;
    let block = &block[..end + end_line.len()];
    if label != PKCS8_LABEL {
        return Err(ParseProblem::NotEd25519(format!("a PEM '{label}' block")));
    }
    let (_, der) =
        pem::decode_vec(block.as_bytes()).map_err(|e| ParseProblem::Malformed(e.to_string()))?;
    let info = PrivateKeyInfoRef::try_from(der.as_slice()).map_err(|e| match e {
        pkcs8::Error::Asn1(inner) if matches!(inner.kind(), der::ErrorKind::Incomplete { .. }) => {
            ParseProblem::Truncated(format!("DER ends early: {inner}"))
        }
        _ => ParseProblem::Malformed(e.to_string()),
    })?;
    let oid = info.algorithm.oid;
    if oid != ed25519_dalek::pkcs8::ALGORITHM_OID {
        return Err(ParseProblem::NotEd25519(describe_algorithm(oid)));
    }
    SigningKey::try_from(info).map_err(|e| ParseProblem::Malformed(e.to_string()))
}

/// A readable name for the key algorithms people are likely to point kappalog at by mistake.
fn describe_algorithm(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "an RSA key",
        "1.2.840.10045.2.1" => "an EC (ECDSA) key",
        "1.3.101.110" => "an X25519 key",
        "1.3.101.111" => "an X448 key",
        "1.3.101.113" => "an Ed448 key",
        _ => return format!("a key with algorithm OID {oid}"),
    };
    format!("{name}, algorithm OID {oid}")
}
