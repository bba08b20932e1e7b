//! TODO: the risk routes.

use utoipa_axum::router::OpenApiRouter;

use crate::api::state::AppState;

/// The risk routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
