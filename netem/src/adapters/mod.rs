//! The I/O edges around the sans-IO engine: network namespaces and a TUN link
//! between them (kernel TCP sees real loss), a precise release timer, UDP and
//! TCP proxies on loopback, packet captures and TCP_INFO.

pub mod capture;
pub mod link;
pub mod netns;
pub mod port;
pub mod proxy_tcp;
pub mod proxy_udp;
pub mod relay;
pub mod sockbuf;
pub mod tcpinfo;
pub mod timer;

/// Whether this process can create network namespaces. Tests that need them
/// call this: outside CI a missing privilege skips the test with a message;
/// in CI (`CI` set) it fails, so a CI that lost its privileges cannot pass
/// without running them.
pub fn can_create_namespaces() -> bool {
    match netns::NetNs::new("probe") {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI must be able to create network namespaces: {e}")
        }
        Err(e) => {
            eprintln!("skipped: cannot create network namespaces here ({e}); run as root");
            false
        }
    }
}
