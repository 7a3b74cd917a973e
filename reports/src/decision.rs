//! Which protocol wins: per case (the report's opening verdict) and per
//! cell of a two-axis sweep (the decision map).
//!
//! The rule, stated once: among the protocols whose mean stall ratio is
//! within the budget (the scenario's `stall_ratio` budget, else 1 %) and
//! whose player showed frames in every repeat, the one with the lowest mean
//! G2G p99 wins. (A player that never started has no stalls and no G2G to
//! speak of: its stall ratio reads 0 and its p99 0 ms, so it must not win.) It wins outright only if its
//! 95 % interval and the runner-up's tell them apart (`stats::differs`:
//! the difference of the means exceeds √(a² + b²) of the half-widths; with
//! one repeat, 1 % of the best's p99, at least 1 ms); otherwise the cell
//! is a tie between every protocol the best cannot be told apart from.

use std::collections::BTreeMap;

use crate::gate::noise_threshold;
use crate::results::Run;
use crate::stats::{Summary, differs, summarize};

/// The stall-ratio budget when the scenario sets none.
pub const DEFAULT_STALL_BUDGET: f64 = 0.01;

/// One protocol's repeats in one cell.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub protocol: String,
    /// Over the repeats whose player showed frames.
    pub g2g_p99_ms: Summary,
    pub stall_ratio: Summary,
    /// Repeats whose player never showed a frame.
    pub never_played: usize,
}

/// A cell's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// One protocol is best; by `margin_ms` over the runner-up (if any
    /// other was within the budget).
    Best {
        protocol: String,
        runner_up: Option<(String, f64)>,
    },
    /// The best and these others cannot be told apart (best first).
    Tie(Vec<String>),
    /// No protocol kept its stalls within the budget.
    NoneWithinBudget,
}

impl Outcome {
    /// A short text for a cell or a verdict line.
    pub fn short(&self) -> String {
        match self {
            Outcome::Best {
                protocol,
                runner_up: Some((_, by)),
            } => format!("{protocol} (−{by:.0} ms)"),
            Outcome::Best { protocol, .. } => protocol.clone(),
            Outcome::Tie(p) => p.join(" ≈ "),
            Outcome::NoneWithinBudget => "none within budget".into(),
        }
    }
}

/// Applies the rule (see the module's doc) to a cell's candidates.
pub fn decide(cands: &[Candidate], stall_budget: f64) -> Outcome {
    let mut ok: Vec<&Candidate> = cands
        .iter()
        .filter(|c| c.never_played == 0 && c.g2g_p99_ms.n > 0 && c.stall_ratio.mean <= stall_budget)
        .collect();
    ok.sort_by(|a, b| a.g2g_p99_ms.mean.total_cmp(&b.g2g_p99_ms.mean));
    let Some(best) = ok.first() else {
        return Outcome::NoneWithinBudget;
    };
    let tol = noise_threshold("g2g_p99_ms", best.g2g_p99_ms.mean);
    let ties: Vec<String> = ok[1..]
        .iter()
        .filter(|c| !differs(&best.g2g_p99_ms, &c.g2g_p99_ms, tol))
        .map(|c| c.protocol.clone())
        .collect();
    if ties.is_empty() {
        Outcome::Best {
            protocol: best.protocol.clone(),
            runner_up: ok
                .get(1)
                .map(|c| (c.protocol.clone(), c.g2g_p99_ms.mean - best.g2g_p99_ms.mean)),
        }
    } else {
        let mut all = vec![best.protocol.clone()];
        all.extend(ties);
        Outcome::Tie(all)
    }
}

/// The stall budget of a results file's scenario (`"2%"`, or a fraction).
pub fn stall_budget(budgets: &BTreeMap<String, serde_json::Value>) -> f64 {
    let parse = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.trim().strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok().map(|x| x / 100.0),
            None => s.trim().parse().ok(),
        },
        _ => None,
    };
    budgets
        .get("stall_ratio")
        .and_then(parse)
        .unwrap_or(DEFAULT_STALL_BUDGET)
}

/// The candidates of the runs matching `keep`, per protocol in `protocols`
/// order (protocols without a finished run are left out).
pub fn candidates<'a>(
    runs: impl Iterator<Item = &'a Run> + Clone,
    protocols: &[String],
) -> Vec<Candidate> {
    protocols
        .iter()
        .filter_map(|p| {
            let mine: Vec<&crate::results::Player> = runs
                .clone()
                .filter(|r| &r.protocol == p)
                .filter_map(|r| r.player())
                .collect();
            let played: Vec<&&crate::results::Player> =
                mine.iter().filter(|x| x.frames_displayed > 0).collect();
            let g: Vec<f64> = played.iter().map(|x| x.g2g_p99_ms).collect();
            let s: Vec<f64> = played.iter().map(|x| x.stall_ratio).collect();
            (!mine.is_empty()).then(|| Candidate {
                protocol: p.clone(),
                g2g_p99_ms: summarize(&g),
                stall_ratio: summarize(&s),
                never_played: mine.len() - played.len(),
            })
        })
        .collect()
}

/// A number at the start of a sweep value and its unit: "2%" → (2, "%"),
/// "150ms" → (150, "ms"), "2.5Mbit/s" → (2.5, "Mbit/s"). `None` for a
/// value that is not one number with a unit ("delay 40ms loss 2%").
pub fn number_of(v: &str) -> Option<(f64, String)> {
    let v = v.trim();
    let end = v
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
        .map_or(v.len(), |(i, _)| i);
    let x: f64 = v[..end].parse().ok()?;
    let unit = v[end..].trim();
    if unit
        .chars()
        .any(|c| c.is_ascii_digit() || c.is_whitespace())
    {
        return None;
    }
    Some((x, unit.to_string()))
}

