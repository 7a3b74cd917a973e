//! Named profiles that ship with Glass. Each lives in `netem/presets/NAME.toml`
//! with comments that say where its numbers come from (a public source, or
//! Glass's own representative choice); `glass profile show NAME` prints it.

use crate::config::LinkProfiles;
use crate::error::ConfigError;

/// (name, TOML text), in the order `glass profile list` shows them.
const PRESETS: &[(&str, &str)] = &[
    ("none", include_str!("../presets/none.toml")),
    ("wifi", include_str!("../presets/wifi.toml")),
    ("lte", include_str!("../presets/lte.toml")),
    ("4g", include_str!("../presets/4g.toml")),
    ("3g", include_str!("../presets/3g.toml")),
    ("satellite", include_str!("../presets/satellite.toml")),
    ("long-haul", include_str!("../presets/long-haul.toml")),
];

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// The TOML text of a preset.
pub fn text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A preset, parsed and validated.
pub fn preset(name: &str) -> Option<Result<LinkProfiles, ConfigError>> {
    text(name).map(|t| LinkProfiles::from_toml(name, t, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_validates() {
        for name in names() {
            let p = preset(name)
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            p.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(p.description.is_some(), "{name} needs a description");
        }
        assert!(preset("nope").is_none());
    }
}
