//! TODO: the backtests routes.

use utoipa_axum::router::OpenApiRouter;

use crate::api::state::AppState;

/// The backtests routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
