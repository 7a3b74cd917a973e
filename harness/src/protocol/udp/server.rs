//! The UDP protocol's server on a real socket: moves datagrams between the
//! socket and the relay's state machine ([`super::relay::UdpRelay`]),
//! forwards each player's hub subscription into it, and sleeps until the
//! next timer. Everything the relay decides is in `relay.rs`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netem::Time;
use netem::time::Clock;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::relay::UdpRelay;
use super::sleep_until;
use crate::relay::{Hub, Media};

/// Serves the UDP protocol on `sock` until `stop` changes; `reports` gets
/// every session's statistics, sampled every second and at the end.
pub async fn serve(
    sock: UdpSocket,
    cfg: udpmedia::Config,
    hub: Hub,
    mut stop: watch::Receiver<bool>,
    reports: Arc<Mutex<super::UdpServerStats>>,
) {
    let clock = Clock::new(Instant::now());
    let now = || clock.time(Instant::now());
    let mut seed = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut seed) {
        tracing::error!("udp relay: no randomness from the OS ({e}): challenges are predictable");
    }
    let mut relay = UdpRelay::new(cfg, hub, clock, seed, reports);
    let (media_tx, mut media_rx) = mpsc::channel::<(SocketAddr, Media)>(65_536);
    let mut buf = vec![0u8; 65_536];
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    loop {
        relay.pump(now());
        flush(&sock, &mut relay, clock).await;
        let t = now();
        let wake = relay.poll_timeout(t);
        tokio::select! {
            _ = stop.changed() => {
                relay.close(now());
                flush(&sock, &mut relay, clock).await;
                return;
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if let Some(sub) = relay.handle_datagram(now(), from, &buf[..n]) {
                    let mut rx = sub.rx;
                    let tx = media_tx.clone();
                    tokio::spawn(async move {
                        while let Some(m) = rx.recv().await {
                            if tx.send((from, m)).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
            Some((to, m)) = media_rx.recv() => relay.send_media(now(), to, &m),
            _ = sleep_until(clock, wake.unwrap_or(Time::MAX)), if wake.is_some() => {
                relay.handle_timeout(now());
            }
            _ = sample.tick() => relay.record(),
        }
    }
}

/// Sends what the relay has to send. UDP send errors are not fatal (the
/// datagram is lost, as on any network); they are logged.
async fn flush(sock: &UdpSocket, relay: &mut UdpRelay, clock: Clock) {
    while let Some((to, d)) = relay.poll_transmit(clock.time(Instant::now())) {
        if let Err(e) = sock.send_to(&d, to).await {
            tracing::debug!("udp media: send to {to}: {e}");
        }
    }
}
