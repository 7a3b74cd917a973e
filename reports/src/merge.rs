//! Sweeps run one index at a time (`glass run --plan P --index N`, on a
//! Kubernetes Indexed Job, a Slurm array or a loop) and merged back into one
//! results directory (`glass report merge`).
//!
//! Each index writes `DIR/runs/N/`: its results.json, frames.csv,
//! seconds.csv, and last a [`Manifest`]. The manifest is the index's
//! "done" mark: an index directory without one was interrupted and is
//! redone. The merge checks that every index of the plan is there exactly
//! once (naming the missing and duplicated ones), then writes the same files
//! a single-machine `glass run` writes, so `glass check`, `glass compare`
//! and the report work on it unchanged.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::results::{self, Results, ResultsError};

/// The schema of `manifest.json`.
pub const MANIFEST_SCHEMA: &str = "glass.run-manifest.v1";

/// What one index of a plan ran, where and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    /// The run's index in the plan, and how many runs the plan has.
    pub index: usize,
    pub runs_in_plan: usize,
    /// SHA-256 of the plan file and of the scenario's text.
    pub plan_sha256: String,
    pub scenario_sha256: String,
    pub glass_version: String,
    /// The git revision Glass was built from ("unknown" outside a checkout).
    pub git_revision: String,
    pub host: String,
    /// The mode the plan asked for, and the one the run used (they differ
    /// after a fallback the plan allowed; `fallback` says why).
    pub mode_asked: String,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub network: String,
    pub protocol: String,
    pub repeat: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, String>,
    /// The run's seed (the scenario seed's sub-seed for network and repeat).
    pub seed: u64,
    pub started_unix_s: f64,
    pub finished_unix_s: f64,
    /// "ok", or "failed" when any of the index's runs failed.
    pub status: String,
}

/// Why sweep indices could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a run manifest: {source}")]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("no finished index (no runs/N/manifest.json) under {0}")]
    Empty(String),
    #[error("the indices come from different plans: {0} and {1}")]
    Plans(PathBuf, PathBuf),
    #[error("the plan has {total} runs; {problems}")]
    Incomplete { total: usize, problems: String },
}

type Result<T> = std::result::Result<T, MergeError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MergeError + '_ {
    move |source| MergeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads DIR/manifest.json, if the index finished.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join("manifest.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| MergeError::Manifest { path, source })
}

/// Writes DIR/manifest.json (write, then rename: it is the "done" mark, so
/// it must never be seen half-written).
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let path = dir.join("manifest.json");
    let tmp = dir.join("manifest.json.tmp");
    let text = serde_json::to_string_pretty(m).map_err(ResultsError::Run)?;
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// The index directories under each of `dirs`: `D/runs/*` for a sweep's
/// output directory, or `D` itself when it holds a manifest.
fn index_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        if d.join("manifest.json").exists() {
            out.push(d.clone());
            continue;
        }
        let runs = d.join("runs");
        let rd = std::fs::read_dir(&runs).map_err(io(&runs))?;
        let mut found: Vec<PathBuf> = Vec::new();
        for entry in rd {
            let p = entry.map_err(io(&runs))?.path();
            if p.join("manifest.json").exists() {
                found.push(p);
            }
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// "3, 5-9, 12" from sorted indices.
fn ranges(v: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// What a merge found and wrote.
#[derive(Debug)]
pub struct Merged {
    pub runs_in_plan: usize,
    /// Indices whose runs failed (kept as failed runs, like `glass run`).
    pub failed: Vec<usize>,
    pub results: PathBuf,
}

/// Merges the finished indices under `dirs` into `out`: results.json (runs
/// in index order), frames.csv, seconds.csv and manifests.json. Refuses,
/// naming them, missing or duplicated indices and indices of another plan.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged> {
    let found = index_dirs(dirs)?;
    let mut by_index: BTreeMap<usize, Vec<(PathBuf, Manifest)>> = BTreeMap::new();
    let mut plan: Option<(PathBuf, String, usize)> = None;
    for d in found {
        let Some(m) = read_manifest(&d)? else {
            continue;
        };
        match &plan {
            None => plan = Some((d.clone(), m.plan_sha256.clone(), m.runs_in_plan)),
            Some((first, hash, total)) => {
                if *hash != m.plan_sha256 || *total != m.runs_in_plan {
                    return Err(MergeError::Plans(first.clone(), d));
                }
            }
        }
        by_index.entry(m.index).or_default().push((d, m));
    }
    let Some((_, _, total)) = plan else {
        let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(MergeError::Empty(names.join(", ")));
    };
    let missing: Vec<usize> = (0..total).filter(|i| !by_index.contains_key(i)).collect();
    let extra: Vec<usize> = by_index.keys().copied().filter(|&i| i >= total).collect();
    let twice: Vec<String> = by_index
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(i, v)| {
            let places: Vec<String> = v.iter().map(|(p, _)| p.display().to_string()).collect();
            format!("{i} ({})", places.join(", "))
        })
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("{} missing: {}", missing.len(), ranges(&missing)));
    }
    if !twice.is_empty() {
        problems.push(format!("found twice: {}", twice.join("; ")));
    }
    if !extra.is_empty() {
        problems.push(format!("outside the plan: {}", ranges(&extra)));
    }
    if !problems.is_empty() {
        return Err(MergeError::Incomplete {
            total,
            problems: problems.join("; "),
        });
    }

    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut merged: Option<Results> = None;
    let mut manifests = Vec::new();
    let mut failed = Vec::new();
    let frames_path = out.join("frames.csv");
    let seconds_path = out.join("seconds.csv");
    let mut frames = Concat::create(&frames_path)?;
    let mut seconds = Concat::create(&seconds_path)?;
    for (index, v) in &by_index {
        let (dir, m) = &v[0];
        let r = results::read(&dir.join("results.json"))?;
        match &mut merged {
            None => merged = Some(r),
            Some(all) => all.runs.extend(r.runs),
        }
        frames.append(&dir.join("frames.csv"))?;
        seconds.append(&dir.join("seconds.csv"))?;
        if m.status != "ok" {
            failed.push(*index);
        }
        manifests.push(m.clone());
    }
    frames.finish()?;
    seconds.finish()?;
    let merged = merged.ok_or_else(|| MergeError::Empty(out.display().to_string()))?;
    let results = results::write(out, &merged)?;
    let list = out.join("manifests.json");
    let text = serde_json::to_string_pretty(&manifests).map_err(ResultsError::Run)?;
    std::fs::write(&list, text).map_err(io(&list))?;
    Ok(Merged {
        runs_in_plan: total,
        failed,
        results,
    })
}

