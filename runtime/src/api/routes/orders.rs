//! TODO: the orders routes.

use utoipa_axum::router::OpenApiRouter;

use crate::api::state::AppState;

/// The orders routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
