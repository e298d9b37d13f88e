//! Embeds `sql/`, `seeds/` and `config/` into the binary: generates a list of (file name, contents) pairs.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut code = String::new();
    for (constant, dir) in [
        ("MIGRATIONS", "sql"),
        ("SEEDS", "seeds"),
        ("CONFIGS", "config"),
    ] {
        let path = Path::new(&manifest).join(dir);
        println!("cargo:rerun-if-changed={}", path.display());
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let _ = writeln!(code, "pub static {constant}: &[(&str, &str)] = &[");
        for file in files {
            println!("cargo:rerun-if-changed={}", file.display());
            let name = file
                .file_name()
                .expect("a file has a name")
                .to_string_lossy();
            let _ = writeln!(
                code,
                "    ({name:?}, include_str!({:?})),",
                file.display().to_string()
            );
        }
        code.push_str("];\n");
    }
    std::fs::write(Path::new(&out_dir).join("embedded.rs"), code).expect("writing embedded.rs");
}
