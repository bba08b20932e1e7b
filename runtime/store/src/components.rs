//! Component bytes at rest: as uploaded (`raw`), or as a zstd delta against a reference
//! component (`zstd-dict`).
//!
//! Rule programs are one evaluator with a different program written into it: stored raw,
//! every imported or evolved rule strategy cost about 300 KiB of identical code. With the
//! evaluator registered as the reference ([`Store::set_component_reference`]), each costs
//! about a kilobyte. The reference's bytes are stored (`component_dictionaries`), so a delta
//! stays readable after a later build registers another reference. Components are addressed
//! by the hash of their decoded bytes, so the encoding never changes what callers see.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sha2::{Digest, Sha256};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use super::{Store, StoreError, StoreResult, now, with_pool};

/// Bytes as uploaded.
pub(crate) const RAW: &str = "raw";
/// A zstd frame compressed against a stored dictionary.
pub(crate) const ZSTD_DICT: &str = "zstd-dict";

/// The most a stored delta may decode to: far above the largest upload the server takes, so
/// only a corrupted row reaches it.
pub const MAX_COMPONENT_BYTES: usize = 256 << 20;

/// A delta is kept only when it is at most this fraction of the raw bytes; an unrelated
/// component gains little from the dictionary and is stored as it came.
const KEEP_DELTA_BELOW: usize = 4;

/// zstd's level for deltas: the dictionary does the work, a higher level gains little.
const LEVEL: i32 = 3;

/// The reference in use and the dictionaries read so far.
#[derive(Default)]
pub(crate) struct Codec {
    reference: RwLock<Option<Arc<Reference>>>,
    dictionaries: Mutex<HashMap<String, Arc<DecoderDictionary<'static>>>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reference = self
            .reference
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|r| r.sha256.clone());
        f.debug_struct("Codec")
            .field("reference", &reference)
            .finish_non_exhaustive()
    }
}

struct Reference {
    sha256: String,
    encoder: EncoderDictionary<'static>,
}

/// A component ready for its `components` row ([`Store::encode_component`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// `raw` or `zstd-dict`.
    pub encoding: String,
    /// The dictionary a delta needs.
    pub dictionary: Option<String>,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// The component's own size.
    pub raw_len: usize,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Store {
    /// Store components written from now on as deltas against `bytes` where that makes them
    /// much smaller (the rule evaluator, for rule programs). Idempotent; returns the
    /// reference's hash.
    pub async fn set_component_reference(&self, bytes: &[u8]) -> StoreResult<String> {
        let sha256 = sha256_hex(bytes);
        with_pool!(self, p => sqlx::query(
            "INSERT INTO component_dictionaries (sha256, bytes, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&sha256)
        .bind(bytes)
        .bind(now())
        .execute(p)
        .await
    .map(|_| ()))?;
        self.codec
            .dictionaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sha256.clone(), Arc::new(DecoderDictionary::copy(bytes)));
        *self
            .codec
            .reference
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Reference {
            sha256: sha256.clone(),
            encoder: EncoderDictionary::copy(bytes, LEVEL),
        }));
        Ok(sha256)
    }
}

impl Store {
    /// A component as it is best stored: a delta against the reference where that is much
    /// smaller, else as it is. CPU work (milliseconds for a large component): callers that
    /// store many do it before their write transaction.
    pub fn encode_component(&self, bytes: &[u8]) -> Encoded {
        encode(self, bytes)
    }
}

/// `bytes` as they are best stored.
pub(crate) fn encode(store: &Store, bytes: &[u8]) -> Encoded {
    let reference = store
        .codec
        .reference
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(r) = reference {
        let delta = zstd::bulk::Compressor::with_prepared_dictionary(&r.encoder)
            .and_then(|mut c| c.compress(bytes));
        if let Ok(delta) = delta
            && delta.len().saturating_mul(KEEP_DELTA_BELOW) < bytes.len()
        {
            return Encoded {
                encoding: ZSTD_DICT.into(),
                dictionary: Some(r.sha256.clone()),
                bytes: delta,
                raw_len: bytes.len(),
            };
        }
    }
    Encoded {
        encoding: RAW.into(),
        dictionary: None,
        bytes: bytes.to_vec(),
        raw_len: bytes.len(),
    }
}

