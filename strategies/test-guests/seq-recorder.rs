// Shared body of the seq-recorder test guests; each crate sets `VERSION` and includes this.
// Logs `<VERSION> seq=<ts> count=<n>` for every bar; `count` survives a hot swap through
// snapshot/restore, so a test sees both which code ran and that state carried over.
// With `act_every = N` it also buys 1 unit on every N-th bar, which ends a batched `resume`
// right after that bar: the hook for swapping in the middle of a batch.

use qtm_guest_sdk::prelude::*;

pub struct SeqRecorder {
    count: u64,
    act_every: u64,
}

impl Strategy for SeqRecorder {
    fn info() -> Info {
        Info::new("seq-recorder", VERSION)
            .description("logs every bar it sees")
            .param(ParamSpec::int("act_every", 0, 0, 1_000_000, 1).describe("buy every N bars; 0 = never"))
    }
    fn new(params: &Params, _: &[String]) -> Result<Self, String> {
        Ok(Self { count: 0, act_every: params.int("act_every")? as u64 })
    }
    fn on_bar(&mut self, ctx: &mut Context, _symbol: SymbolId, bar: &Bar) {
        self.count += 1;
        ctx.info(&format!("{VERSION} seq={} count={}", bar.ts, self.count));
        if self.act_every > 0 && self.count.is_multiple_of(self.act_every) {
            let name = ctx.symbol(_symbol).to_string();
            let _ = ctx.buy(&name, 1.0);
        }
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut w = StateWriter::new();
        w.u64(self.count);
        w.finish()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state);
        self.count = r.u64()?;
        Ok(r.expect_end()?)
    }
}

qtm_guest_sdk::export_strategy!(SeqRecorder);
