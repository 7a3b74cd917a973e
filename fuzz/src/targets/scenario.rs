//! Scenario files: the shipped scenarios as seeds, changed line by line
//! (a value swapped for another of the right or wrong kind, a line
//! dropped or repeated, a line from another scenario spliced in) and byte
//! by byte, then parsed, validated and expanded into sweep points as
//! `glass run` does.

use std::path::Path;

use arbitrary::{Result, Unstructured};
use harness::scenario::Scenario;

use crate::mutate::corrupt;

const SEEDS: &[&str] = &[
    include_str!("../../../scenarios/quickstart.toml"),
    include_str!("../../../scenarios/cross-traffic.toml"),
    include_str!("../../../scenarios/delay-check.toml"),
    include_str!("../../../scenarios/ffmpeg-interop.toml"),
    include_str!("../../../scenarios/first-mile-gateway.toml"),
    include_str!("../../../scenarios/flv-replay.toml"),
    include_str!("../../../scenarios/hostile.toml"),
    include_str!("../../../scenarios/player-groups.toml"),
    include_str!("../../../scenarios/protocol-map.toml"),
    include_str!("../../../scenarios/rtmp-tcp-vs-quic.toml"),
    include_str!("../../../scenarios/rtsp-ffmpeg.toml"),
    include_str!("../../../scenarios/rtsp-vs-rtmp.toml"),
    include_str!("../../../scenarios/udp-recovery.toml"),
    // Faults have no shipped scenario: a small one.
    "name = \"faults\"\nduration = \"5s\"\n[[networks]]\nname = \"n\"\nfaults = [{ kind = \"engine_stall\", at = \"2s\", duration = \"200ms\" }, { kind = \"relay_killed\", at = \"4s\" }]\n[[protocols]]\nkind = \"rtmp\"\n",
];

/// Values a key may be given: right kinds, wrong kinds, boundaries.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "3",
    "1e309",
    "nan",
    "inf",
    "18446744073709551615",
    "4294967296",
    "0.5",
    "\"\"",
    "\"0s\"",
    "\"1ms\"",
    "\"1s\"",
    "\"100000h\"",
    "\"5%\"",
    "\"101%\"",
    "\"-1%\"",
    "\"1mbit\"",
    "\"0kbit\"",
    "\"1920x1080\"",
    "\"0x0\"",
    "\"rtmp\"",
    "\"udp\"",
    "\"quic\"",
    "\"rtsp\"",
    "\"ffmpeg\"",
    "\"delay 40ms 5ms loss 1%\"",
    "\"loss gemodel 1% 30%\"",
    "true",
    "[]",
    "[1, 2]",
    "[\"a\"]",
    "{}",
    "{ rate = \"1mbit\" }",
    "{ set = [\"x\"], values = [1] }",
    "\"rtmp://relay/live/glass\"",
    "\"udp://relay?fec=rs\"",
];

pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let seed = *u.choose(SEEDS)?;
    let mut lines: Vec<String> = seed.lines().map(str::to_string).collect();
    for _ in 0..u.int_in_range(0..=6u8)? {
        if lines.is_empty() {
            break;
        }
        let i = u.choose_index(lines.len())?;
        match u.int_in_range(0..=5u8)? {
            0 | 1 => {
                // A new value for a key.
                if let Some((k, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{k}= {}", u.choose(VALUES)?);
                }
            }
            2 => {
                lines.remove(i);
            }
            3 => {
                let l = lines[i].clone();
                lines.insert(u.choose_index(lines.len())?, l);
            }
            4 => {
                let other = *u.choose(SEEDS)?;
                if let Some(l) = other.lines().nth(u.int_in_range(0..=80)?) {
                    lines.insert(i, l.to_string());
                }
            }
            _ => {
                let mut b = std::mem::take(&mut lines[i]).into_bytes();
                corrupt(&mut b, u)?;
                lines[i] = String::from_utf8_lossy(&b).into_owned();
            }
        }
    }
    let text = lines.join("\n");
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    if let Ok(points) = Scenario::sweep_from_toml("fuzz.toml", &text, Some(&base)) {
        for p in &points {
            let _ = p.label();
            for n in &p.scenario.networks {
                let _ = (n.group_names(), n.impaired().count());
            }
        }
    }
    Ok(())
}
