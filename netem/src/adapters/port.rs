//! Where the link engine reads and writes a host's IP packets: a TUN device
//! in the host's namespace, or a veth pair whose far end sits in a switch
//! namespace of Glass's, read through an `AF_PACKET` socket.
//!
//! TUN is the simplest and fastest, but opening `/dev/net/tun` needs the
//! device node's permission: root, or mode 0666 (Debian's default; some
//! machines have 0600). The veth path needs no device node, so it works for
//! an unprivileged user inside a user namespace. Both carry bare IP packets.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

use super::netns::NetNs;

/// One host's attachment to the engine.
pub trait Port: Send + Sync {
    /// Reads one IP packet; `WouldBlock` when none is waiting (the fd is
    /// non-blocking: the engine polls all ports from one thread).
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Reads up to `bufs.len()` waiting packets (each buffer at least
    /// [`MAX_PACKET`] long), their lengths into `sizes`; returns how many,
    /// `WouldBlock` when none waits. A port that can (`recvmmsg`) takes
    /// them in one system call.
    fn recv_many(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize]) -> io::Result<usize> {
        sizes[0] = self.recv(&mut bufs[0])?;
        Ok(1)
    }
    /// Writes one IP packet towards the host.
    fn send(&self, packet: &[u8]) -> io::Result<()>;
    /// Writes packets due together. Errors other than a closed device are
    /// per packet (the host's stack refused one: a drop) and leave the
    /// others written.
    fn send_batch(&self, packets: &[Vec<u8>]) -> io::Result<()> {
        for p in packets {
            match self.send(p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }
    fn fd(&self) -> RawFd;
    /// Packets the kernel dropped on their way to us (our queue overflowed).
    fn kernel_drops(&self) -> u64;
}

/// Which data path the link uses.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// TUN if `/dev/net/tun` can be opened, veth otherwise.
    #[default]
    Auto,
    Tun,
    Veth,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "tun" => Ok(Backend::Tun),
            "veth" => Ok(Backend::Veth),
            _ => Err(format!("\"{s}\": the link backend is auto, tun or veth")),
        }
    }
}

/// Packets the kernel holds for the engine on each TUN device. The engine
/// reads every port from one thread, so this queue is what absorbs a burst
/// (a TCP window sent at memory speed) while the engine writes: the kernel's
/// default of 500 would drop where a real link's queue, modelled in the
/// pipeline, should decide.
const TX_QUEUE: u32 = 16_384;

/// Largest IP packet after segmentation (the devices' MTU), with room to spare.
pub const MAX_PACKET: usize = 2048;

pub struct TunPort {
    dev: tun_rs::SyncDevice,
    /// `/proc/net/dev` of the device's namespace, opened inside it: the
    /// kernel counts there what the device's queue dropped.
    stats: std::fs::File,
}

impl TunPort {
    /// A TUN device `glass0` with `addr/15`, created inside `ns`.
    pub fn create(ns: &NetNs, addr: Ipv4Addr) -> io::Result<TunPort> {
        ns.run(|| {
            let dev = tun_rs::DeviceBuilder::new()
                .name("glass0")
                .ipv4(addr, 15, None)
                .mtu(1500)
                .tx_queue_len(TX_QUEUE)
                .build_sync()?;
            dev.set_nonblocking(true)?;
            let stats = std::fs::File::open("/proc/thread-self/net/dev")?;
            Ok(TunPort { dev, stats })
        })
    }
}

/// The transmit-drop count of `glass0` in a `/proc/net/dev` text: packets
/// the host's stack could not queue to the TUN device.
fn tx_dropped(proc_net_dev: &str) -> Option<u64> {
    let line = proc_net_dev
        .lines()
        .find(|l| l.trim_start().starts_with("glass0:"))?;
    let fields: Vec<&str> = line.split(':').nth(1)?.split_whitespace().collect();
    // receive: bytes packets errs drop fifo frame compressed multicast (8),
    // then transmit: bytes packets errs drop: tx drop is field 11.
    fields.get(11)?.parse().ok()
}

impl Port for TunPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf)
    }
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.dev.send(packet).map(|_| ())
    }
    fn fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
    fn kernel_drops(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; 8192];
        let n = self.stats.read_at(&mut buf, 0).unwrap_or(0);
        tx_dropped(&String::from_utf8_lossy(&buf[..n])).unwrap_or(0)
    }
}

