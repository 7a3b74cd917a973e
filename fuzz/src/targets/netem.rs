//! The impairment engine's inputs: netem lines (`glass shell`, scenario
//! files), mahimahi traces (trace files), and raw IP packets off the TUN
//! device (the flow classifier), then the packets through the pipeline the
//! line built, to the end.

use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use netem::bottleneck::{BottleneckSpec, Capacity};
use netem::spec::Staged;
use netem::trace::Trace;
use netem::{FlowMeta, Pipeline, Profile, SeedTree, Time};

use crate::mutate::{corrupt, small_bytes};

const TIMES: &[&str] = &[
    "0ms", "1ms", "5ms", "40ms", "100ms", "2s", "500us", "1000", "-1ms", "1e9s", "x",
];
const PCTS: &[&str] = &[
    "0%", "0.1%", "1%", "5%", "30%", "99.9%", "100%", "101%", "-1%", "1", "nan%",
];
const RATES: &[&str] = &[
    "1kbit", "100kbit", "1mbit", "5mbit", "1gbit", "1mbps", "0bit", "100", "x",
];
const DISTS: &[&str] = &["normal", "pareto", "paretonormal", "uniform", "exp", ""];

/// A netem line built from clauses with the arguments each takes (so most
/// lines parse and reach validation and the pipeline), then damaged now
/// and then.
pub fn netem_line(u: &mut Unstructured<'_>) -> Result<()> {
    let mut line = String::new();
    if u.ratio(1, 8)? {
        line.push_str("tc qdisc add dev eth0 root netem ");
    }
    for _ in 0..u.int_in_range(1..=5u8)? {
        let clause = match u.int_in_range(0..=8u8)? {
            0 | 1 => {
                let mut c = format!("delay {}", u.choose(TIMES)?);
                if u.arbitrary()? {
                    c += &format!(" {}", u.choose(TIMES)?);
                    if u.arbitrary()? {
                        c += &format!(" {}", u.choose(PCTS)?);
                    }
                }
                if u.ratio(1, 3)? {
                    c += &format!(" distribution {}", u.choose(DISTS)?);
                }
                c
            }
            2 => match u.int_in_range(0..=2u8)? {
                0 => format!("loss {}", u.choose(PCTS)?),
                1 => format!("loss random {}", u.choose(PCTS)?),
                _ => format!("loss gemodel {} {}", u.choose(PCTS)?, u.choose(PCTS)?),
            },
            3 | 4 => format!("rate {}", u.choose(RATES)?),
            5 => format!("limit {}", u.int_in_range(0..=20u32)?),
            6 => format!(
                "{} {}",
                u.choose(&["duplicate", "corrupt"])?,
                u.choose(PCTS)?
            ),
            7 => {
                let mut c = format!("reorder {}", u.choose(PCTS)?);
                if u.arbitrary()? {
                    c += &format!(" gap {}", u.int_in_range(0..=10u32)?);
                }
                c
            }
            _ => u
                .choose(&["slot 1ms", "ecn", "seed 7", "drop 1%", "latency 5ms"])?
                .to_string(),
        };
        line.push_str(&clause);
        line.push(' ');
    }
    let mut bytes = line.into_bytes();
    if u.ratio(1, 4)? {
        corrupt(&mut bytes, u)?;
    }
    let line = String::from_utf8_lossy(&bytes);
    let Ok(cfg) = netem::netem_line::parse(&line) else {
        return Ok(());
    };
    let Ok(profile) = cfg.validate(None) else {
        return Ok(());
    };
    drive(&profile, u)
}

/// A mahimahi trace, then a link on it carrying packets.
pub fn mahimahi(u: &mut Unstructured<'_>) -> Result<()> {
    let mut text = String::new();
    let mut ms: u64 = 0;
    for _ in 0..u.int_in_range(0..=60u8)? {
        ms += u.int_in_range(0..=20u64)?;
        text.push_str(&ms.to_string());
        text.push_str(match u.int_in_range(0..=8u8)? {
            0 => "\r\n",
            1 => "\n# a comment\n",
            2 => " \n",
            _ => "\n",
        });
    }
    let mut bytes = text.into_bytes();
    corrupt(&mut bytes, u)?;
    let Ok(trace) = Trace::parse(&String::from_utf8_lossy(&bytes)) else {
        return Ok(());
    };
    let _ = trace.mean_rate_bps();
    let profile = Profile {
        bottleneck: Some(Staged::all(BottleneckSpec {
            capacity: Capacity::Trace(Arc::new(trace)),
            ..BottleneckSpec::default()
        })),
        ..Profile::default()
    };
    drive(&profile, u)
}

/// Raw packets as the TUN device delivers them: the flow classifier reads
/// IPv4/IPv6 and TCP/UDP headers.
pub fn ip_packet(u: &mut Unstructured<'_>) -> Result<()> {
    let mut p = ip_header(u)?;
    corrupt(&mut p, u)?;
    let _ = FlowMeta::from_ip_packet(&p);
    Ok(())
}

/// An IPv4 or IPv6 header with a TCP or UDP header after it.
fn ip_header(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let proto = *u.choose(&[6u8, 17, 1, 58])?;
    let mut p = if u.ratio(3, 4)? {
        let ihl = u.int_in_range(5..=15u8)?;
        let mut h = vec![0x40 | ihl, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        h.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        if u.ratio(1, 8)? {
            h[6] = u.arbitrary()?;
            h[7] = u.arbitrary()?;
        }
        h.resize(usize::from(ihl) * 4, 0);
        h
    } else {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
        h.extend_from_slice(&[0u8; 32]);
        h
    };
    p.extend_from_slice(&u.arbitrary::<u16>()?.to_be_bytes());
    p.extend_from_slice(&u.arbitrary::<u16>()?.to_be_bytes());
    p.extend_from_slice(small_bytes(u, 64)?);
    Ok(p)
}

/// Pushes the input's packets through a pipeline built from `profile` and
/// runs it until it is empty (bounded in steps).
fn drive(profile: &Profile, u: &mut Unstructured<'_>) -> Result<()> {
    let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(profile, SeedTree::new(u.arbitrary()?));
    let mut now = Time::ZERO;
    for _ in 0..u.int_in_range(0..=64u8)? {
        let mut p = ip_header(u)?;
        // Packets of any size, up to two MTUs: some span several trace
        // opportunities or overflow a small queue.
        let pad = u.int_in_range(0..=3000usize)?;
        p.resize(p.len() + pad, 0);
        let flow = FlowMeta::from_ip_packet(&p);
        pipe.push(now, flow, p);
        now = now + Duration::from_micros(u.int_in_range(0..=20_000)?);
        pipe.handle_timeout(now);
        while pipe.poll_transmit(now).is_some() {}
    }
    for _ in 0..10_000 {
        let Some(t) = pipe.poll_timeout() else { break };
        now = now.max(t);
        pipe.handle_timeout(now);
        while pipe.poll_transmit(now).is_some() {}
    }
    let _ = pipe.counters();
    Ok(())
}
