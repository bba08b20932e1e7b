//! Market data: CSV bars and the multi-symbol merge (being written).
