//! TODO: the market routes.

use utoipa_axum::router::OpenApiRouter;

use crate::api::state::AppState;

/// The market routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
