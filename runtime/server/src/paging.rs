//! One paging convention for every list: `?limit=N&cursor=C` asks for at most `N` items
//! after the cursor `C`, and the answer is `{"items": [...], "next_cursor": C' | null}`.
//! `next_cursor` is null on the last page, so a client pages with
//! `while cursor != null`; it never gets an empty trailing page. A cursor is the key of the
//! last item of the page before (opaque to clients: pass it back as it came).
//!
//! Large tables (orders, trades, fills, signals, alerts, backtests) page in SQL by keyset
//! (`id < cursor`, reading `limit + 1` rows to know whether more exist); the small,
//! owner-sized lists (strategies, instances, users, keys, versions…) page in memory.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};

/// Items a list answers when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;

/// The most items one page may ask for.
pub const MAX_LIMIT: i64 = 1000;

/// The paging of a list with no other filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The checked `limit`.
    pub fn limit(&self) -> ApiResult<i64> {
        limit(self.limit, MAX_LIMIT)
    }

    /// The checked id cursor.
    pub fn after_id(&self) -> ApiResult<Option<i64>> {
        id_cursor(self.cursor.as_deref())
    }

    /// A page of a whole list ordered by ascending id.
    pub fn page_by_id<R, T>(
        &self,
        rows: impl IntoIterator<Item = R>,
        id: impl Fn(&R) -> i64,
        map: impl FnMut(R) -> T,
    ) -> ApiResult<Page<T>> {
        let after = self.after_id()?;
        Ok(Page::from_all(
            rows,
            self.limit()?,
            |r| after.is_none_or(|a| id(r) > a),
            |r| id(r).to_string(),
            map,
        ))
    }

    /// A page of a whole list ordered by descending id (newest first).
    pub fn page_by_id_desc<R, T>(
        &self,
        rows: impl IntoIterator<Item = R>,
        id: impl Fn(&R) -> i64,
        map: impl FnMut(R) -> T,
    ) -> ApiResult<Page<T>> {
        let after = self.after_id()?;
        Ok(Page::from_all(
            rows,
            self.limit()?,
            |r| after.is_none_or(|a| id(r) < a),
            |r| id(r).to_string(),
            map,
        ))
    }
}

/// The paging of a list keyed by a name (symbols, module ids, webhook sources): the cursor is
/// the name of the last item of the page before.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NamePageQuery {
    /// At most this many items (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[A-Za-z0-9._:^=-]{0,64}$")]
    pub cursor: Option<String>,
}

impl NamePageQuery {
    /// The range of `keys` (sorted ascending, in byte order) on this page, and the next
    /// page's cursor.
    pub fn range_by_name<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k str> + Clone,
    ) -> ApiResult<(std::ops::Range<usize>, Option<String>)> {
        let limit = usize::try_from(limit(self.limit, MAX_LIMIT)?).unwrap_or(usize::MAX);
        let after = text_cursor(self.cursor.as_deref())?;
        let len = keys.len();
        let start = match after {
            None => 0,
            Some(a) => keys.clone().position(|k| k > a).unwrap_or(len),
        };
        let end = start.saturating_add(limit).min(len);
        let next = (end < len && end > start)
            .then(|| keys.clone().nth(end - 1).map(str::to_string))
            .flatten();
        Ok((start..end, next))
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null when this page is the last.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `rows` read with `LIMIT limit + 1` in the list's order: an extra row means
    /// there is a next page, which continues after the last row kept.
    pub fn from_overfetch<R>(
        mut rows: Vec<R>,
        limit: i64,
        key: impl Fn(&R) -> String,
        map: impl FnMut(R) -> T,
    ) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(map).collect(),
            next_cursor,
        }
    }

    /// A page of a whole list held in memory, in its order: the rows for which `past_cursor`
    /// holds, at most `limit` of them.
    pub fn from_all<R>(
        rows: impl IntoIterator<Item = R>,
        limit: i64,
        past_cursor: impl Fn(&R) -> bool,
        key: impl Fn(&R) -> String,
        map: impl FnMut(R) -> T,
    ) -> Self {
        let take = usize::try_from(limit).unwrap_or(0).saturating_add(1);
        let rows: Vec<R> = rows.into_iter().filter(past_cursor).take(take).collect();
        Self::from_overfetch(rows, limit, key, map)
    }
}

