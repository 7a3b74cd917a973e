//! `glass serve`: the relay on its own, every registered protocol's server
//! side on this machine's ports. Nothing here knows a protocol: it binds
//! each protocol's endpoints, prints each scheme's URI, and serves until
//! Ctrl-C (or `--duration`).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::protocol::{Bound, Endpoint, REGISTRY, ServeCx};
use crate::relay::{APP, Hub, HubStats};
use crate::scenario::{MediaFile, Protocol as Settings};

/// The relay's settings: a scenario entry's (`--scenario`, `--protocol`),
/// or the defaults.
fn settings_of(args: &ServeArgs) -> Result<Settings> {
    let Some(path) = &args.scenario else {
        return Ok(Settings::defaults());
    };
    let scenario = crate::scenario::Scenario::from_file(path)?;
    let names = || {
        scenario
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match &args.protocol {
        None => scenario.protocols.first(),
        Some(name) => scenario.protocols.iter().find(|p| &p.name == name),
    };
    found.cloned().with_context(|| {
        format!(
            "--protocol {}: {} has no such [[protocols]] entry (it has {})",
            args.protocol.as_deref().unwrap_or(""),
            path.display(),
            names()
        )
    })
}

pub fn run(args: &ServeArgs) -> Result<()> {
    if args.key.is_empty() || args.key.contains(['/', '?', ' ']) {
        anyhow::bail!("--key: a stream key is a non-empty word without / ? or spaces");
    }
    let ip = if args.public {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let shown = if args.public {
        "THIS-HOST".to_string()
    } else {
        ip.to_string()
    };
    let settings = settings_of(args)?;
    let rt = crate::runtime::runtime()?;
    let hub = Hub::new(args.key.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut listing = String::new();
    let servers = rt.block_on(async {
        let mut servers = Vec::new();
        for p in REGISTRY {
            let ports: Vec<Endpoint> = p
                .endpoints()
                .iter()
                .map(|e| {
                    let port = e
                        .port()
                        .checked_add(args.port_offset)
                        .context("--port-offset takes a port past 65535")?;
                    Ok(e.with_port(port))
                })
                .collect::<Result<_>>()?;
            let socks = ports
                .iter()
                .map(|&e| bind(ip, e))
                .collect::<Result<Vec<_>>>()?;
            let cx = ServeCx {
                hub: hub.clone(),
                stop: stop_rx.clone(),
                publisher_ports: ports.iter().map(|e| e.port()).collect(),
                // The stream's bitrate is not known here: a scenario's default.
                media_bps: MediaFile::default().bitrate.bits_per_sec(),
                clock: None,
            };
            servers.push((p.name(), p.serve(socks, &settings, cx)?));
            for s in p.schemes() {
                let port = ports[s.endpoint].port();
                let _ = writeln!(
                    listing,
                    "  {:<6} {}://{shown}:{port}/{APP}/{}\n         {}",
                    p.name(),
                    s.name,
                    args.key,
                    s.what
                );
            }
        }
        anyhow::Ok(servers)
    })?;
    if args.public {
        listing.push_str(
            "  (THIS-HOST: any address of this machine; QUIC clients must accept Glass's \
             self-signed certificate)\n",
        );
    }
    // Written, not printed: a closed stdout (`glass serve | head`) must not
    // stop the relay with a panic.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stdout(),
        format_args!("glass serve: publish and play at (Ctrl-C stops):\n{listing}\n"),
    );
    rt.block_on(async {
        let limit = async {
            match args.duration {
                Some(d) => tokio::time::sleep(d.get()).await,
                None => std::future::pending().await,
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
            _ = limit => {}
        }
        let _ = stop_tx.send(true);
        let mut sections = serde_json::Map::new();
        for (name, task) in servers {
            match tokio::time::timeout(Duration::from_secs(3), task).await {
                Ok(Ok(stats)) => sections.extend(stats.json()),
                _ => eprintln!("glass serve: the {name} side did not stop in time"),
            }
        }
        say(summary(&hub.stats()).trim_end());
        if !sections.is_empty() {
            say(&format!(
                "protocols: {}",
                serde_json::to_string(&sections).unwrap_or_default()
            ));
        }
        anyhow::Ok(())
    })
}

/// Prints a line to stdout; a reader that went away (a closed pipe) is not
/// a reason to stop serving, so write errors are ignored.
fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Binds `e` on `ip`, saying which port failed and why.
fn bind(ip: IpAddr, e: Endpoint) -> Result<Bound> {
    let at = SocketAddr::new(ip, e.port());
    let bound = match e {
        Endpoint::Tcp(_) => crate::topology::relay_listener(at).map(Bound::Tcp),
        Endpoint::Udp(_) => std::net::UdpSocket::bind(at).map(Bound::Udp),
    };
    bound.with_context(|| {
        format!("listening on {e} at {at} (another server there? try --port-offset)")
    })
}

/// One line per stream, then the relay's totals.
fn summary(st: &HubStats) -> String {
    let mut s = String::new();
    for (key, c) in &st.streams {
        let _ = writeln!(
            s,
            "stream {APP}/{}: {} publish(es) accepted, {} refused; {} player(s); {} video and {} audio messages in ({:.1} MB)",
            crate::redact::key(key),
            c.publishes_accepted,
            c.publishes_refused,
            c.players,
            c.video_messages,
            c.audio_messages,
            c.bytes_in as f64 / 1e6
        );
    }
    let _ = writeln!(
        s,
        "relay: {} publish(es) accepted, {} refused, {} player(s), {} dropped for falling behind",
        st.publishes_accepted, st.publishes_refused, st.players, st.slow_players_dropped
    );
    s
}
