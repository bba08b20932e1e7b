//! The `qtm` binary.

fn main() -> std::process::ExitCode {
    qtm_runtime::cli::main()
}
