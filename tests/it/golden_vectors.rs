//! Golden vectors for entry format v1: the exact bytes, hashes and signatures of fixed
//! entries signed by keys from fixed seeds. Any change to the layout, the hash tag or the
//! signing fails here; a deliberate change bumps `FORMAT_VERSION` and docs/FORMAT.md, and
//! these literals are regenerated in the same commit.
//!
//! The cross-checks do not use `Entry::encode_body` or the crate's verifier: they rebuild the
//! body from the layout documented in docs/FORMAT.md, hash it with plain `sha2`, and verify
//! with `ed25519_dalek::VerifyingKey::verify_strict`, so they prove the document is enough
//! to check an entry without this crate.

use ed25519_dalek::{Signature as DalekSignature, VerifyingKey};
use sha2::{Digest, Sha256};

use kappalog::entry::{Entry, UnsignedEntry, MAX_DATA_BYTES};
use kappalog::hash::Hash;
use kappalog::identity::Identity;
use kappalog::signature;

struct Vector {
    name: &'static str,
    /// The key is `Identity::from_seed([seed; 32])`.
    seed: u8,
    seq: u64,
    timestamp: u64,
    prev: Option<&'static str>,
    value: i64,
    data: fn() -> String,
    author: &'static str,
    /// The whole body in hex, or None for the long vector (pinned by `body_sha256`).
    body: Option<&'static str>,
    body_len: usize,
    /// Plain sha256 of the body (no tag): pins long bodies without pasting them.
    body_sha256: &'static str,
    hash: &'static str,
    signature: &'static str,
    encoded_len: usize,
}

/// 4096 bytes: the letters a..z repeated, so data sits exactly at `MAX_DATA_BYTES`.
fn data_at_limit() -> String {
    (b'a'..=b'z').cycle().take(4096).map(char::from).collect()
}

const V1_HASH: &str = "57a64594d936c6b1ee709c4986e3976e66f7691a18a4b20b2046f21b4423550f";