/// An `AF_PACKET` datagram socket on the switch side of a host's veth pair.
pub struct PacketPort {
    sock: OwnedFd,
    /// PACKET_STATISTICS resets on read: the running total.
    drops: std::sync::atomic::AtomicU64,
    ifindex: i32,
    /// The host interface's MAC: the destination of what we send.
    host_mac: [u8; 6],
}

const ETH_P_IP: u16 = 0x0800;

fn mac(host_index: u8, switch_side: bool) -> [u8; 6] {
    // Locally administered unicast addresses: 02:67:6c ("gl") : side : 00 : host.
    [
        0x02,
        0x67,
        0x6c,
        u8::from(switch_side),
        0x00,
        host_index + 1,
    ]
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The `ip` program (iproute2), which may not be on an unprivileged PATH.
fn ip_command(ns: &NetNs) -> io::Result<Command> {
    let program = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the veth link needs `ip` (Debian package iproute2)",
            )
        })?;
    let mut cmd = Command::new(program);
    ns.prepare_command(&mut cmd)?;
    Ok(cmd)
}

fn run_ip(ns: &NetNs, args: &[&str]) -> io::Result<()> {
    let out = ip_command(ns)?.args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl PacketPort {
    /// Creates `glass0` (with `addr/15`) in `host` and its peer `sw<i>` in
    /// `switch`, and opens the packet socket on the peer.
    pub fn create(
        host: &NetNs,
        switch: &NetNs,
        index: u8,
        addr: Ipv4Addr,
    ) -> io::Result<PacketPort> {
        let peer = format!("sw{index}");
        let switch_path = format!("/proc/{}/fd/{}", std::process::id(), switch.raw_fd());
        let (host_mac, switch_mac) = (mac(index, false), mac(index, true));
        run_ip(
            host,
            &[
                "link",
                "add",
                "glass0",
                "address",
                &mac_text(host_mac),
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "address",
                &mac_text(switch_mac),
                "netns",
                &switch_path,
            ],
        )?;
        run_ip(
            host,
            &["addr", "add", &format!("{addr}/15"), "dev", "glass0"],
        )?;
        // No ARP: the engine addresses each frame itself.
        run_ip(
            host,
            &["link", "set", "glass0", "arp", "off", "mtu", "1500", "up"],
        )?;
        host.run(|| disable_offloads("glass0"))?;
        run_ip(switch, &["link", "set", &peer, "arp", "off", "up"])?;
        let (sock, ifindex) = switch.run(|| open_packet_socket(&peer))?;
        Ok(PacketPort {
            sock,
            drops: 0.into(),
            ifindex,
            host_mac,
        })
    }
}

/// The kernel's own path between two namespaces, for comparison with the
/// link: a veth pair, `a_addr/24` in `a` and `b_addr/24` in `b`, MTU 1500 and
/// offloads off on both ends (the link's TUN devices have none either, so
/// both carry the same 1500-byte packets; loopback's 64 KiB MTU would not).
pub fn direct_veth(a: &NetNs, b: &NetNs, a_addr: Ipv4Addr, b_addr: Ipv4Addr) -> io::Result<()> {
    let b_path = format!("/proc/{}/fd/{}", std::process::id(), b.raw_fd());
    run_ip(
        a,
        &[
            "link", "add", "direct0", "type", "veth", "peer", "name", "direct1", "netns", &b_path,
        ],
    )?;
    for (ns, dev, addr) in [(a, "direct0", a_addr), (b, "direct1", b_addr)] {
        run_ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", dev])?;
        run_ip(ns, &["link", "set", dev, "mtu", "1500", "up"])?;
        ns.run(|| disable_offloads(dev))?;
    }
    Ok(())
}

/// Turns off checksum and segmentation offloads, so every packet the engine
/// sees is a real, finished, MTU-sized IP packet (not a 64 KB GSO batch with
/// its checksum left to hardware).
fn disable_offloads(ifname: &str) -> io::Result<()> {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    const ETHTOOL_SSG: u32 = 0x19;
    const ETHTOOL_STSO: u32 = 0x1f;
    const ETHTOOL_SGSO: u32 = 0x24;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    // SAFETY: SIOCETHTOOL with a zeroed ifreq naming the interface and a
    // pointer to a live ethtool_value.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(fd);
        for cmd in [ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SSG, ETHTOOL_STXCSUM] {
            let mut value = EthtoolValue { cmd, data: 0 };
            let mut req: libc::ifreq = std::mem::zeroed();
            for (d, s) in req
                .ifr_name
                .iter_mut()
                .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
            {
                *d = s as libc::c_char;
            }
            req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("turning offloads off on {ifname}: {e}"),
                ));
            }
        }
    }
    Ok(())
}

