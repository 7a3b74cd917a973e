//! Plain layer-4 relays from a Glass namespace to the host: a port opened on a
//! namespace address is carried to a server on the host's own network (its
//! loopback, typically). `glass shell` uses them so that a program behind the
//! impaired link reaches an existing server; the impairment happens on the
//! link, the relay only crosses the namespace boundary.
//!
//! Threads, not async: a relay carries a handful of connections, and every
//! loop is bounded (connection count) and stops with its owner.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::netns::NetNs;

/// Most connections (TCP) or client mappings (UDP) one relay carries.
pub const MAX_FLOWS: usize = 256;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RelayProto {
    Tcp,
    Udp,
}

/// `tcp:1935` or `udp:9000:127.0.0.1:9001`: listen on PORT in the namespace,
/// relay to TARGET (default 127.0.0.1:PORT) on the host.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RelaySpec {
    pub proto: RelayProto,
    pub port: u16,
    pub target: SocketAddr,
}

impl FromStr for RelaySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (proto, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("\"{s}\": expected PROTO:PORT[:HOST:PORT], e.g. tcp:1935"))?;
        let proto = match proto {
            "tcp" => RelayProto::Tcp,
            "udp" => RelayProto::Udp,
            _ => return Err(format!("\"{s}\": the protocol is tcp or udp")),
        };
        let (port, target) = match rest.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (rest, None),
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("\"{s}\": the port is a number from 1 to 65535"))?;
        let target = match target {
            Some(t) => t
                .parse()
                .map_err(|_| format!("\"{s}\": the target is HOST:PORT, e.g. 127.0.0.1:1935"))?,
            None => SocketAddr::from(([127, 0, 0, 1], port)),
        };
        Ok(RelaySpec {
            proto,
            port,
            target,
        })
    }
}

impl fmt::Display for RelaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            RelayProto::Tcp => "tcp",
            RelayProto::Udp => "udp",
        };
        write!(f, "{p}/{} → {}", self.port, self.target)
    }
}

/// A running relay; stops when dropped.
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `listen_ip:spec.port` inside `ns` and relays to `spec.target`
    /// from the host's namespace (the one this process started in).
    pub fn start(ns: &NetNs, listen_ip: std::net::IpAddr, spec: RelaySpec) -> io::Result<Relay> {
        let stop = Arc::new(AtomicBool::new(false));
        let listen = SocketAddr::new(listen_ip, spec.port);
        let thread = match spec.proto {
            RelayProto::Tcp => {
                let listener = ns.run(|| TcpListener::bind(listen))?;
                listener.set_nonblocking(true)?;
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("glass-relay-tcp-{}", spec.port))
                    .spawn(move || tcp_accept_loop(&listener, spec.target, &stop))?
            }
            RelayProto::Udp => {
                let sock = ns.run(|| UdpSocket::bind(listen))?;
                sock.set_read_timeout(Some(Duration::from_millis(50)))?;
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("glass-relay-udp-{}", spec.port))
                    .spawn(move || udp_loop(sock, spec.target, &stop))?
            }
        };
        Ok(Relay {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tcp_accept_loop(listener: &TcpListener, target: SocketAddr, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((inside, _)) => {
                if active.load(Ordering::Relaxed) >= MAX_FLOWS {
                    continue; // dropped: the client sees a reset
                }
                let Ok(outside) = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                else {
                    continue; // target down: closing `inside` tells the client
                };
                let _ = inside.set_nonblocking(false);
                active.fetch_add(1, Ordering::Relaxed);
                let active = active.clone();
                let _ = std::thread::Builder::new()
                    .name("glass-relay-conn".into())
                    .spawn(move || {
                        pipe_both(inside, outside);
                        active.fetch_sub(1, Ordering::Relaxed);
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Copies both ways until both sides have closed, passing half-closes on.
fn pipe_both(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let t = std::thread::spawn(move || copy_half(a2, b2));
    copy_half(b, a);
    let _ = t.join();
}

fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn udp_loop(inside: UdpSocket, target: SocketAddr, stop: &AtomicBool) {
    let inside = Arc::new(inside);
    let clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, client)) = inside.recv_from(&mut buf) else {
            continue;
        };
        let outside = {
            let Ok(mut map) = clients.lock() else { return };
            match map.get(&client) {
                Some(s) => s.clone(),
                None => {
                    if map.len() >= MAX_FLOWS {
                        continue;
                    }
                    let Ok(s) =
                        UdpSocket::bind("127.0.0.1:0").or_else(|_| UdpSocket::bind("0.0.0.0:0"))
                    else {
                        continue;
                    };
                    if s.connect(target).is_err()
                        || s.set_read_timeout(Some(Duration::from_millis(50))).is_err()
                    {
                        continue;
                    }
                    let s = Arc::new(s);
                    map.insert(client, s.clone());
                    // Replies from the target go back to this client, until the
                    // relay drops its handle to the socket (strong count 1).
                    let (back, inside) = (s.clone(), inside.clone());
                    let _ = std::thread::Builder::new()
                        .name("glass-relay-udp-back".into())
                        .spawn(move || {
                            let mut buf = vec![0u8; 65_536];
                            while Arc::strong_count(&back) > 1 {
                                if let Ok(n) = back.recv(&mut buf) {
                                    let _ = inside.send_to(&buf[..n], client);
                                }
                            }
                        });
                    s
                }
            }
        };
        let _ = outside.send(&buf[..n]);
    }
    // Dropping the map drops the client sockets; the reply threads see it and end.
    if let Ok(mut m) = clients.lock() {
        m.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            "tcp:1935".parse::<RelaySpec>().unwrap(),
            RelaySpec {
                proto: RelayProto::Tcp,
                port: 1935,
                target: "127.0.0.1:1935".parse().unwrap()
            }
        );
        assert_eq!(
            "udp:9000:127.0.0.1:9001"
                .parse::<RelaySpec>()
                .unwrap()
                .target
                .port(),
            9001
        );
        for bad in ["1935", "sctp:1", "tcp:0", "tcp:99999", "tcp:1:nowhere"] {
            assert!(bad.parse::<RelaySpec>().is_err(), "{bad}");
        }
    }
}
