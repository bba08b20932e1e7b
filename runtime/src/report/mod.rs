//! HTML backtest report (being written).
