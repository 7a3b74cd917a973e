//! `glass proxy udp|tcp`: an impaired hop in front of any server, on
//! loopback, without privileges.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use netem::adapters::proxy_tcp::{TcpProxy, TcpProxyConfig, stream_profile};
use netem::adapters::proxy_udp::{UdpProxy, UdpProxyConfig};
use netem::config::LinkProfiles;

use crate::cli::{ProxyArgs, ProxyCommand};

pub fn run(cmd: &ProxyCommand) -> Result<()> {
    let rt = crate::runtime::runtime()?;
    rt.block_on(async {
        match cmd {
            ProxyCommand::Udp(args) => udp(args).await,
            ProxyCommand::Tcp {
                common,
                reset_after,
            } => tcp(common, reset_after.map(|d| d.get())).await,
        }
    })
}

fn profiles(args: &ProxyArgs) -> Result<(LinkProfiles, netem::Profile, netem::Profile)> {
    let p = netem::resolve(&args.profile)?;
    let (up, down) = p.validate()?;
    Ok((p, up, down))
}

fn check_listen(args: &ProxyArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() && !args.public {
        return Err(anyhow!(
            "{} is not a loopback address: a proxy listens on loopback unless you pass --public",
            args.listen
        ));
    }
    Ok(())
}

/// Waits for Ctrl-C or the `--duration` to pass.
async fn until_done(duration: Option<Duration>) {
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = timer => {}
    }
}

async fn udp(args: &ProxyArgs) -> Result<()> {
    check_listen(args)?;
    let (p, up, down) = profiles(args)?;
    let proxy = UdpProxy::start(UdpProxyConfig {
        listen: args.listen,
        upstream: args.upstream,
        profiles: (up, down),
        seed: args.seed,
        max_datagram: args.max_datagram,
    })
    .await
    .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "glass: UDP proxy {} → {} with profile {} (Ctrl-C to stop)",
        proxy.local_addr(),
        args.upstream,
        p.name
    );
    until_done(args.duration.map(|d| d.get())).await;
    let stats = proxy.stop().await?;
    eprintln!(
        "glass: {} clients; uplink {} in, {} lost, {} delivered; downlink {} in, {} lost, {} delivered; {} oversized, {} send errors",
        stats.clients,
        stats.uplink.pushed,
        stats.uplink.dropped(),
        stats.uplink.delivered,
        stats.downlink.pushed,
        stats.downlink.dropped(),
        stats.downlink.delivered,
        stats.oversized,
        stats.send_errors
    );
    Ok(())
}

async fn tcp(args: &ProxyArgs, reset_after: Option<Duration>) -> Result<()> {
    check_listen(args)?;
    let (p, up, down) = profiles(args)?;
    let up = stream_profile(&up).map_err(|e| anyhow!("uplink: {e}"))?;
    let down = stream_profile(&down).map_err(|e| anyhow!("downlink: {e}"))?;
    let proxy = TcpProxy::start(TcpProxyConfig {
        listen: args.listen,
        upstream: args.upstream,
        profiles: (up, down),
        seed: args.seed,
        reset_after,
        connect_timeout: Duration::from_secs(5),
    })
    .await
    .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "glass: TCP proxy {} → {} with profile {} (Ctrl-C to stop)",
        proxy.local_addr(),
        args.upstream,
        p.name
    );
    until_done(args.duration.map(|d| d.get())).await;
    let s = proxy.stop().await;
    eprintln!(
        "glass: {} connections ({} upstream failures, {} resets); {} bytes up, {} bytes down",
        s.connections, s.upstream_failures, s.resets, s.bytes_up, s.bytes_down
    );
    Ok(())
}
