//! TODO: the signals routes.

use utoipa_axum::router::OpenApiRouter;

use crate::api::state::AppState;

/// The signals routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
