//! The I/O edges around the sans-IO engine: network namespaces and a TUN link
//! between them (kernel TCP sees real loss), a precise release timer, UDP and
//! TCP proxies on loopback, packet captures and TCP_INFO.

pub mod capture;
pub mod graph;
pub mod link;
pub mod netns;
pub mod port;
pub mod proxy_tcp;
pub mod proxy_udp;
pub mod relay;
pub mod skip;
pub mod sockbuf;
pub mod tcpinfo;
pub mod timer;

/// Whether this process can create network namespaces. Tests that need them
/// call this and return when it is false: a missing privilege is a
/// [`skip::skip`] (a failure under `CI`).
pub fn can_create_namespaces() -> bool {
    match netns::NetNs::new("probe") {
        Ok(_) => true,
        Err(e) => {
            // The first sentence: the summary groups skips by reason.
            let e = e.to_string();
            let first = e.split(". ").next().unwrap_or(&e);
            skip::skip(&format!(
                "cannot create network namespaces ({first}); run as root"
            ));
            false
        }
    }
}
