//! Server integration tests (server_trading): filled in by its area.
