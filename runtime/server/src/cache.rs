//! Serialized responses of hot read routes, kept until the store reports a write to what they
//! show (its catalog generation moves) or a short time passes (writes by another process, such
//! as `qtm` commands on the same database, show within that time).

use std::future::Future;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;

/// How long a cached body may be served without reading the tables again.
pub const RESPONSE_CACHE_TTL: Duration = Duration::from_secs(1);

/// One cached JSON body.
#[derive(Debug, Default)]
pub struct ResponseCache {
    slot: RwLock<Option<Entry>>,
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    built_at: Instant,
    body: Bytes,
}

impl ResponseCache {
    /// The body for the current `generation()`: the cached one while it is fresh, else
    /// `build`'s value serialized (and kept, unless the generation moved while it was being
    /// built).
    ///
    /// The generation is read before `build` reads the tables, so a write committed during
    /// the build leaves a newer generation behind and the stale body is never served twice.
    pub async fn get_or_build<T, F, Fut>(
        &self,
        generation: impl Fn() -> u64,
        build: F,
    ) -> Result<CachedJson, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let seen = generation();
        if let Some(e) = self.slot.read().unwrap_or_else(|p| p.into_inner()).as_ref()
            && e.generation == seen
            && e.built_at.elapsed() < RESPONSE_CACHE_TTL
        {
            return Ok(CachedJson(e.body.clone()));
        }
        let built_at = Instant::now();
        let body = CachedJson::of(&build().await?)?.0;
        if generation() == seen {
            *self.slot.write().unwrap_or_else(|p| p.into_inner()) = Some(Entry {
                generation: seen,
                built_at,
                body: body.clone(),
            });
        }
        Ok(CachedJson(body))
    }
}

/// A JSON body already serialized.
#[derive(Debug, Clone)]
pub struct CachedJson(pub Bytes);

impl CachedJson {
    /// `value` serialized, for a route that answers from its cache only in part.
    pub fn of(value: &impl Serialize) -> Result<Self, ApiError> {
        Ok(CachedJson(Bytes::from(
            crate::json::to_vec(value)
                .map_err(|e| ApiError::internal(format!("serializing a response: {e}")))?,
        )))
    }
}

impl IntoResponse for CachedJson {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn a_body_is_rebuilt_when_the_generation_moves_and_not_before() {
        let cache = ResponseCache::default();
        let builds = Cell::new(0);
        let build = |n: u32| {
            builds.set(builds.get() + 1);
            async move { Ok::<_, ApiError>(vec![n]) }
        };
        assert_eq!(
            &cache.get_or_build(|| 0, || build(1)).await.unwrap().0[..],
            b"[1]"
        );
        // Same generation: the first body, without a build.
        assert_eq!(
            &cache.get_or_build(|| 0, || build(2)).await.unwrap().0[..],
            b"[1]"
        );
        assert_eq!(builds.get(), 1);
        assert_eq!(
            &cache.get_or_build(|| 1, || build(3)).await.unwrap().0[..],
            b"[3]"
        );
        assert_eq!(builds.get(), 2);
    }

    #[tokio::test]
    async fn a_body_built_while_a_write_committed_is_served_once_and_not_kept() {
        let cache = ResponseCache::default();
        // The first read sees 4, the one after the build 5: a write committed meanwhile.
        let reads = Cell::new(4);
        let generation = || {
            let g = reads.get();
            reads.set(5);
            g
        };
        let old = cache
            .get_or_build(generation, || async { Ok::<_, ApiError>("old") })
            .await
            .unwrap();
        assert_eq!(&old.0[..], b"\"old\"");
        let again = cache
            .get_or_build(|| 5, || async { Ok::<_, ApiError>("rebuilt") })
            .await
            .unwrap();
        assert_eq!(&again.0[..], b"\"rebuilt\"");
    }

    #[tokio::test]
    async fn an_error_is_returned_and_nothing_is_kept() {
        let cache = ResponseCache::default();
        let e = cache
            .get_or_build(
                || 0,
                || async { Err::<u8, _>(ApiError::not_found("strategy 9")) },
            )
            .await
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.message.as_str()), (404, "strategy 9"));
        let ok = cache
            .get_or_build(|| 0, || async { Ok::<_, ApiError>(7) })
            .await
            .unwrap();
        assert_eq!(&ok.0[..], b"7");
    }
}
