//! The UDP protocol's server side on the hub: accepts publishers (which the
//! hub admits by stream key) and players on one socket. A publisher's
//! frames go into the hub exactly as an RTMP publisher's do (so RTMP and
//! QUIC players get them: the gateway); UDP players are fed from it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use netem::Time;
use netem::time::Clock;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use udpmedia::wire::{self, Body, Role};
use udpmedia::{Admission, Gate};
use udpmedia::{Connection, OutFrame};

use super::{UdpReport, flush, sleep_until};
use crate::media::tag;
use crate::relay::{APP, Hub, Media};

/// One session the relay serves.
struct Peer {
    conn: Connection,
    /// The stream it publishes (ingest) or plays (egress).
    key: String,
    publishing: bool,
    /// Its entry in the server's reports.
    slot: usize,
}

impl Peer {
    fn send(&mut self, now: Time, m: &Media, hub: &Hub) {
        let Some((video, data, timestamp)) = m.as_av() else {
            return;
        };
        let f = OutFrame {
            video,
            key: tag::is_key_tag(video, data),
            timestamp,
            data,
        };
        if let Err(e) = self.conn.send_frame(now, f) {
            tracing::debug!("udp media: to a player: {e}");
        }
        hub.note_sent(m);
    }
}

/// Serves the UDP protocol on `sock` until `stop` changes; `reports` gets
/// every session's statistics (`relay-ingest` for publishers,
/// `relay-egress` for players), sampled every second and at the end.
pub async fn serve(
    sock: UdpSocket,
    cfg: udpmedia::Config,
    hub: Hub,
    mut stop: watch::Receiver<bool>,
    reports: Arc<Mutex<super::UdpServerStats>>,
) {
    let clock = Clock::new(Instant::now());
    let (media_tx, mut media_rx) = mpsc::channel::<(SocketAddr, Media)>(65_536);
    let mut peers: HashMap<SocketAddr, Peer> = HashMap::new();
    let mut next_session = 1u32;
    let mut seed = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut seed) {
        tracing::error!("udp relay: no randomness from the OS ({e}): challenges are predictable");
    }
    // The token's challenge–response (udpmedia::auth): the token never
    // crosses the link.
    let mut gate = Gate::new(&cfg.token, seed);
    let mut buf = vec![0u8; 65_536];
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    let record = |peers: &HashMap<SocketAddr, Peer>| {
        if let Ok(mut st) = reports.lock() {
            for p in peers.values() {
                let role = if p.publishing {
                    "relay-ingest"
                } else {
                    "relay-egress"
                };
                st.udp[p.slot] = UdpReport::of(role, &p.conn);
            }
        }
    };
    loop {
        let now = clock.time(Instant::now());
        for (addr, p) in peers.iter_mut() {
            while let Some(f) = p.conn.poll_frame() {
                if let Err(e) =
                    hub.publish(&p.key, Media::av(f.video, Bytes::from(f.data), f.timestamp))
                {
                    tracing::warn!("udp media: {e:#}");
                }
            }
            flush(&sock, &mut p.conn, *addr, clock).await;
        }
        let closed: Vec<SocketAddr> = peers
            .iter()
            .filter(|(_, p)| p.conn.is_closed())
            .map(|(a, _)| *a)
            .collect();
        if !closed.is_empty() {
            record(&peers);
            for a in closed {
                if let Some(p) = peers.remove(&a)
                    && p.publishing
                {
                    hub.release(&p.key);
                }
            }
        }
        let wake = peers
            .values()
            .filter_map(|p| p.conn.poll_timeout(now))
            .min();
        tokio::select! {
            _ = stop.changed() => {
                let now = clock.time(Instant::now());
                for (addr, p) in peers.iter_mut() {
                    p.conn.close(now);
                    flush(&sock, &mut p.conn, *addr, clock).await;
                }
                record(&peers);
                return;
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let now = clock.time(Instant::now());
                let d = &buf[..n];
                if let Some(p) = peers.get_mut(&from) {
                    p.conn.handle_datagram(now, d);
                    continue;
                }
                let count = |f: fn(&mut super::UdpServerStats) -> &mut u64| {
                    if let Ok(mut st) = reports.lock() {
                        *f(&mut st) += 1;
                    }
                };
                let Ok(wire::Packet { body: Body::Hello(h), .. }) = wire::parse(d) else {
                    count(|s| &mut s.udp_stray);
                    continue;
                };
                if peers.len() >= 64 {
                    count(|s| &mut s.udp_refused);
                    continue;
                }
                let key = String::from_utf8_lossy(h.key).into_owned();
                let refuse = |reason: &str| udpmedia::Refusal { code: wire::REJECT_KEY, reason: reason.into() };
                let Some(stream) = key.strip_prefix(&format!("{APP}/")).map(str::to_string) else {
                    count(|s| &mut s.udp_refused);
                    let _ = sock.send_to(&refuse(&format!("unknown application in \"{}\"", crate::redact::app_key(&key))).datagram(), from).await;
                    continue;
                };
                let publishing = h.role == Role::Publish;
                let admitted = match gate.check(&h, now) {
                    Admission::Admit(a) => a,
                    Admission::Challenge(d) => {
                        count(|s| &mut s.udp_challenges);
                        let _ = sock.send_to(&d, from).await;
                        continue;
                    }
                    Admission::Refuse(r) => {
                        count(|s| &mut s.udp_refused);
                        let _ = sock.send_to(&r.datagram(), from).await;
                        continue;
                    }
                };
                match Connection::accept(cfg.clone(), &h, admitted, next_session, now) {
                    Err(r) => {
                        count(|s| &mut s.udp_refused);
                        let _ = sock.send_to(&r.datagram(), from).await;
                    }
                    Ok(conn) => {
                        if publishing && !hub.claim(&stream).unwrap_or(false) {
                            count(|s| &mut s.udp_refused);
                            let _ = sock.send_to(&refuse("wrong stream key, or already publishing").datagram(), from).await;
                            continue;
                        }
                        next_session = next_session.wrapping_add(1).max(1);
                        let slot = match reports.lock() {
                            Ok(mut st) => {
                                st.udp.push(UdpReport::default());
                                st.udp.len() - 1
                            }
                            Err(_) => continue,
                        };
                        let mut peer = Peer { conn, key: stream, publishing, slot };
                        if !publishing {
                            // A player: what it missed, then the stream as it comes.
                            let Ok(sub) = hub.subscribe(&peer.key) else { continue };
                            for m in &sub.catch_up {
                                peer.send(now, m, &hub);
                            }
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
                        peers.insert(from, peer);
                    }
                }
            }
            Some((to, m)) = media_rx.recv() => {
                if let Some(p) = peers.get_mut(&to) {
                    p.send(clock.time(Instant::now()), &m, &hub);
                }
            }
            _ = sleep_until(clock, wake.unwrap_or(Time::MAX)), if wake.is_some() => {
                let now = clock.time(Instant::now());
                for p in peers.values_mut() {
                    p.conn.handle_timeout(now);
                }
            }
            _ = sample.tick() => record(&peers),
        }
    }
}
