//! `bundle`: bundle loading on arbitrary input, both as compiled JSON (the
//! filter's configuration) and as a YAML document (the CLI's input): errors,
//! never panics.

use portcullis_core::bundle::{Bundle, yaml};

pub fn check(data: &[u8]) {
    let _ = Bundle::from_json(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = yaml::load_sources(&[("fuzz.yaml".to_string(), text.to_string())]);
    }
}
