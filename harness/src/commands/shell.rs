//! `glass shell`: run any program behind an impaired link, as mahimahi's
//! mm-link does. The program runs in the publisher namespace; the far side
//! is the server namespace at 198.18.0.1, where `--forward` relays ports to
//! servers on the host, so ffmpeg, OBS or a browser can be tested unmodified.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use netem::Profile;
use netem::adapters::link::{Host, LinkConfig, LinkDir, LinkNetwork, LinkStats};
use netem::adapters::relay::Relay;

use crate::cli::ShellArgs;
use crate::signals;

pub fn run(args: &ShellArgs) -> Result<i32> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("give the program to run after --, e.g. glass shell --profile 4g -- ffmpeg ...");
    };
    let link_profiles = netem::resolve(&args.profile)?;
    let (up, down) = link_profiles.validate()?;
    let link = LinkNetwork::start(LinkConfig {
        first_mile: (up, down),
        last_mile: (Profile::transparent(), Profile::transparent()),
        seed: args.seed,
        capture_dir: args.pcap.clone(),
        backend: args.backend,
    })
    .context("starting the link (network namespaces and TUN devices)")?;
    let relays = args
        .forwards
        .iter()
        .map(|spec| {
            Relay::start(
                link.namespace(Host::Server),
                Host::Server.addr().into(),
                *spec,
            )
            .with_context(|| format!("forwarding {spec}"))
        })
        .collect::<Result<Vec<_>>>()?;

    eprintln!(
        "glass: running `{}` behind profile {} ({:?} link)",
        args.command.join(" "),
        link_profiles.name,
        link.backend()
    );
    eprintln!(
        "glass: this side is {}; the other side is {} (uplink: towards it, downlink: back)",
        Host::Publisher.addr(),
        Host::Server.addr()
    );
    for spec in &args.forwards {
        eprintln!(
            "glass: forwarding {spec} (reach it at {}:{})",
            Host::Server.addr(),
            spec.port
        );
    }

    signals::catch_interrupts();
    let mut child = link
        .command(Host::Publisher, program)?
        .args(rest)
        .env("GLASS_SELF", Host::Publisher.addr().to_string())
        .env("GLASS_FAR", Host::Server.addr().to_string())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let mut asked = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(sig) = signals::take() {
            asked += 1;
            // First: pass the signal on; second: stop it for good.
            let sig = if asked == 1 { sig } else { libc::SIGKILL };
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(relays);
    let stats = link.stop()?;
    eprint!("{}", summary(&stats));
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

fn summary(stats: &LinkStats) -> String {
    let mut s = String::new();
    for (dir, label) in [
        (LinkDir::FirstMileUp, "uplink"),
        (LinkDir::FirstMileDown, "downlink"),
    ] {
        let c = stats.counters(dir);
        if c.pushed == 0 {
            continue;
        }
        s.push_str(&format!(
            "glass: {label}: {} packets, {} lost ({:.2} %), {} queue drops, {} delivered\n",
            c.pushed,
            c.dropped_loss,
            c.dropped_loss as f64 * 100.0 / c.pushed as f64,
            c.dropped_queue + c.dropped_aqm + c.dropped_outage,
            c.delivered
        ));
    }
    if stats.total_kernel_drops() > 0 {
        s.push_str(&format!(
            "glass: warning: the kernel dropped {} packets before Glass could read them (the link was overloaded); they are not in the figures above\n",
            stats.total_kernel_drops()
        ));
    }
    let e = &stats.release_error;
    if e.packets > 0 {
        s.push_str(&format!(
            "glass: release error over {} packets: p50 {} µs, p99 {} µs, max {} µs\n",
            e.packets, e.p50_us, e.p99_us, e.max_us
        ));
    }
    s
}
