//! Build script shared by every crate whose binaries or tests link DuckDB (`build = "../../build/duckdb_rpath.rs"`).
//!
//! DuckDB is linked as a prebuilt shared library (`DUCKDB_LIB_DIR`, set in `.cargo/config.toml` to
//! `.duckdb/lib`, filled by `scripts/fetch-duckdb.sh`). This adds an rpath to it, so `seam`, the test
//! binaries and the benches find it at run time without `LD_LIBRARY_PATH`.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        let abs = std::fs::canonicalize(&dir)
            .map(|p| p.display().to_string())
            .unwrap_or(dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{abs}");
    }
}
