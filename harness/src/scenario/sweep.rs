//! Sweeps: a scenario's `[sweep]` axes, each point a full scenario.

use std::path::Path;

use netem::ConfigError;
use netem::locate;

use super::{Result, Scenario, ScenarioFile};

/// One point of a sweep: its coordinates (field path → value, as written)
/// and the scenario with those values set.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    pub coords: std::collections::BTreeMap<String, String>,
    pub scenario: Scenario,
}

impl SweepPoint {
    /// "loss=2%, rate=1Mbit/s" from the paths' last segments; "" without a sweep.
    pub fn label(&self) -> String {
        self.coords
            .iter()
            .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const SWEEP_MAX_POINTS: usize = 10_000;

/// Sets the field at a dotted `path` (`media.bitrate`,
/// `networks.lossy.first_mile.uplink`: an array of tables is entered by an
/// element's `name`, or by its index).
fn set_path(
    root: &mut toml::Value,
    path: &str,
    value: toml::Value,
) -> std::result::Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = root;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        cur = match cur {
            toml::Value::Table(t) => {
                if last {
                    t.insert((*seg).to_string(), value);
                    return Ok(());
                }
                t.entry((*seg).to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(a) => {
                let idx = a
                    .iter()
                    .position(|e| e.get("name").and_then(|n| n.as_str()) == Some(seg))
                    .or_else(|| seg.parse::<usize>().ok().filter(|&i| i < a.len()))
                    .ok_or_else(|| format!("{path}: no element named or numbered \"{seg}\""))?;
                if last {
                    a[idx] = value;
                    return Ok(());
                }
                &mut a[idx]
            }
            _ => {
                return Err(format!(
                    "{path}: \"{seg}\" is inside a value that is not a table"
                ));
            }
        };
    }
    Err(format!("{path}: empty path"))
}

fn display_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Scenario {
    /// A scenario file's sweep points (one point, with no coordinates, when
    /// it has no `[sweep]` table). `[sweep]` maps field paths to lists of
    /// values, or names an axis that sets several fields to each value
    /// (`one_way_delay = { set = [UP, DOWN], values = ["10ms", "50ms"] }`:
    /// an RTT axis); the points are their product, in the order written.
    pub fn sweep_from_file(path: &Path) -> Result<Vec<SweepPoint>> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let mut points = Self::sweep_from_toml(&path.display().to_string(), &text, path.parent())?;
        for p in &mut points {
            p.scenario.source = Some(path.to_path_buf());
        }
        Ok(points)
    }

    pub fn sweep_from_toml(
        origin: &str,
        text: &str,
        base_dir: Option<&Path>,
    ) -> Result<Vec<SweepPoint>> {
        let located = |e: ConfigError| locate(origin, text, e);
        let mut root: toml::Table =
            toml::from_str(text).map_err(|e| located(ConfigError::Toml(e.to_string())))?;
        let Some(sweep) = root.remove("sweep") else {
            return Ok(vec![SweepPoint {
                coords: Default::default(),
                scenario: Self::from_toml(origin, text, base_dir)?,
            }]);
        };
        let toml::Value::Table(sweep) = sweep else {
            return Err(located(ConfigError::invalid(
                "sweep",
                "a table of field = [values]",
            )));
        };
        // Each axis: its name (the coordinate's key), the fields it sets,
        // and its values.
        let mut axes: Vec<(String, Vec<String>, Vec<toml::Value>)> = Vec::new();
        for (k, v) in sweep {
            let bad = |what: &str| located(ConfigError::invalid(format!("sweep.{k}"), what));
            match v {
                toml::Value::Array(vals) if !vals.is_empty() => {
                    axes.push((k.clone(), vec![k], vals))
                }
                toml::Value::Table(mut t) => {
                    const WHAT: &str =
                        "a named axis: { set = [\"field.path\", …], values = [v, …] }";
                    let set: Vec<String> = match t.remove("set") {
                        Some(toml::Value::Array(paths)) if !paths.is_empty() => paths
                            .into_iter()
                            .map(|p| p.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                            .ok_or_else(|| bad(WHAT))?,
                        _ => return Err(bad(WHAT)),
                    };
                    let vals = match t.remove("values") {
                        Some(toml::Value::Array(vals)) if !vals.is_empty() => vals,
                        _ => return Err(bad(WHAT)),
                    };
                    if let Some(other) = t.keys().next() {
                        return Err(bad(&format!("unknown key \"{other}\" ({WHAT})")));
                    }
                    axes.push((k, set, vals));
                }
                _ => {
                    return Err(bad(
                        "a non-empty list of values, or a named axis { set, values }",
                    ));
                }
            }
        }
        let total: usize = axes.iter().map(|(_, _, v)| v.len()).product();
        if total > SWEEP_MAX_POINTS {
            return Err(located(ConfigError::invalid(
                "sweep",
                format!("{total} points; at most {SWEEP_MAX_POINTS}"),
            )));
        }
        let mut points = Vec::with_capacity(total);
        for n in 0..total {
            let mut value = toml::Value::Table(root.clone());
            let mut coords = std::collections::BTreeMap::new();
            let mut rest = n;
            // The last axis varies fastest.
            let mut chosen = vec![0; axes.len()];
            for (i, (_, _, vals)) in axes.iter().enumerate().rev() {
                chosen[i] = rest % vals.len();
                rest /= vals.len();
            }
            for ((name, paths, vals), &c) in axes.iter().zip(&chosen) {
                for path in paths {
                    set_path(&mut value, path, vals[c].clone())
                        .map_err(|e| located(ConfigError::invalid(format!("sweep.{name}"), e)))?;
                }
                coords.insert(name.clone(), display_value(&vals[c]));
            }
            let file: ScenarioFile = value.try_into().map_err(|e: toml::de::Error| {
                ConfigError::invalid("sweep", format!("{origin}, point {coords:?}: {e}"))
            })?;
            let scenario = file.validate(base_dir).map_err(|e| {
                ConfigError::invalid("sweep", format!("{origin}, point {coords:?}: {e}"))
            })?;
            points.push(SweepPoint { coords, scenario });
        }
        Ok(points)
    }
}
