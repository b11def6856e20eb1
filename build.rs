//! Links every `connector-*` dependency into the `pipeline` binary.
//!
//! Connectors register themselves with `inventory::submit!`, but rustc only links crates
//! that are referenced. Generating `extern crate` lines from Cargo.toml means adding a
//! connector never requires editing `src/main.rs`.
use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=Cargo.toml");
    let manifest = fs::read_to_string("Cargo.toml").expect("read Cargo.toml");
    let mut crates: Vec<String> = manifest
        .lines()
        .filter_map(|line| line.trim().strip_prefix("connector-"))
        .filter_map(|rest| rest.split([' ', '=', '.']).next())
        .map(|name| format!("connector_{}", name.replace('-', "_")))
        .collect();
    crates.sort();
    crates.dedup();
    let body: String = crates
        .iter()
        .map(|c| format!("extern crate {c};\n"))
        .collect();
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR set by cargo")).join("connectors.rs");
    fs::write(out, body).expect("write connectors.rs");
}