/// The `limit` of a list request: absent → [`DEFAULT_LIMIT`]; 1 to `max`, else a 422 that
/// names the range.
pub fn limit(limit: Option<i64>, max: i64) -> ApiResult<i64> {
    match limit {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::validation(
            "limit",
            format!("limit must be 1 to {max}, got {n}"),
        )),
    }
}

/// The `cursor` of a list keyed by id: absent, or an id some page answered as `next_cursor`.
pub fn id_cursor(cursor: Option<&str>) -> ApiResult<Option<i64>> {
    // An empty cursor is the first page, as no cursor is (`?cursor=` from a form or a loop).
    let Some(c) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    if (1..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Some(c.parse().unwrap_or(i64::MAX)))
    } else {
        Err(bad_cursor(c))
    }
}

/// The `cursor` of a list keyed by a name (symbols, module ids): absent, or a name of at
/// most 64 letters, digits and `. _ : ^ = -` (every name these lists hold; the documented
/// pattern, so a cursor the schema refuses is refused here too).
pub fn text_cursor(cursor: Option<&str>) -> ApiResult<Option<&str>> {
    match cursor.filter(|c| !c.is_empty()) {
        Some(c)
            if c.len() > 64
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:^=-".contains(&b)) =>
        {
            Err(bad_cursor(c))
        }
        other => Ok(other),
    }
}

fn bad_cursor(c: &str) -> ApiError {
    let shown: String = c.chars().take(40).collect();
    ApiError::validation(
        "cursor",
        format!(
            "cursor {shown:?} is not one this list gave: pass the next_cursor of the page before, or leave cursor out for the first page"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overfetched_row_makes_the_cursor_of_the_last_row_kept() {
        let p = Page::from_overfetch(vec![9, 8, 7], 2, |r| r.to_string(), |r| r);
        assert_eq!((p.items, p.next_cursor), (vec![9, 8], Some("8".into())));
        let p = Page::from_overfetch(vec![9, 8], 2, |r| r.to_string(), |r| r);
        assert_eq!((p.items, p.next_cursor), (vec![9, 8], None));
    }

    #[test]
    fn pages_of_a_list_in_memory_cover_it_once() {
        let all: Vec<i64> = (1..=7).collect();
        let mut cursor: Option<i64> = None;
        let mut seen = Vec::new();
        loop {
            let p = Page::from_all(
                all.iter().copied(),
                3,
                |r| cursor.is_none_or(|c| *r > c),
                |r| r.to_string(),
                |r| r,
            );
            seen.extend(p.items);
            match p.next_cursor {
                Some(c) => cursor = id_cursor(Some(&c)).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn limits_and_cursors_out_of_range_name_their_field() {
        assert_eq!(limit(None, 1000).unwrap(), 100);
        assert_eq!(limit(Some(1000), 1000).unwrap(), 1000);
        let e = limit(Some(0), 1000).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limit"));
        assert!(e.message.contains("1 to 1000"), "{}", e.message);
        assert_eq!(id_cursor(Some("42")).unwrap(), Some(42));
        let e = id_cursor(Some("abc")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cursor"));
        assert!(e.message.contains("next_cursor"), "{}", e.message);
        assert!(id_cursor(Some("1234567890123456789")).is_err());
        assert_eq!(text_cursor(Some("")).unwrap(), None);
        assert_eq!(id_cursor(Some("")).unwrap(), None);
        assert!(text_cursor(Some(&"x".repeat(65))).is_err());
        assert_eq!(text_cursor(Some("SPY")).unwrap(), Some("SPY"));
        assert_eq!(text_cursor(Some("BRK.B")).unwrap(), Some("BRK.B"));
        assert!(text_cursor(Some("S P")).is_err());
    }
}
