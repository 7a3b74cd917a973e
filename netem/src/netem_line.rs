//! netem's one-line syntax, because users already know it:
//! `delay 40ms 5ms distribution normal loss gemodel 1% 30% rate 5mbit limit 100`.
//!
//! Units follow `tc`: a bare time is in microseconds, a bare rate in bit/s,
//! `mbps` means megabytes per second, and a bare percentage like `1` means 1 %.
//! A leading `tc qdisc add dev X root netem` is skipped.
//!
//! Where Glass differs from the kernel it says so instead of guessing:
//! - netem's `loss/duplicate/corrupt/reorder ... CORRELATION` uses a correlated
//!   random generator that does not keep the requested rate; a non-zero
//!   correlation there is refused (use `loss gemodel` for bursty loss). Delay
//!   correlation is accepted: Glass keeps the distribution intact (see `jitter`).
//! - jitter reorders packets, as in netem (`order = "reorder"`); a TOML profile
//!   can ask for FIFO instead.
//! - `rate` is a bottleneck in front of the delay (a queue, then the wire), and
//!   `limit` bounds that bottleneck's queue.
//! - `slot`, `ecn`, `seed` and cell sizes are not supported.

use crate::config::{
    BottleneckConfig, ChanceConfig, DelayConfig, LossConfig, LossKind, ProfileConfig, ReorderConfig,
};
use crate::delay::Order;
use crate::error::ConfigError;
use crate::jitter::Distribution;
use crate::units::{BitRate, HumanDuration, Probability, QueueLimit};

const KEYWORDS: &[&str] = &[
    "delay",
    "latency",
    "distribution",
    "loss",
    "drop",
    "duplicate",
    "corrupt",
    "reorder",
    "gap",
    "rate",
    "limit",
    "tc",
    "netem",
    "slot",
    "ecn",
    "seed",
];

/// Whether `word` can start a netem line (used to tell a netem line from a
/// preset name or a file).
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

fn err<T>(token: &str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::NetemLine {
        token: token.to_string(),
        reason: reason.into(),
    })
}

struct Tokens<'a> {
    words: Vec<&'a str>,
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.pos).copied();
        self.pos += 1;
        w
    }
    fn expect(&mut self, after: &str, what: &str) -> Result<&'a str, ConfigError> {
        match self.next() {
            Some(w) => Ok(w),
            None => err(after, format!("expected {what} after it")),
        }
    }
    /// The next word if it looks like a number (iproute2's NEXT_IS_NUMBER).
    fn number(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.pos)?;
        if w.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-') {
            self.pos += 1;
            Some(w)
        } else {
            None
        }
    }
}

/// tc's percentages: `1%` or a bare `1`, both one percent.
fn percent(token: &str) -> Result<Probability, ConfigError> {
    let number = token.strip_suffix('%').unwrap_or(token);
    match number.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => {
            Probability::from_fraction(v / 100.0).map_err(|e| ConfigError::NetemLine {
                token: token.into(),
                reason: e.reason,
            })
        }
        _ => err(token, "expected a percentage between 0% and 100%"),
    }
}

fn no_correlation(t: &mut Tokens, what: &str) -> Result<(), ConfigError> {
    if let Some(c) = t.number()
        && !percent(c)?.is_zero()
    {
        return err(
            c,
            format!(
                "netem's {what} correlation does not keep the requested rate (a known property of its correlated generator); Glass refuses it. For bursty loss use `loss gemodel P R`"
            ),
        );
    }
    Ok(())
}