fn open_packet_socket(ifname: &str) -> io::Result<(OwnedFd, i32)> {
    let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: plain socket calls with properly sized, initialised arguments.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_IP.to_be()),
        );
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("AF_PACKET socket: {e}")));
        }
        let sock = OwnedFd::from_raw_fd(fd);
        // A deep receive queue rides out scheduling hiccups (FORCE: as root,
        // past the rmem_max cap; otherwise the capped size).
        super::sockbuf::enlarge(&sock, super::sockbuf::Buffer::Receive, 16 << 20);
        let one: libc::c_int = 1;
        // Our own transmissions would otherwise come back to us.
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IP.to_be();
        sll.sll_ifindex = ifindex;
        if libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok((sock, ifindex))
    }
}

/// Packets per `recvmmsg`/`sendmmsg` call.
const MMSG: usize = 32;

impl PacketPort {
    /// Where frames to the host go: its veth end's MAC, IPv4.
    fn host_address(&self) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IP.to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&self.host_mac);
        sll
    }
}

impl Port for PacketPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: recv into a live, writable buffer of the given length.
        let n = unsafe {
            libc::recv(
                self.sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn recv_many(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize]) -> io::Result<usize> {
        let n = bufs.len().min(sizes.len()).min(MMSG);
        // SAFETY: one iovec per buffer, each pointing at a live, writable
        // buffer of its length; the mmsghdr array points at them and lives
        // until recvmmsg returns.
        unsafe {
            let mut iov: [libc::iovec; MMSG] = std::mem::zeroed();
            let mut msgs: [libc::mmsghdr; MMSG] = std::mem::zeroed();
            for i in 0..n {
                iov[i] = libc::iovec {
                    iov_base: bufs[i].as_mut_ptr().cast(),
                    iov_len: bufs[i].len(),
                };
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            let got = libc::recvmmsg(
                self.sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            );
            if got < 0 {
                return Err(io::Error::last_os_error());
            }
            for i in 0..got as usize {
                sizes[i] = msgs[i].msg_len as usize;
            }
            Ok(got as usize)
        }
    }

    fn send_batch(&self, packets: &[Vec<u8>]) -> io::Result<()> {
        for chunk in packets.chunks(MMSG) {
            // SAFETY: as in `send`, with one iovec and one mmsghdr per packet,
            // all alive until sendmmsg returns.
            unsafe {
                let mut sll = self.host_address();
                let mut iov: [libc::iovec; MMSG] = std::mem::zeroed();
                let mut msgs: [libc::mmsghdr; MMSG] = std::mem::zeroed();
                for (i, p) in chunk.iter().enumerate() {
                    iov[i] = libc::iovec {
                        iov_base: p.as_ptr() as *mut libc::c_void,
                        iov_len: p.len(),
                    };
                    msgs[i].msg_hdr.msg_iov = &mut iov[i];
                    msgs[i].msg_hdr.msg_iovlen = 1;
                    msgs[i].msg_hdr.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
                    msgs[i].msg_hdr.msg_namelen =
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                }
                let mut sent = 0;
                while sent < chunk.len() {
                    let n = libc::sendmmsg(
                        self.sock.as_raw_fd(),
                        msgs.as_mut_ptr().add(sent),
                        (chunk.len() - sent) as libc::c_uint,
                        0,
                    );
                    if n < 0 {
                        // A packet the host refused: a drop; go on past it.
                        let e = io::Error::last_os_error();
                        if e.kind() == io::ErrorKind::BrokenPipe {
                            return Err(e);
                        }
                        sent += 1;
                    } else {
                        sent += n as usize;
                    }
                }
            }
        }
        Ok(())
    }

    fn send(&self, packet: &[u8]) -> io::Result<()> {
        // SAFETY: sendto with a fully initialised sockaddr_ll.
        unsafe {
            let sll = self.host_address();
            let n = libc::sendto(
                self.sock.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn kernel_drops(&self) -> u64 {
        // SAFETY: getsockopt into a zeroed tpacket_stats of the right size.
        let dropped = unsafe {
            let mut st: libc::tpacket_stats = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
            let ok = libc::getsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            ) == 0;
            if ok { u64::from(st.tp_drops) } else { 0 }
        };
        self.drops
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed)
            + dropped
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_tx_drops_from_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\nglass0: 1000 10 0 0 0 0 0 0 2000 20 0 7 0 0 0 0\n";
        assert_eq!(super::tx_dropped(text), Some(7));
        assert_eq!(super::tx_dropped("nothing"), None);
    }
}
