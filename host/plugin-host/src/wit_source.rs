//! The plugin contract's WIT package as this binary implements it, embedded, so a
//! plugin author in a language without a deployer SDK (Python, JavaScript, C) gets the
//! exact `deployer:plugin` package from the binary alone (`deployer plugin wit`), with
//! no source checkout to point `wit/deps` at.

/// The package's files, as (file name, text), in `wit/`'s order.
pub const FILES: [(&str, &str); 3] = [
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    (
        "capabilities.wit",
        include_str!("../../../wit/capabilities.wit"),
    ),
];

/// The package as one WIT file: the files in order (one `package` line, the first's).
pub fn single_file() -> String {
    FILES
        .iter()
        .map(|(_, text)| text.trim_end())
        .collect::<Vec<_>>()
        .join("\n\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_package_is_the_one_the_host_implements() {
        let package = format!("package deployer:plugin@{};", crate::CONTRACT_VERSION);
        let headers = single_file()
            .lines()
            .filter(|line| line.starts_with("package "))
            .count();
        assert_eq!(headers, 1);
        assert!(single_file().contains(&package));
        // As one file it parses as the same package, with both worlds.
        let mut resolve = wit_parser::Resolve::new();
        let id = resolve
            .push_str("deployer-plugin.wit", &single_file())
            .unwrap();
        assert_eq!(
            resolve.packages[id].name.to_string(),
            format!("deployer:plugin@{}", crate::CONTRACT_VERSION)
        );
        for world in ["hook-plugin", "strategy-plugin"] {
            resolve.select_world(&[id], Some(world)).unwrap();
        }
    }
}
