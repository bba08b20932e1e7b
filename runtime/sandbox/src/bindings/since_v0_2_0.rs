//! `qtm:strategy@0.2.0`, frozen in `wit/since_v0.2.0/`: the latest version, which the host
//! implements directly (`sandbox/host.rs`). `next-bar` re-arms the guest's fuel and deadline
//! for every bar, so it is defined here with access to the store, over the generated one.

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use crate::host::HostState;

wasmtime::component::bindgen!({
    path: "../../wit/since_v0.2.0",
    world: "strategy",
    imports: { default: trappable },
});

/// Add this version's imports, with `next-bar` given the store.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    Strategy::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(linker, |s| s)?;
    linker.allow_shadowing(true);
    linker.instance("qtm:strategy/host@0.2.0")?.func_wrap(
        "next-bar",
        |store: StoreContextMut<'_, HostState>, (): ()| HostState::next_bar(store).map(|b| (b,)),
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
