//! Server integration tests (server_strategies): filled in by its area.
