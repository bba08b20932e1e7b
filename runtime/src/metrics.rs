//! Backtest metrics (being written).
