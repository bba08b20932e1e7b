//! Server integration tests (server_market): filled in by its area.