/// CSV files concatenated under the first one's header.
struct Concat {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    header: Option<String>,
}

impl Concat {
    fn create(path: &Path) -> Result<Concat> {
        let f = std::fs::File::create(path).map_err(io(path))?;
        Ok(Concat {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(f),
            header: None,
        })
    }

    /// Appends `src`'s rows (its header once, if it is the first); a file
    /// that is not there (an index whose runs all failed) adds nothing.
    fn append(&mut self, src: &Path) -> Result<()> {
        let f = match std::fs::File::open(src) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(src)(e)),
        };
        let mut lines = std::io::BufReader::new(f).lines();
        let Some(head) = lines.next().transpose().map_err(io(src))? else {
            return Ok(());
        };
        let path = self.path.clone();
        if self.header.is_none() {
            writeln!(self.out, "{head}").map_err(io(&path))?;
            self.header = Some(head);
        }
        for line in lines {
            let line = line.map_err(io(src))?;
            writeln!(self.out, "{line}").map_err(io(&path))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        let path = self.path.clone();
        self.out.flush().map_err(io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(index: usize, total: usize, plan: &str) -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA.into(),
            index,
            runs_in_plan: total,
            plan_sha256: plan.into(),
            scenario_sha256: "s".into(),
            glass_version: "0".into(),
            git_revision: "unknown".into(),
            host: "h".into(),
            mode_asked: "proxy".into(),
            mode: "proxy".into(),
            fallback: None,
            network: "n".into(),
            protocol: format!("p{index}"),
            repeat: 0,
            sweep: BTreeMap::new(),
            seed: index as u64,
            started_unix_s: 0.0,
            finished_unix_s: 1.0,
            status: "ok".into(),
        }
    }

    fn index_dir(root: &Path, index: usize, total: usize, plan: &str) {
        let d = root.join("runs").join(index.to_string());
        std::fs::create_dir_all(&d).unwrap();
        let results = format!(
            r#"{{"schema":"glass.results.v2","scenario":{{"name":"t"}},"runs":[{{"network":"n","protocol":"p{index}","repeat":0,"status":"ok","result":null}}]}}"#
        );
        std::fs::write(d.join("results.json"), results).unwrap();
        std::fs::write(
            d.join("frames.csv"),
            format!("point,network\n\"\",\"n{index}\"\n"),
        )
        .unwrap();
        write_manifest(&d, &manifest(index, total, plan)).unwrap();
    }

    #[test]
    fn merges_in_index_order_and_names_missing_and_duplicated_indices() {
        let root = std::env::temp_dir().join(format!("glass-merge-{}", std::process::id()));
        let (a, b, out) = (root.join("a"), root.join("b"), root.join("out"));
        // Written out of order, over two directories.
        for i in [3, 0, 2] {
            index_dir(&a, i, 5, "P");
        }
        index_dir(&b, 1, 5, "P");
        let e = merge(&[a.clone(), b.clone()], &out).unwrap_err();
        assert_eq!(e.to_string(), "the plan has 5 runs; 1 missing: 4");
        index_dir(&b, 4, 5, "P");
        index_dir(&b, 2, 5, "P");
        let e = merge(&[a.clone(), b.clone()], &out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("found twice: 2 (") && e.contains("a/runs/2"),
            "{e}"
        );
        std::fs::remove_dir_all(b.join("runs/2")).unwrap();
        let m = merge(&[a.clone(), b.clone()], &out).unwrap();
        assert_eq!((m.runs_in_plan, m.failed.len()), (5, 0));
        let r = results::read(&m.results).unwrap();
        let order: Vec<&str> = r.runs.iter().map(|r| r.protocol.as_str()).collect();
        assert_eq!(order, ["p0", "p1", "p2", "p3", "p4"]);
        let frames = std::fs::read_to_string(out.join("frames.csv")).unwrap();
        assert_eq!(frames.lines().count(), 6, "one header, five rows: {frames}");
        assert!(frames.lines().nth(2).unwrap().contains("n1"));
        // An index of another plan is refused.
        index_dir(&root.join("c"), 0, 5, "Q");
        let e = merge(&[a.clone(), root.join("c")], &out).unwrap_err();
        assert!(e.to_string().contains("different plans"), "{e}");
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        std::fs::remove_dir_all(&root).ok();
    }
}
