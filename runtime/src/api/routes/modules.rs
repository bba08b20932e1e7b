//! TODO: the modules routes.

use utoipa_axum::router::OpenApiRouter;

use crate::api::state::AppState;

/// The modules routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