const VECTORS: [Vector; 5] = [
    Vector {
        name: "first entry, no prev, empty data",
        seed: 0,
        seq: 1,
        timestamp: 0,
        prev: None,
        value: 0,
        data: String::new,
        author: "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
        body: Some(
            "01\
             3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\
             0000000000000001\
             0000000000000000\
             00\
             0000000000000000\
             00000000",
        ),
        body_len: 62,
        body_sha256: "ce824739f8666d4d03a3dffd04b8d4a8cd3c42e3d4cae516bfd00a07e5f2aef0",
        hash: V1_HASH,
        signature: "1057c87e82423e33a1a20c34cae4d17c48256483ebbd6c104c9b5af8795f3112\
                    618ff6ff766e494de1a36ede6126eaf3e16c4415de1ed0f6592c806d7542db0e",
        encoded_len: 126,
    },
    Vector {
        name: "second entry, prev = first, unicode data with comma, quote and newline",
        seed: 0,
        seq: 2,
        timestamp: 1_700_000_000_000,
        prev: Some(V1_HASH),
        value: -1,
        data: || "héllo, \"wörld\"\n✓ 🦀".to_string(),
        author: "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
        body: Some(
            "01\
             3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\
             0000000000000002\
             0000018bcfe56800\
             01\
             57a64594d936c6b1ee709c4986e3976e66f7691a18a4b20b2046f21b4423550f\
             ffffffffffffffff\
             00000019\
             68c3a96c6c6f2c202277c3b6726c64220ae29c9320f09fa680",
        ),
        body_len: 119,
        body_sha256: "42a70517c1c97758a2ad4e2ef813809e2f1779b4ce7807bd5cec729fc1a22fea",
        hash: "6a850e733f55aa04d91561970c927b545df4c3f1acebcf51be3cc3804cde3bab",
        signature: "8922bab1ee4f9feddc7982af336b140edc3ab356c75fd85d632ff6c8eda858f7\
                    923c73f45359e14ff51ecb18317ca00e812a3922c7ad542bc96448a0a4d7f908",
        encoded_len: 183,
    },
    Vector {
        name: "i64::MIN value, u64::MAX timestamp",
        seed: 1,
        seq: 1,
        timestamp: u64::MAX,
        prev: None,
        value: i64::MIN,
        data: || "min".to_string(),
        author: "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
        body: Some(
            "01\
             8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\
             0000000000000001\
             ffffffffffffffff\
             00\
             8000000000000000\
             00000003\
             6d696e",
        ),
        body_len: 65,
        body_sha256: "d035c421c0d8a57b6dafb27f226dc57fd4feb65da6d2b340357dcd56e7fd79e5",
        hash: "406dcd224566eb7e952cf4bdaa14675995cdbf44b182c4410ad9a8474aa00c68",
        signature: "6ea166225051951ce6235c839bf236b16fc3655dee95fc41f59be8f780af2a88\
                    b0837922608de91cbd02cd02905141095175897a04f4d58f54b44f4d6d094e07",
        encoded_len: 129,
    },
    Vector {
        name: "i64::MAX value, u64::MAX seq",
        seed: 2,
        seq: u64::MAX,
        timestamp: 1,
        prev: Some("abababababababababababababababababababababababababababababababab"),
        value: i64::MAX,
        data: || "max".to_string(),
        author: "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
        body: Some(
            "01\
             8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394\
             ffffffffffffffff\
             0000000000000001\
             01\
             abababababababababababababababababababababababababababababababab\
             7fffffffffffffff\
             00000003\
             6d6178",
        ),
        body_len: 97,
        body_sha256: "70bae0354cd2b63680d0bef42f81f9e2e4dd91cc6666f05ed7d199c8cfc860e9",
        hash: "ea46d4bd711dd3a5d3e135aca9d104edc20f6feefd0ba7e85e853e3305df43c9",
        signature: "e464f5ac633f93c251b20926cf29931faf304c124701639dd5816489713cffc1\
                    2828ca55724aa05627974c637736315efbfb89bf9a404f83da13451555c24607",
        encoded_len: 161,
    },
    Vector {
        name: "data of exactly MAX_DATA_BYTES",
        seed: 3,
        seq: 3,
        timestamp: 1_700_000_000_123,
        prev: Some("1111111111111111111111111111111111111111111111111111111111111111"),
        value: 42,
        data: data_at_limit,
        author: "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1",
        body: None,
        body_len: 4190,
        body_sha256: "bbc487ee8c7a46d3bade045aac4fa41d2a034993b63181458c5396afd0477932",
        hash: "32f855b9a6c9a962355a72b2396f843b53a360e3abb6ad4410e68c79ae1051ce",
        signature: "02b53b7f2ddb65d4a97d9f00da2e4820a039f7866e5f2138953743cc35d9a4a7\
                    0ab9fe6b606c4141f1f6c6957ffe746fca67ba336ba9bf4434d4f3ddc018be08",
        encoded_len: 4254,
    },
];

