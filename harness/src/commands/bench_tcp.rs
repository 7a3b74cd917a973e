//! `glass bench tcp`: smoltcp's TCP (what RTMP over TCP runs on in virtual
//! time) against the kernel's, on the same impaired path: a bulk transfer
//! for `--seconds` over a first mile with `--loss` on the data direction
//! and `--rtt`, once through the packet-level link with kernel TCP, once in
//! virtual time with smoltcp, the same congestion control. Mathis et al.'s
//! formula (MSS / RTT × 1.22 / √p) is printed beside both: the issue's
//! check is the ratio smoltcp / kernel at 1 % loss and 100 ms RTT, which
//! must fall in 0.8–1.25 for smoltcp's figures to stand next to kernel
//! TCP's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use netem::Profile;
use netem::adapters::link::{Host, LinkConfig, LinkDir, LinkNetwork};
use netem::adapters::tcpinfo::{set_congestion, tcp_info};
use serde::Serialize;

use crate::cli::BenchTcpArgs;
use crate::scenario::Scenario;
use crate::virtual_time::tcp::{Bulk, bulk_goodput};

/// The payload of a full segment with timestamps on a 1,500-byte MTU.
const MSS: f64 = 1448.0;

#[derive(Debug, Serialize)]
pub struct TcpBench {
    pub loss: f64,
    pub rtt_ms: f64,
    pub congestion: String,
    pub seconds: f64,
    pub mathis_bps: f64,
    pub kernel: Option<Bulk>,
    /// Why the kernel was not measured (no network namespaces here).
    pub kernel_skipped: Option<String>,
    pub smoltcp: Bulk,
    /// smoltcp's goodput over the kernel's.
    pub ratio: Option<f64>,
    /// Whether the ratio is within 0.8–1.25.
    pub comparable: Option<bool>,
}

pub fn run(args: &BenchTcpArgs) -> Result<()> {
    if !(1.0..=600.0).contains(&args.seconds) {
        bail!("--seconds: 1 to 600");
    }
    if !(0.0..0.5).contains(&args.loss) {
        bail!("--loss is a fraction below 0.5 (0.01 is 1 %)");
    }
    let rtt = args.rtt.get();
    if rtt < Duration::from_millis(2) || rtt > Duration::from_secs(2) {
        bail!("--rtt: 2 ms to 2 s");
    }
    crate::virtual_time::tcp::congestion_control(&args.congestion)?;
    let half = rtt.as_secs_f64() * 500.0;
    let up = format!("delay {half}ms loss {}%", args.loss * 100.0);
    let down = format!("delay {half}ms");
    let scenario = Scenario::from_toml(
        "bench-tcp (built in)",
        &format!(
            r#"
name = "bench-tcp"
duration = "1s"
[[networks]]
name = "n"
first_mile = {{ uplink = "{up}", downlink = "{down}" }}
[[protocols]]
kind = "rtmp"
"#
        ),
        None,
    )?;
    eprintln!(
        "glass bench tcp: {} s bulk transfers, {up} / {down}, {}",
        args.seconds, args.congestion
    );
    let smoltcp = bulk_goodput(
        &scenario.networks[0],
        &args.congestion,
        args.seconds,
        args.seed,
    )?;
    let (kernel, kernel_skipped) = match netem::adapters::can_create_namespaces() {
        true => (
            Some(kernel_bulk(
                &up,
                &down,
                &args.congestion,
                args.seconds,
                args.seed,
            )?),
            None,
        ),
        false => (
            None,
            Some("no network namespaces here (root or user namespaces needed)".to_string()),
        ),
    };
    let mathis = MSS * 8.0 / rtt.as_secs_f64() * 1.22 / args.loss.max(1e-9).sqrt();
    let ratio = kernel
        .as_ref()
        .map(|k| smoltcp.goodput_bps / k.goodput_bps.max(1.0));
    let report = TcpBench {
        loss: args.loss,
        rtt_ms: rtt.as_secs_f64() * 1e3,
        congestion: args.congestion.clone(),
        seconds: args.seconds,
        mathis_bps: mathis,
        kernel,
        kernel_skipped,
        smoltcp,
        ratio,
        comparable: ratio.map(|r| (0.8..=1.25).contains(&r)),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let line = |who: &str, b: &Bulk| {
        println!(
            "  {who:<16} {:>8.3} Mbit/s   {:>6} packets, {:>5} dropped ({:.2} %), {:>5} retransmitted",
            b.goodput_bps / 1e6,
            b.packets,
            b.dropped,
            b.dropped as f64 * 100.0 / b.packets.max(1) as f64,
            b.retransmits
        )
    };
    println!(
        "Mathis (MSS {MSS} B, RTT {:.0} ms, loss {:.2} %): {:.3} Mbit/s",
        report.rtt_ms,
        args.loss * 100.0,
        mathis / 1e6
    );
    if let Some(k) = &report.kernel {
        line("kernel (link)", k);
    }
    line("smoltcp (virtual)", &report.smoltcp);
    match (report.ratio, &report.kernel_skipped) {
        (Some(r), _) => println!(
            "smoltcp / kernel: {r:.2} ({})",
            if (0.8..=1.25).contains(&r) {
                "within 0.8–1.25"
            } else {
                "OUTSIDE 0.8–1.25: smoltcp's TCP figures are not kernel TCP's"
            }
        ),
        (None, Some(why)) => println!("kernel not measured: {why}"),
        (None, None) => {}
    }
    Ok(())
}

/// A bulk transfer with kernel TCP through the link, publisher → server,
/// for `seconds` after connecting; what the receiver got in that time.
fn kernel_bulk(up: &str, down: &str, cc: &str, seconds: f64, seed: u64) -> Result<Bulk> {
    let profile = |line: &str| -> Result<Profile> { Ok(netem::resolve(line)?.validate()?.0) };
    let link = LinkNetwork::start(LinkConfig {
        first_mile: (profile(up)?, profile(down)?),
        last_mile: (Profile::transparent(), Profile::transparent()),
        seed,
        capture_dir: None,
        backend: netem::adapters::port::Backend::Auto,
    })
    .context("starting the link")?;
    let server = SocketAddr::from((Host::Server.addr(), 7002));
    let listener = link.run_in(Host::Server, || TcpListener::bind(server))?;
    let limit = Duration::from_secs_f64(seconds);
    let sink = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let t0 = Instant::now();
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut total = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        while t0.elapsed() < limit {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    });
    let cc_name = cc.to_string();
    let mut client = link.run_in(Host::Publisher, move || -> std::io::Result<TcpStream> {
        let s = std::net::TcpStream::connect(server)?;
        set_congestion(&s, &cc_name)?;
        Ok(s)
    })?;
    client.set_write_timeout(Some(Duration::from_millis(200)))?;
    let chunk = vec![0x5a_u8; 64 * 1024];
    let t0 = Instant::now();
    while t0.elapsed() < limit + Duration::from_millis(300) {
        match client.write(&chunk) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let info = tcp_info(&client).unwrap_or_default();
    let bytes = sink
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
    drop(client);
    let stats = link.stop()?;
    let c = stats.counters(LinkDir::FirstMileUp);
    Ok(Bulk {
        bytes,
        seconds,
        goodput_bps: bytes as f64 * 8.0 / seconds,
        dropped: c.dropped_loss,
        packets: c.pushed,
        retransmits: u64::from(info.total_retrans),
    })
}