/// Parses a netem line into a profile (validated later, in one place).
pub fn parse(line: &str) -> Result<ProfileConfig, ConfigError> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if words.first() == Some(&"tc") {
        match words.iter().position(|w| *w == "netem") {
            Some(i) => {
                words.drain(..=i);
            }
            None => {
                return err(
                    "tc",
                    "a tc command line needs `netem` before the parameters",
                );
            }
        }
    } else if words.first() == Some(&"netem") {
        words.remove(0);
    }
    if words.is_empty() {
        return err(line, "empty netem line");
    }
    let mut t = Tokens { words, pos: 0 };
    let mut p = ProfileConfig::default();
    let mut delay = DelayConfig::default();
    let mut has_delay = false;
    let mut gap = None;
    while let Some(word) = t.next() {
        match word {
            "delay" | "latency" => {
                let d = t.expect(word, "a time")?;
                delay.base = Some(HumanDuration::parse_tc(d).map_err(|e| unit(d, e))?);
                if let Some(j) = t.number() {
                    delay.jitter = Some(HumanDuration::parse_tc(j).map_err(|e| unit(j, e))?);
                    delay.order = Some(Order::Reorder);
                    if let Some(c) = t.number() {
                        delay.correlation = Some(percent(c)?);
                    }
                }
                has_delay = true;
            }
            "distribution" => {
                let d = t.expect(word, "a distribution name")?;
                delay.distribution = Some(match d {
                    "uniform" => Distribution::Uniform,
                    "normal" => Distribution::Normal,
                    "pareto" => Distribution::Pareto,
                    "paretonormal" => Distribution::ParetoNormal,
                    _ => {
                        return err(
                            d,
                            "Glass knows the distributions uniform, normal, pareto and paretonormal (no custom tables)",
                        );
                    }
                });
                has_delay = true;
            }
            "loss" | "drop" => p.loss = Some(parse_loss(&mut t, word)?),
            "duplicate" | "corrupt" => {
                let v = t.expect(word, "a percentage")?;
                let c = ChanceConfig {
                    rate: percent(v)?,
                    flows: None,
                };
                no_correlation(&mut t, word)?;
                if word == "duplicate" {
                    p.duplicate = Some(c);
                } else {
                    p.corrupt = Some(c);
                }
            }
            "reorder" => {
                let v = t.expect(word, "a percentage")?;
                let rate = percent(v)?;
                no_correlation(&mut t, word)?;
                p.reorder = Some(ReorderConfig {
                    rate,
                    gap: None,
                    flows: None,
                });
            }
            "gap" => {
                let g = t.expect(word, "a packet count")?;
                gap = Some(g.parse::<u32>().ok().filter(|g| *g >= 1).ok_or_else(|| {
                    ConfigError::NetemLine {
                        token: g.into(),
                        reason: "gap is a whole number of packets, at least 1".into(),
                    }
                })?);
            }
            "rate" => {
                let r = t.expect(word, "a rate")?;
                let b = p.bottleneck.get_or_insert_with(BottleneckConfig::default);
                b.rate = Some(BitRate::parse_tc(r).map_err(|e| unit(r, e))?);
                if let Some(o) = t.number() {
                    let o: i64 = o.parse().map_err(|_| ConfigError::NetemLine {
                        token: o.into(),
                        reason: "packet overhead is a whole number of bytes".into(),
                    })?;
                    if o < 0 {
                        return err(
                            &o.to_string(),
                            "a negative packet overhead is not supported",
                        );
                    }
                    b.overhead = Some(o as u32);
                    if let Some(cell) = t.number() {
                        return err(cell, "cell sizes (ATM framing) are not supported");
                    }
                }
            }
            "limit" => {
                let l = t.expect(word, "a packet count")?;
                let n: u32 =
                    l.parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| ConfigError::NetemLine {
                            token: l.into(),
                            reason: "limit is a whole number of packets, at least 1".into(),
                        })?;
                p.bottleneck
                    .get_or_insert_with(BottleneckConfig::default)
                    .queue = Some(QueueLimit::Packets(n));
            }
            "slot" | "ecn" | "seed" => {
                return err(
                    word,
                    match word {
                        "seed" => {
                            "the seed comes from the scenario (glass --seed), not the netem line"
                        }
                        _ => "not supported by Glass",
                    },
                );
            }
            other => return err(other, "unknown netem parameter"),
        }
    }
    if let Some(g) = gap {
        match &mut p.reorder {
            Some(r) => r.gap = Some(g),
            None => return err("gap", "gap goes with reorder"),
        }
    }
    if has_delay {
        p.delay = Some(delay);
    }
    Ok(p)
}

fn unit(token: &str, e: crate::error::UnitError) -> ConfigError {
    ConfigError::NetemLine {
        token: token.to_string(),
        reason: e.reason,
    }
}