fn bytes32(hex_str: &str) -> [u8; 32] {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

fn unsigned(v: &Vector) -> UnsignedEntry {
    UnsignedEntry {
        author: Identity::from_seed([v.seed; 32]).author(),
        seq: v.seq,
        timestamp: v.timestamp,
        prev: v.prev.map(|p| Hash(bytes32(p))),
        value: v.value,
        data: (v.data)(),
    }
}

/// The body built from the table in docs/FORMAT.md, field by field, without the crate.
fn body_from_the_documented_layout(v: &Vector) -> Vec<u8> {
    let data = (v.data)();
    let mut body = vec![0x01]; // format version
    body.extend_from_slice(&bytes32(v.author));
    body.extend_from_slice(&v.seq.to_be_bytes());
    body.extend_from_slice(&v.timestamp.to_be_bytes());
    match v.prev {
        None => body.push(0x00),
        Some(prev) => {
            body.push(0x01);
            body.extend_from_slice(&bytes32(prev));
        }
    }
    body.extend_from_slice(&v.value.to_be_bytes());
    body.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    body.extend_from_slice(data.as_bytes());
    body
}

#[test]
fn each_vector_has_its_pinned_bytes() {
    for v in &VECTORS {
        let (entry, hash) = unsigned(v).sign(&Identity::from_seed([v.seed; 32]));
        let body = entry.encode_body();
        assert_eq!(entry.author.to_hex(), v.author, "{}: author", v.name);
        if let Some(body_hex) = v.body {
            assert_eq!(hex::encode(&body), body_hex, "{}: body", v.name);
        }
        assert_eq!(body.len(), v.body_len, "{}: body length", v.name);
        assert_eq!(
            hex::encode(Sha256::digest(&body)),
            v.body_sha256,
            "{}: body sha256",
            v.name
        );
        assert_eq!(hash.to_string(), v.hash, "{}: hash", v.name);
        assert_eq!(entry.hash(), hash, "{}: Entry::hash", v.name);
        assert_eq!(
            entry.signature.to_hex(),
            v.signature,
            "{}: signature",
            v.name
        );
        let encoded = entry.encode();
        assert_eq!(encoded.len(), v.encoded_len, "{}: encoded length", v.name);
        assert_eq!(
            entry.encoded_len(),
            v.encoded_len,
            "{}: encoded_len",
            v.name
        );
        assert_eq!(
            encoded[..body.len()],
            body[..],
            "{}: encoded = body || sig",
            v.name
        );
        assert_eq!(
            hex::encode(&encoded[body.len()..]),
            v.signature,
            "{}",
            v.name
        );
        let (decoded, decoded_hash) = Entry::decode(&encoded).unwrap();
        assert_eq!(decoded, entry, "{}: decode", v.name);
        assert_eq!(decoded_hash, hash, "{}: decoded hash", v.name);
    }
}

#[test]
fn hash_is_recomputed_from_the_documented_layout_with_plain_sha256() {
    for v in &VECTORS {
        let body = body_from_the_documented_layout(v);
        if let Some(body_hex) = v.body {
            assert_eq!(hex::encode(&body), body_hex, "{}", v.name);
        }
        assert_eq!(
            hex::encode(Sha256::digest(&body)),
            v.body_sha256,
            "{}",
            v.name
        );
        let hash = Sha256::new()
            .chain_update(b"kappalog/entry")
            .chain_update(&body)
            .finalize();
        assert_eq!(hex::encode(hash), v.hash, "{}", v.name);
    }
}

#[test]
fn signature_verifies_with_dalek_verify_strict_over_the_32_hash_bytes() {
    for v in &VECTORS {
        let key = VerifyingKey::from_bytes(&bytes32(v.author)).unwrap();
        let sig_bytes: [u8; 64] = hex::decode(v.signature).unwrap().try_into().unwrap();
        let hash = bytes32(v.hash);
        key.verify_strict(&hash, &DalekSignature::from_bytes(&sig_bytes))
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        // The crate's acceptance rule agrees on these ordinary signatures.
        let author = v.author.parse().unwrap();
        let sig = v.signature.parse().unwrap();
        assert_eq!(
            signature::verify(&author, &Hash(hash), &sig),
            Ok(()),
            "{}",
            v.name
        );
        // And the signature does not cover anything else: a one-bit change to the hash fails.
        let mut other = hash;
        other[0] ^= 1;
        assert!(key
            .verify_strict(&other, &DalekSignature::from_bytes(&sig_bytes))
            .is_err());
    }
}

#[test]
fn vectors_cover_what_they_claim() {
    let second = (VECTORS[1].data)();
    assert!(second.contains(',') && second.contains('"') && second.contains('\n'));
    assert!(!second.is_ascii());
    assert_eq!(
        VECTORS[1].prev,
        Some(VECTORS[0].hash),
        "the second vector chains onto the first"
    );
    assert_eq!((VECTORS[4].data)().len(), MAX_DATA_BYTES);
    assert_eq!(VECTORS[2].value, i64::MIN);
    assert_eq!(VECTORS[3].value, i64::MAX);
}
