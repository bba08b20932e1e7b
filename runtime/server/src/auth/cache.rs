//! Recently read users. The gate needs the caller's current role and status on every request;
//! reading them from SQLite was most of the cost of a cheap GET. Entries live one second and
//! are dropped whenever this server changes the user, so a role change made through the API
//! applies at the next request, and one made by another process within a second.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use qtm_store::{self as store, Store, StoreResult, users::User};

/// How long a cached user is trusted.
pub const USER_TTL: Duration = Duration::from_secs(1);

/// The cache.
#[derive(Debug, Default)]
pub struct UserCache {
    map: RwLock<HashMap<i64, (Instant, User)>>,
}

impl UserCache {
    /// The user `id`, from the cache when fresh, else from the store.
    pub async fn get(&self, store: &Store, id: i64) -> StoreResult<User> {
        if let Some((at, user)) = self.map.read().expect("not poisoned").get(&id)
            && at.elapsed() < USER_TTL
        {
            return Ok(user.clone());
        }
        let user = store::users::by_id(store, id).await?;
        let mut map = self.map.write().expect("not poisoned");
        // Bounded by the number of users; clear stale entries when it grows.
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < USER_TTL);
        }
        map.insert(id, (Instant::now(), user.clone()));
        Ok(user)
    }

    /// Forget `id` (after changing it).
    pub fn invalidate(&self, id: i64) {
        self.map.write().expect("not poisoned").remove(&id);
    }
}