/// The component bytes of a `components` row.
pub(crate) async fn decode(
    store: &Store,
    encoding: &str,
    dictionary: Option<&str>,
    stored: Vec<u8>,
) -> StoreResult<Vec<u8>> {
    let corrupt = |message: String| StoreError::Corrupt {
        table: "components",
        message,
    };
    match encoding {
        RAW => Ok(stored),
        ZSTD_DICT => {
            let sha = dictionary.ok_or_else(|| corrupt("a delta without its dictionary".into()))?;
            let dict = decoder(store, sha).await?;
            zstd::bulk::Decompressor::with_prepared_dictionary(&dict)
                .and_then(|mut d| d.decompress(&stored, MAX_COMPONENT_BYTES))
                .map_err(|e| corrupt(format!("a delta that does not decode: {e}")))
        }
        other => Err(corrupt(format!("unknown encoding {other:?}"))),
    }
}

/// The dictionary `sha256`, read once per process.
async fn decoder(store: &Store, sha256: &str) -> StoreResult<Arc<DecoderDictionary<'static>>> {
    if let Some(d) = store
        .codec
        .dictionaries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(sha256)
    {
        return Ok(d.clone());
    }
    let bytes: Vec<u8> = with_pool!(store, p => sqlx::query_scalar(
        "SELECT bytes FROM component_dictionaries WHERE sha256 = $1",
    )
    .bind(sha256)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::Corrupt {
        table: "components",
        message: format!("dictionary {sha256} is missing"),
    })?;
    let d = Arc::new(DecoderDictionary::copy(&bytes));
    store
        .codec
        .dictionaries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(sha256.to_string(), d.clone());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two "components" sharing all but a few bytes, like two rule programs.
    fn pair() -> (Vec<u8>, Vec<u8>) {
        let mut base: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        base[..4].copy_from_slice(b"\0asm");
        let mut other = base.clone();
        other[150_000..150_040].copy_from_slice(&[42; 40]);
        (base, other)
    }

    #[tokio::test]
    async fn a_component_like_the_reference_is_stored_as_a_small_delta_and_read_back_exactly() {
        for s in crate::test_stores().await {
            let (base, other) = pair();
            // Without a reference: raw.
            assert_eq!(encode(&s, &other).encoding, RAW);
            s.set_component_reference(&base).await.unwrap();
            let e = encode(&s, &other);
            assert_eq!(e.encoding, ZSTD_DICT);
            assert!(e.bytes.len() < 1_000, "delta of {} bytes", e.bytes.len());
            let back = decode(&s, &e.encoding, e.dictionary.as_deref(), e.bytes)
                .await
                .unwrap();
            assert_eq!(back, other);
            // An unrelated component gains nothing: raw.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let noise: Vec<u8> = (0..10_000)
                .map(|_| {
                    // xorshift64: bytes with nothing for a dictionary to match.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 56) as u8
                })
                .collect();
            assert_eq!(encode(&s, &noise).encoding, RAW);
        }
    }

    #[tokio::test]
    async fn a_delta_reads_back_in_a_process_that_never_saw_its_reference() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let (base, other) = pair();
        let e = {
            let s = Store::open(&url).await.unwrap();
            s.set_component_reference(&base).await.unwrap();
            let e = encode(&s, &other);
            s.close().await;
            e
        };
        let fresh = Store::open(&url).await.unwrap();
        let back = decode(
            &fresh,
            &e.encoding,
            e.dictionary.as_deref(),
            e.bytes.clone(),
        )
        .await
        .unwrap();
        assert_eq!(back, other);
        let err = decode(&fresh, ZSTD_DICT, Some("feed"), e.bytes)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("dictionary feed is missing"),
            "{err}"
        );
    }
}
