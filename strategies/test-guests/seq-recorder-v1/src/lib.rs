//! seq-recorder, version 1 (see `../seq-recorder.rs`).
const VERSION: &str = "v1";
include!("../../seq-recorder.rs");
