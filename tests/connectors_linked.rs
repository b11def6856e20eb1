//! Every connector crate the binary depends on is linked (src/connectors.rs), so that its
//! `inventory` registrations exist at run time.

#[test]
fn every_connector_dependency_is_linked_into_the_binary() {
    let manifest = std::fs::read_to_string("Cargo.toml").expect("Cargo.toml");
    let linked = std::fs::read_to_string("src/connectors.rs").expect("src/connectors.rs");
    // Only the `[dependencies]` table: dev-dependencies are not linked into the binary.
    let dependencies: Vec<String> = manifest
        .lines()
        .skip_while(|line| line.trim() != "[dependencies]")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| line.trim().strip_prefix("connector-"))
        .filter_map(|rest| rest.split([' ', '=', '.']).next())
        .map(|name| format!("connector_{}", name.replace('-', "_")))
        .collect();
    assert!(dependencies.len() >= 6, "{dependencies:?}");
    for name in dependencies {
        assert!(
            linked.contains(&format!("use {name} as _;")),
            "{name} is a dependency but not linked in src/connectors.rs"
        );
    }
}
