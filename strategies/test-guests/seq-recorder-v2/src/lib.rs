//! seq-recorder, version 2 (see `../seq-recorder.rs`).
const VERSION: &str = "v2";
include!("../../seq-recorder.rs");
