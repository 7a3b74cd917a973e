//! A link profile from a command-line or scenario argument: a profile
//! file, else a preset name, else a netem line. Its own module because it
//! knows all three sources (`config`, `presets`, `netem_line`), which do not
//! know each other.

use std::path::Path;

use crate::config::LinkProfiles;
use crate::error::ConfigError;

/// Resolves `arg`: an existing file, else a preset name, else a netem line.
pub fn resolve(arg: &str) -> Result<LinkProfiles, ConfigError> {
    let path = Path::new(arg);
    if path.is_file() {
        return LinkProfiles::from_file(path);
    }
    if let Some(p) = crate::presets::preset(arg) {
        return p;
    }
    let first = arg.split_whitespace().next().unwrap_or("");
    if crate::netem_line::is_keyword(first) {
        let p = crate::netem_line::parse(arg)?;
        p.validate(None)?;
        return Ok(LinkProfiles::symmetric(arg, p));
    }
    if arg.ends_with(".toml") {
        return Err(ConfigError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    Err(ConfigError::UnknownProfile {
        name: arg.to_string(),
        presets: crate::presets::names().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_and_unknown_profile() {
        let e = resolve("/nonexistent/x.toml").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.toml"), "{e}");
        let e = resolve("5g-magic").unwrap_err().to_string();
        assert!(e.contains("not a preset") && e.contains("4g"), "{e}");
    }

    #[test]
    fn a_preset_a_netem_line_and_a_file_each_resolve() {
        assert_eq!(resolve("4g").unwrap().name, "4g");
        let line = resolve("delay 10ms loss 1%").unwrap();
        assert_eq!(line.uplink, line.downlink);
        let dir = std::env::temp_dir().join(format!("netem-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.toml");
        std::fs::write(&f, "[delay]\nbase = \"5ms\"\n").unwrap();
        let from_file = resolve(f.to_str().unwrap()).unwrap();
        assert!(from_file.uplink.delay.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
