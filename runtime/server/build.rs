// The demo data (`data/spy_1m_2011.csv`, Apache-2.0, see `data/README.md`) is embedded in the
// binary gzip-compressed, so a bare `qtm serve` has a market wherever it runs.
use std::io::Write;

fn main() {
    // Read at run time, not with `env!`: a build script compiled in one checkout is reused by
    // another with the same sources (a shared target directory), and must read that one's file.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let csv = std::path::Path::new(&manifest_dir).join("../../data/spy_1m_2011.csv");
    println!("cargo:rerun-if-changed={}", csv.display());
    let raw = std::fs::read(&csv).unwrap_or_else(|e| panic!("read {}: {e}", csv.display()));
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("spy_1m_2011.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw).expect("compress in memory");
    std::fs::write(&out, gz.finish().expect("compress in memory"))
        .unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}
