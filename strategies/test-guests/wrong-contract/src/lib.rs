//! Exports `qtm:strategy/strategy@0.2.0`: the host (0.1.0) must refuse it, naming both versions.

wit_bindgen::generate!({ path: "wit", world: "strategy-v2" });

struct Future;

impl exports::qtm::strategy::strategy::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Future);
