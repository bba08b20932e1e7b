//! Host bindings generated from `wit/strategy.wit`, the single source of the contract.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "strategy",
    imports: { default: trappable },
});
