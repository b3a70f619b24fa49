//! Config parsing never panics and never accepts what it cannot use: any input either
//! parses into a checked config or yields errors that each name the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz/deployer.toml");
    if let Err(errors) = deployer::config::Config::parse(path, text.to_string()) {
        assert!(!errors.0.is_empty());
        for error in &errors.0 {
            assert!(error.to_string().starts_with("fuzz/deployer.toml"));
        }
    }
});
