//! TODO: the strategies routes.

use utoipa_axum::router::OpenApiRouter;

use crate::api::state::AppState;

/// The strategies routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