fn parse_loss(t: &mut Tokens, word: &str) -> Result<LossConfig, ConfigError> {
    let first = t.expect(word, "a percentage, `random`, `state` or `gemodel`")?;
    match first {
        "state" => {
            let mut l = LossConfig::of(LossKind::FourState);
            let p13 = t.expect("state", "p13")?;
            l.p13 = Some(percent(p13)?);
            for slot in [&mut l.p31, &mut l.p32, &mut l.p23, &mut l.p14] {
                match t.number() {
                    Some(v) => *slot = Some(percent(v)?),
                    None => break,
                }
            }
            Ok(l)
        }
        "gemodel" => {
            let mut l = LossConfig::of(LossKind::GilbertElliott);
            let p = t.expect("gemodel", "p")?;
            l.p = Some(percent(p)?);
            for slot in [&mut l.r, &mut l.loss_bad, &mut l.loss_good] {
                match t.number() {
                    Some(v) => *slot = Some(percent(v)?),
                    None => break,
                }
            }
            Ok(l)
        }
        _ => {
            let v = if first == "random" {
                t.expect("random", "a percentage")?
            } else {
                first
            };
            let mut l = LossConfig::of(LossKind::Bernoulli);
            l.rate = Some(percent(v)?);
            no_correlation(t, "loss")?;
            Ok(l)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::LossModel;
    use std::time::Duration;

    #[test]
    fn parses_the_issue_example() {
        let p = parse("delay 40ms 5ms distribution normal loss gemodel 1% 30%").unwrap();
        let prof = p.validate(None).unwrap();
        let d = prof.delay.unwrap().spec;
        assert_eq!(d.base, Duration::from_millis(40));
        assert_eq!(d.jitter, Duration::from_millis(5));
        assert_eq!(d.distribution, Distribution::Normal);
        assert_eq!(d.order, Order::Reorder);
        assert_eq!(
            prof.loss.unwrap().spec,
            LossModel::GilbertElliott {
                p: 0.01,
                r: 0.3,
                loss_bad: 1.0,
                loss_good: 0.0
            }
        );
    }

    #[test]
    fn netem_defaults_and_tc_units() {
        let p =
            parse("tc qdisc add dev eth0 root netem loss gemodel 2% rate 1mbps limit 50 delay 100")
                .unwrap();
        let prof = p.validate(None).unwrap();
        // r defaults to 1 − p: a Bernoulli-equivalent chain.
        assert_eq!(
            prof.loss.unwrap().spec,
            LossModel::GilbertElliott {
                p: 0.02,
                r: 0.98,
                loss_bad: 1.0,
                loss_good: 0.0
            }
        );
        let b = prof.bottleneck.unwrap().spec;
        assert_eq!(
            b.capacity,
            crate::bottleneck::Capacity::Rate(BitRate::from_bits_per_sec(8_000_000))
        );
        assert_eq!(b.limit, QueueLimit::Packets(50));
        assert_eq!(prof.delay.unwrap().spec.base, Duration::from_micros(100));
        let s = parse("loss state 1%").unwrap().validate(None).unwrap();
        assert_eq!(
            s.loss.unwrap().spec,
            LossModel::FourState {
                p13: 0.01,
                p31: 0.99,
                p32: 0.0,
                p23: 1.0,
                p14: 0.0
            }
        );
        let r = parse("delay 10ms reorder 25% gap 5")
            .unwrap()
            .validate(None)
            .unwrap();
        assert_eq!(r.reorder.unwrap().spec.gap, 5);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (line, needle) in [
            ("loss 1% 25%", "correlation"),
            ("delay 10ms slot 5ms", "not supported"),
            ("delay", "expected a time"),
            ("loss 120%", "percentage"),
            ("delay 10ms distribution weird", "distributions"),
            ("jitter 5ms", "unknown netem parameter"),
            ("gap 5", "gap goes with reorder"),
            ("rate 5mbit 20 53", "cell sizes"),
        ] {
            let e = parse(line).unwrap_err().to_string();
            assert!(e.contains(needle), "{line}: {e}");
        }
        // Parses but does not validate: reorder without a delay.
        let e = parse("reorder 25%")
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a [delay]"), "{e}");
    }
}
