//! A guest whose `describe` is over the host's caps: every `GET /api/strategies` would carry it
//! if the host kept it. The host must refuse the component at load, naming every cap broken.

use qtm_guest_sdk::prelude::*;

/// Never runs: its description alone is the attack.
pub struct HugeDescribe;

impl Strategy for HugeDescribe {
    fn info() -> Info {
        let choices: Vec<String> = (0..100).map(|i| format!("choice-{i}")).collect();
        let refs: Vec<&str> = choices.iter().map(String::as_str).collect();
        let mut info = Info::new("huge-describe", "1.0.0")
            .description(&"d".repeat(5_000))
            .param(ParamSpec::choice("pick", "choice-0", &refs));
        for i in 0..20 {
            info = info.param(ParamSpec::int(&format!("p{i}"), 0, 0, 1, 1).describe(&"q".repeat(4_000)));
        }
        info
    }
    fn new(_: &Params, _: &[String]) -> Result<Self, String> {
        Ok(HugeDescribe)
    }
    fn on_bar(&mut self, _: &mut Context, _: SymbolId, _: &Bar) {}
}

qtm_guest_sdk::export_strategy!(HugeDescribe);
