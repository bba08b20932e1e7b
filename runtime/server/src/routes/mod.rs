//! The `/api` routes, one file per area. Each file's `router()` returns its routes with their
//! OpenAPI entries; the `security` scopes of each entry are the access rule (see
//! [`crate::auth::access`]).

pub mod backtests;
pub mod imports;
pub mod live;
pub mod market;
pub mod modules;
pub mod notifications;
pub mod orders;
pub mod plugins;
pub mod portfolio;
pub mod quotes;
pub mod risk;
pub mod seeds;
pub mod signals;
pub mod strategies;
pub mod summaries;
pub mod system;
pub mod users;
