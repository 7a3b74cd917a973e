//! `glass profile ...`: check, list and show impairment profiles.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use netem::check::{self, CheckOptions};
use netem::presets;
use reports::profile_check::{ProfileCheck, render_text};

use crate::cli::{CheckArgs, DirectionArg, ProfileCommand};

pub fn run(cmd: &ProfileCommand) -> Result<()> {
    match cmd {
        ProfileCommand::Check(args) => check(args),
        ProfileCommand::List => {
            for name in presets::names() {
                let p = presets::preset(name).expect("listed")?;
                println!("{name:<10} {}", p.description.unwrap_or_default());
            }
            Ok(())
        }
        ProfileCommand::Show { profile } => {
            if let Some(text) = presets::text(profile) {
                print!("{text}");
                return Ok(());
            }
            let p = netem::resolve(profile)?;
            if p.uplink == p.downlink {
                print!("{}", toml::to_string(&p.uplink)?);
            } else {
                #[derive(serde::Serialize)]
                struct TwoWay<'a> {
                    uplink: &'a netem::ProfileConfig,
                    downlink: &'a netem::ProfileConfig,
                }
                print!(
                    "{}",
                    toml::to_string(&TwoWay {
                        uplink: &p.uplink,
                        downlink: &p.downlink
                    })?
                );
            }
            Ok(())
        }
    }
}

fn check(args: &CheckArgs) -> Result<()> {
    if !(args.load.is_finite() && args.load > 0.0 && args.load <= 100.0) {
        bail!("--load must be above 0 and at most 100 (a multiple of the bottleneck's capacity)");
    }
    let link = netem::resolve(&args.profile)?;
    let (up, down) = link.validate()?;
    let symmetric = up == down;
    let mut runs = Vec::new();
    match (args.direction, symmetric) {
        (DirectionArg::Both, true) => runs.push(("both", &up)),
        (DirectionArg::Both, false) => {
            runs.push(("uplink", &up));
            runs.push(("downlink", &down));
        }
        (DirectionArg::Uplink, _) => runs.push(("uplink", &up)),
        (DirectionArg::Downlink, _) => runs.push(("downlink", &down)),
    }
    let opts = CheckOptions {
        packets: args.packets,
        seed: args.seed,
        packet_size: args.size,
        load: args.load,
        ..CheckOptions::default()
    };
    let bar = if std::io::stderr().is_terminal() && args.packets >= 1_000_000 {
        let bar = ProgressBar::new(args.packets * runs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} packets ({eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut directions = Vec::new();
    for (i, (direction, profile)) in runs.iter().enumerate() {
        bar.set_message(direction.to_string());
        let base = i as u64 * args.packets;
        let report = check::run_with_progress(&link.name, direction, profile, &opts, &mut |n| {
            bar.set_position(base + n)
        });
        directions.push(report);
    }
    bar.finish_and_clear();
    let result = ProfileCheck {
        profile: link.name.clone(),
        description: link.description.clone(),
        directions,
    };
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(path) = &args.output {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", render_text(&result));
    }
    Ok(())
}
