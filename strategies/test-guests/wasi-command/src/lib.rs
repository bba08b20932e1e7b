//! A WASI command uploaded as a strategy: it imports two WASI interfaces and exports
//! `wasi:cli/run` instead of `qtm:strategy/guest`. The upload gate must name every one of
//! those problems in one refusal.

// The WASI interfaces are defined here, not by a WASI crate, so bindings are generated too.
wit_bindgen::generate!({ path: "wit", world: "command", generate_all });

use exports::wasi::cli::run::Guest;

struct Command;

impl Guest for Command {
    fn run() -> Result<(), ()> {
        // Uses both imports, so neither is removed as dead code.
        let args = wasi::cli::environment::get_arguments();
        if args.is_empty() && wasi::random::random::get_random_u64() == 0 {
            return Err(());
        }
        Ok(())
    }
}

export!(Command);
