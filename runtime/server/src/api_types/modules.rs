//! Modules: the switchable, configurable parts of the platform.

use serde::Serialize;
use utoipa::ToSchema;

use qtm_store::modules as rows;

/// A module as listed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Module {
    /// Stable id (`replay-feed`, …).
    pub id: String,
    pub name: String,
    /// `feed`, `ingest`, `signals` or `engine`.
    pub kind: String,
    pub description: String,
    pub enabled: bool,
    /// `running`, `stopped` or an error text.
    pub status: String,
    pub updated_at: i64,
    /// The module's settings.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

impl From<rows::Module> for Module {
    fn from(m: rows::Module) -> Self {
        Module {
            id: m.id,
            name: m.name,
            kind: m.kind,
            description: m.description,
            enabled: m.enabled,
            status: m.status,
            updated_at: m.updated_at,
            config: m.config,
        }
    }
}

impl From<&rows::Module> for Module {
    fn from(m: &rows::Module) -> Self {
        m.clone().into()
    }
}
