//! The API's wire types: what the JSON bodies, the OpenAPI schemas and the stream messages are
//! made of, one file per area. The store's rows are the database's shape; these are the
//! API's. Each type converts from its row (`From<Row>`, and from `&Row` where a handler only
//! borrows one), so a column added to a table reaches clients only when a field is added
//! here, and a field renamed here cannot rename a column.
//!
//! The names are the OpenAPI component names generated clients know (`Order`, `Strategy`,
//! …): keep them, and keep each field's name, type and `serde` attributes, or clients break.

pub mod backtests;
pub mod live;
pub mod market;
pub mod modules;
pub mod orders;
pub mod risk;
pub mod signals;
pub mod strategies;
pub mod users;

/// A symbol in a request: 1 to 32 letters, digits or `. _ - / : ^ =` (what
/// `routes::strategies::check_symbols` accepts). Documents the form only; requests carry
/// symbols as strings.
pub struct Symbol;

/// [`Symbol`]'s pattern.
pub const SYMBOL_PATTERN: &str = r"^[A-Za-z0-9._/:^=-]{1,32}$";

impl utoipa::PartialSchema for Symbol {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(SYMBOL_PATTERN))
            .into()
    }
}

impl utoipa::ToSchema for Symbol {}