/// A sweep axis whose values are all numbers in one unit, in numeric order.
#[derive(Clone, Debug, PartialEq)]
pub struct NumericAxis {
    /// The coordinate's key (a field path, or a named axis).
    pub key: String,
    pub unit: String,
    /// (value as written, number), ascending.
    pub values: Vec<(String, f64)>,
}

impl NumericAxis {
    /// "loss (%)", "rtt_half (ms)": the key's last segment and the unit.
    pub fn label(&self) -> String {
        let name = self.key.rsplit('.').next().unwrap_or(&self.key);
        if self.unit.is_empty() {
            name.to_string()
        } else {
            format!("{name} ({})", self.unit)
        }
    }

    pub fn position(&self, written: &str) -> Option<usize> {
        self.values.iter().position(|(w, _)| w == written)
    }
}

/// The sweep's axes, if every one is numeric (in key order); `None` when
/// the runs have no sweep or an axis has a value that is not a number.
pub fn numeric_axes(runs: &[Run]) -> Option<Vec<NumericAxis>> {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in runs {
        for (k, v) in &r.sweep {
            let vals = seen.entry(k).or_default();
            if !vals.contains(&v.as_str()) {
                vals.push(v);
            }
        }
    }
    if seen.is_empty() {
        return None;
    }
    seen.into_iter()
        .map(|(k, vals)| {
            let mut values = Vec::new();
            let mut unit = None;
            for w in vals {
                let (x, u) = number_of(w)?;
                if unit.get_or_insert_with(|| u.clone()) != &u {
                    return None;
                }
                values.push((w.to_string(), x));
            }
            values.sort_by(|a, b| a.1.total_cmp(&b.1));
            Some(NumericAxis {
                key: k.to_string(),
                unit: unit.unwrap_or_default(),
                values,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(p: &str, g: &[f64], s: &[f64]) -> Candidate {
        Candidate {
            protocol: p.into(),
            g2g_p99_ms: summarize(g),
            stall_ratio: summarize(s),
            never_played: 0,
        }
    }

    #[test]
    fn the_rule_picks_the_lowest_p99_within_the_stall_budget() {
        let a = cand("a", &[300.0, 310.0, 305.0], &[0.0, 0.0, 0.0]);
        let b = cand("b", &[500.0, 505.0, 510.0], &[0.0, 0.0, 0.0]);
        // Lower p99, but stalls over the budget: not eligible.
        let c = cand("c", &[100.0, 100.0, 100.0], &[0.05, 0.06, 0.05]);
        let o = decide(&[c.clone(), b.clone(), a.clone()], 0.02);
        assert_eq!(
            o,
            Outcome::Best {
                protocol: "a".into(),
                runner_up: Some(("b".into(), 200.0))
            }
        );
        assert_eq!(o.short(), "a (−200 ms)");
        // Overlapping intervals: a tie, best first.
        let d = cand("d", &[290.0, 330.0, 312.0], &[0.0, 0.0, 0.0]);
        assert_eq!(
            decide(&[a.clone(), d, b.clone()], 0.02),
            Outcome::Tie(vec!["a".into(), "d".into()])
        );
        assert_eq!(decide(&[c], 0.02), Outcome::NoneWithinBudget);
        // A player that never started (0 ms, no stalls) does not win.
        let silent = Candidate {
            never_played: 1,
            ..cand("silent", &[0.0, 0.0], &[0.0, 0.0])
        };
        assert!(
            matches!(decide(&[silent, b], 0.02), Outcome::Best { protocol, .. } if protocol == "b")
        );
    }

    #[test]
    fn an_a_a_map_is_a_tie_in_at_least_95_percent_of_cells() {
        // The same protocol under two names: every cell's repeats drawn
        // from one distribution (a p99 that varies 5 % run to run, 3
        // repeats, as protocol-map.toml's cells), 2,000 cells.
        let mut rng = netem::rng::SeedTree::new(7).rng();
        let cells = 2000;
        let mut ties = 0;
        for cell in 0..cells {
            let mean = 200.0 + 10.0 * f64::from(cell % 50);
            let mut draw =
                || -> Vec<f64> { (0..3).map(|_| mean * (1.0 + 0.05 * rng.normal())).collect() };
            let (a, b) = (draw(), draw());
            let zeros = [0.0; 3];
            if let Outcome::Tie(_) = decide(&[cand("A", &a, &zeros), cand("A'", &b, &zeros)], 0.01)
            {
                ties += 1;
            }
        }
        let share = f64::from(ties) / f64::from(cells);
        eprintln!("A/A: a tie in {:.1} % of {cells} cells", share * 100.0);
        assert!(share >= 0.95, "A/A ties in {:.1} % of cells", share * 100.0);
    }

    #[test]
    fn numbers_with_units_make_numeric_axes() {
        assert_eq!(number_of("2%"), Some((2.0, "%".into())));
        assert_eq!(number_of(" 150ms"), Some((150.0, "ms".into())));
        assert_eq!(number_of("2.5Mbit/s"), Some((2.5, "Mbit/s".into())));
        assert_eq!(number_of("7"), Some((7.0, String::new())));
        assert_eq!(number_of("delay 40ms"), None);
        assert_eq!(number_of("40ms loss 2%"), None);
        assert_eq!(number_of("lte"), None);
        let mut budgets = BTreeMap::new();
        assert_eq!(stall_budget(&budgets), DEFAULT_STALL_BUDGET);
        budgets.insert("stall_ratio".into(), serde_json::json!("2%"));
        assert!((stall_budget(&budgets) - 0.02).abs() < 1e-12);
        budgets.insert("stall_ratio".into(), serde_json::json!(0.05));
        assert_eq!(stall_budget(&budgets), 0.05);
    }
}
