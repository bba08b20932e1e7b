//! Strategies, their versions and their default instances.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use qtm_store::strategies as rows;

/// A strategy as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Strategy {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// The user who uploaded it (`None` once that user is deleted).
    pub owner_id: Option<i64>,
    /// `upload` or `clone`.
    pub source: String,
    /// The strategy this one was cloned from.
    pub cloned_from: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<rows::Strategy> for Strategy {
    fn from(s: rows::Strategy) -> Self {
        Strategy {
            id: s.id,
            name: s.name,
            description: s.description,
            owner_id: s.owner_id,
            source: s.source,
            cloned_from: s.cloned_from,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// One uploaded component of a strategy (without its bytes).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Version {
    pub id: i64,
    pub strategy_id: i64,
    /// 1, 2, … per strategy.
    pub version: i64,
    /// Hex SHA-256 of the component bytes.
    pub content_sha256: String,
    /// The contract the component was built for, e.g. `qtm:strategy@0.1.0`.
    pub contract_version: String,
    /// The component's `describe` output: name, version, description, symbols, params.
    #[schema(value_type = Object)]
    pub describe: Value,
    pub size_bytes: i64,
    pub created_by: Option<i64>,
    pub created_at: i64,
}

impl From<rows::Version> for Version {
    fn from(v: rows::Version) -> Self {
        Version {
            id: v.id,
            strategy_id: v.strategy_id,
            version: v.version,
            content_sha256: v.content_sha256,
            contract_version: v.contract_version,
            describe: v.describe,
            size_bytes: v.size_bytes,
            created_by: v.created_by,
            created_at: v.created_at,
        }
    }
}

/// A configured, runnable use of a strategy version.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Instance {
    pub id: i64,
    pub strategy_id: i64,
    pub version_id: i64,
    /// The version number `version_id` has.
    pub version: i64,
    /// Resolved parameters, `{"name": value}`, every declared parameter present.
    #[schema(value_type = Object)]
    pub params: Value,
    pub symbols: Vec<String>,
    /// `disabled`, `enabled`, `halted` or `failed`.
    pub status: String,
    pub status_reason: Option<String>,
    pub snapshot_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<rows::Instance> for Instance {
    fn from(i: rows::Instance) -> Self {
        Instance {
            id: i.id,
            strategy_id: i.strategy_id,
            version_id: i.version_id,
            version: i.version,
            params: i.params,
            symbols: i.symbols,
            status: i.status,
            status_reason: i.status_reason,
            snapshot_at: i.snapshot_at,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// A strategy with the version its default instance runs and that instance.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StrategyRecord {
    #[serde(flatten)]
    pub strategy: Strategy,
    pub current_version: Version,
    pub instance: Instance,
}

impl From<rows::StrategyRecord> for StrategyRecord {
    fn from(r: rows::StrategyRecord) -> Self {
        StrategyRecord {
            strategy: r.strategy.into(),
            current_version: r.current_version.into(),
            instance: r.instance.into(),
        }
    }
}
