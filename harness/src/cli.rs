//! Command-line interface of `glass` (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Glass: network emulation and latency test harness for live streaming.
///
/// Glass puts a deterministic impairment engine (loss, jitter, delay, rate
/// limits, queues, outages, cellular traces) between a publisher, a media
/// server and a player, and measures what each streaming protocol does with it.
#[derive(Debug, Parser)]
#[command(
    name = "glass",
    version,
    propagate_version = true,
    after_help = "Examples:\n  glass profile list\n  glass profile check 4g\n  glass profile check \"delay 40ms 5ms distribution normal loss gemodel 1% 30%\" --json\n  glass profile check scenarios/profiles/rate-step-outage.toml --packets 1000000\n  glass shell --profile 4g --forward tcp:1935 -- ffmpeg -re -i in.flv -c copy -f flv rtmp://198.18.0.1/live/key\n  glass proxy udp --listen 127.0.0.1:9000 --upstream 127.0.0.1:9001 --profile lte\n  glass bench link"
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and verify impairment profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Run a scenario: every protocol over every network (and every point of
    /// its [sweep]), with a comparison table and a results directory
    /// (results.json, frames.csv, seconds.csv, report.html, plots/).
    ///
    /// With no SCENARIO it runs the built-in quickstart: RTMP over TCP with
    /// CUBIC and with BBR, and Glass's UDP protocol into the relay played
    /// out as RTMP, on a clean network and with 2 % loss + 40 ms delay on
    /// the first mile. Link mode needs root or user namespaces; without
    /// them `--mode auto` falls back to proxy mode and says so (RTMP, RTSP,
    /// HTTP-FLV and HLS over TCP then refuse loss; QUIC, the UDP protocol and RTSP's
    /// RTP over UDP get datagram proxies, loss included). The table
    /// shows set-up (connect, startup) apart from the steady state (frames
    /// after the warm-up), latency at equal smoothness (G2G at the smallest
    /// buffer that keeps stalls ≤ 1 %), stale refreshes, and G2G by hop.
    Run(RunArgs),
    /// The CI gate: check a scenario's results against its budgets and a
    /// baseline. Exits 0 when every budget holds and nothing regressed, 1
    /// when something broke (it says which, by how much, and where to look),
    /// 2 on an error.
    ///
    /// Given a scenario file it runs it first (as `glass run`); given a
    /// results directory it checks what is there. A regression is a metric
    /// worse than the baseline's beyond both the noise (the 95 % intervals
    /// over repeats) and the baseline's tolerance.
    ///
    /// Example: glass check ci/gate.toml --baseline ci/baseline.json --junit junit.xml
    Check(GateArgs),
    /// Two results directories side by side: every metric of every case in
    /// both, the delta, and whether it is significant: the 95 % intervals
    /// over repeats must separate them and the delta must exceed a noise
    /// threshold of 1 % (at least 1 ms); one repeat cannot tell.
    Compare(CompareArgs),
    /// An HTML report of a results directory: a verdict per network, the
    /// scenario, the impairment asked and realised, the comparison table and
    /// plots (inline SVG, no network fetches; SVG and PNG also in
    /// DIR/plots), with a decision map for a sweep of two numeric axes.
    /// `glass run` writes it at the end; `glass report merge` merges a
    /// sweep's indices run apart.
    Report(ReportArgs),
    /// Run any program behind an impaired link (like mahimahi's mm-link).
    ///
    /// The program runs in a network namespace of its own (198.18.1.1); the
    /// other side of the link is 198.18.0.1. Traffic between them crosses the
    /// profile's uplink (towards 198.18.0.1) and downlink (back), packet by
    /// packet, so kernel TCP sees real loss. `--forward tcp:1935` makes
    /// 198.18.0.1:1935 reach 127.0.0.1:1935 on this machine, so an existing
    /// server can sit behind the link. Needs root, or user namespaces.
    ///
    /// Example: glass shell --profile 4g --forward tcp:1935 -- ffmpeg -re -i in.flv -c copy -f flv rtmp://198.18.0.1/live/key
    Shell(ShellArgs),
    /// An impaired hop in front of any server, on loopback, unprivileged.
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Benchmarks of Glass itself.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Sweeps beyond one machine: plan the runs, run each index where you
    /// like, merge (`glass report merge`).
    #[command(subcommand)]
    Sweep(SweepCommand),
    /// Repeat a scenario's runs for hours in one process and watch it for
    /// leaks: resident memory, heap in use (glibc's count of what it handed
    /// out), open file descriptors, threads and async tasks are sampled every
    /// 10 s (and after each run); after the first quarter (warm-up) a
    /// least-squares trend per series says whether it grows. Writes
    /// soak.csv, soak-runs.csv, soak.json, plots/ and soak.html. Exit 0: no
    /// growth; 1: something grows; 2: an error.
    ///
    /// Ctrl-C ends the soak after the current run and keeps its figures; a
    /// second Ctrl-C quits at once.
    ///
    /// Example: glass soak --hours 1   (the quickstart's protocols for an hour)
    Soak(SoakArgs),
    /// Glass's relay on its own: every protocol's server side on this
    /// machine's ports (loopback unless --public), so your own publisher or
    /// player (OBS, ffmpeg, a browser, your app) can use it, directly or
    /// behind `glass shell` or `glass proxy`. It prints each protocol's
    /// ingest and egress URIs; Ctrl-C stops it and prints per-stream
    /// statistics.
    ///
    /// Example: glass serve --key mystream   then   ffmpeg -re -i in.flv -c copy -f flv rtmp://127.0.0.1:1935/live/mystream
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// A scenario file; default: the quickstart. Its networks × protocols
    /// run in turn, over and over, each time with the next seed.
    pub scenario: Option<PathBuf>,
    /// How long to soak (fractions allowed: 0.1 = 6 minutes). Runs start
    /// until then; the last one finishes.
    #[arg(long, default_value_t = 1.0)]
    pub hours: f64,
    /// Interval between two samples of the process.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub sample_every: netem::units::HumanDuration,
    /// Output directory (default: results/soak-NAME-UNIXTIME).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// How the runs cross the network (see `glass run --help`).
    #[arg(long, value_enum, default_value_t = crate::topology::Mode::Auto)]
    pub mode: crate::topology::Mode,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The stream key publishers must use (players may play any key).
    #[arg(long, default_value = "glass")]
    pub key: String,
    /// Listen on every interface instead of loopback only.
    #[arg(long)]
    pub public: bool,
    /// Added to every protocol's default port (RTMP TCP and QUIC 1935, the
    /// UDP protocol 5000, RTSP 554 and its RTP/RTCP 6970-6971, HTTP-FLV and HLS 8080), to run
    /// beside another server or
    /// without root (ports below 1024).
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<netem::units::HumanDuration>,
    /// Take the relay's settings (its protocols' tables: `http` with HLS
    /// segments, LL-HLS parts and signed URLs, `udp`, `rtsp`, `quic`, and
    /// `tcp_congestion`) from a `[[protocols]]` entry of this scenario
    /// file; its networks and players are not used. Default: every
    /// setting's default.
    ///
    /// Example: glass serve --scenario scenarios/hls-vs-llhls-vs-flv.toml --protocol llhls-200ms
    #[arg(long)]
    pub scenario: Option<std::path::PathBuf>,
    /// With --scenario: the entry's `name` (default: its first entry).
    #[arg(long, requires = "scenario")]
    pub protocol: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// UDP datagram proxy: each client gets its own mapping; both directions
    /// are impaired (uplink: client → upstream, downlink: back).
    ///
    /// Example: glass proxy udp --listen 127.0.0.1:9000 --upstream 127.0.0.1:9001 --profile 4g
    Udp(ProxyArgs),
    /// TCP stream proxy: delay, jitter, bandwidth, held outages, a slow close
    /// (the FIN crosses the delay) and resets. Packet loss cannot be shown on
    /// a byte stream: use link mode (`glass shell`) for TCP under loss.
    ///
    /// Example: glass proxy tcp --listen 127.0.0.1:1936 --upstream 127.0.0.1:1935 --profile "delay 40ms rate 5mbit"
    Tcp {
        #[command(flatten)]
        common: ProxyArgs,
        /// Reset every connection (RST both ways) this long after it opens.
        #[arg(long, value_name = "DURATION")]
        reset_after: Option<netem::units::HumanDuration>,
    },
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on (loopback unless --public).
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// The server behind the proxy.
    #[arg(long)]
    pub upstream: std::net::SocketAddr,
    /// Preset name, TOML file or quoted netem line.
    #[arg(long, default_value = "none")]
    pub profile: String,
    /// Seed of the impairment's random decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<netem::units::HumanDuration>,
    /// Allow a listen address that is not loopback.
    #[arg(long)]
    pub public: bool,
    /// UDP only: drop (and count) datagrams longer than this many bytes.
    #[arg(long, default_value_t = netem::adapters::proxy_udp::MAX_DATAGRAM)]
    pub max_datagram: usize,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Forwarding throughput of the packet-level link against the kernel's
    /// direct paths in the same run (UDP and TCP; loopback in one namespace,
    /// and a veth pair between two with the link's 1500-byte MTU and no
    /// offloads, the like-for-like one), the precision of packet release
    /// (how late packets leave their instant: paced at 1k, 10k and 50k
    /// packets/s, and bursts on a rate-limited link measured against each
    /// packet's serialisation instant), and pacing (the gaps between
    /// packets leaving a 10 Mbit/s bottleneck, from the capture stamped
    /// when each was written). Needs root or user namespaces.
    ///
    /// Example: glass bench link --json
    Link(BenchLinkArgs),
    /// How much faster than real time a scenario runs in virtual time: its
    /// runs timed on the wall clock, the median, and the ratio simulated /
    /// wall, overall and per protocol. Default: 60 s each of the UDP
    /// protocol (NACK, FEC, GCC), RTMP over QUIC (frames mapping) and RTMP
    /// over TCP (smoltcp's) over a first mile with 2 % loss and 40 ms
    /// delay. Needs no privileges.
    ///
    /// Example: glass bench virtual --runs 10
    Virtual(BenchVirtualArgs),
    /// smoltcp's TCP (RTMP over TCP in virtual time) against the kernel's
    /// on the same impaired path: a bulk transfer through the link with
    /// kernel TCP and one in virtual time with smoltcp, the same loss, RTT
    /// and congestion control, beside Mathis's formula. Within 0.8–1.25 of
    /// the kernel, smoltcp's figures may stand next to kernel TCP's. The
    /// kernel half needs root or user namespaces (skipped otherwise).
    ///
    /// Example: glass bench tcp --loss 0.01 --rtt 100ms --congestion reno
    Tcp(BenchTcpArgs),
    /// Players per core: one relay, one publisher and a ramp of light RTMP
    /// viewers on loopback (no impairment). Each step measures capture →
    /// arrival per viewer (p50/p99 pooled and per viewer), freezes, frames
    /// never delivered and the CPU time of the relay's core; the ramp stops
    /// at the first step whose p99 grows more than --knee over one
    /// viewer's, or where a viewer freezes, misses frames or fails. That
    /// step is the relay's knee only if its core was ≥ 90 % busy. The relay
    /// is pinned to core 0, the viewers and publisher to core 1. Prints the
    /// largest step that held and the players one core carries at its
    /// cost per viewer.
    ///
    /// Example: glass bench relay --players 2000 --peer nginx-rtmp
    Relay(BenchRelayArgs),
}

/// A relay Glass did not write, benchmarked beside Glass's.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayPeer {
    /// nginx with nginx-rtmp (Debian: nginx libnginx-mod-rtmp), one process.
    NginxRtmp,
}

#[derive(Debug, Args)]
pub struct BenchRelayArgs {
    /// How the viewers play: rtmp (light HTTP-FLV and HLS viewers are not built).
    #[arg(long, default_value = "rtmp")]
    pub protocol: String,
    /// Most viewers to ramp to (1 to 10,000).
    #[arg(long, default_value_t = 1000)]
    pub players: usize,
    /// The ramp's viewer counts, comma-separated (a 1-viewer baseline is
    /// always first). Default: 1, 50, 100, 200, 400, 700, 1000, 1500,
    /// 2000, 3000, … up to --players.
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<usize>,
    /// The stream's video bitrate (64 kbit/s of audio ride along).
    #[arg(long, default_value = "500kbit/s")]
    pub bitrate: netem::units::BitRate,
    /// Measured length of each step, after every viewer has joined.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// p99 growth over one viewer's that ends the ramp.
    #[arg(long, default_value = "50ms")]
    pub knee: netem::units::HumanDuration,
    /// Also ramp this relay, in the same run, with the same viewers.
    #[arg(long, value_enum)]
    pub peer: Option<RelayPeer>,
    /// Leave the relay and the viewers unpinned.
    #[arg(long)]
    pub no_pin: bool,
    /// Seed of the stream's frame sizes and the viewers' join instants.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchTcpArgs {
    /// Packet loss on the data direction, as a fraction (0.01 is 1 %).
    #[arg(long, default_value_t = 0.01)]
    pub loss: f64,
    /// Round-trip time (half on each direction of the first mile).
    #[arg(long, default_value = "100ms")]
    pub rtt: netem::units::HumanDuration,
    /// Congestion control of both stacks: reno or cubic.
    #[arg(long, default_value = "reno")]
    pub congestion: String,
    /// Length of each transfer (after the connection is up).
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Seed of the loss decisions (both stacks meet the same ones per
    /// packet index).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchVirtualArgs {
    /// A scenario that can run in virtual time (default: the built-in one).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Simulated length of the built-in scenario's run.
    #[arg(long, default_value_t = 60.0, conflicts_with = "scenario")]
    pub seconds: f64,
    /// Runs to time (each with the next repeat's seeds).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchLinkArgs {
    /// Length of each measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// IP packet size for the UDP measurements.
    #[arg(long, default_value_t = 1500)]
    pub size: usize,
    /// Data path to measure: auto, tun or veth.
    #[arg(long, default_value = "auto", value_name = "auto|tun|veth")]
    pub backend: netem::adapters::port::Backend,
    /// Repeat the whole measurement this many times (1–9) and report each
    /// figure's median, ratios as the median of each run's own ratio (a
    /// shared machine is noisy: quote medians). JSON then also carries
    /// every run under `each`.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A scenario file (see scenarios/README.md); default: the quickstart.
    pub scenario: Option<PathBuf>,
    /// Results directory (default: results/NAME-UNIXTIME).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// How traffic crosses the impaired network: `link` (network namespaces
    /// and the packet-level engine: kernel TCP sees real loss; needs root or
    /// user namespaces), `proxy` (proxies on loopback: for TCP endpoints,
    /// RTMP, RTSP, HTTP-FLV and HLS, delay, jitter and rate only, networks with loss refused; for the UDP
    /// protocol, RTMP over QUIC and RTSP's RTP over UDP a datagram proxy, loss included,
    /// and RTSP's control connection beside it delay and rate only), or `auto` (link
    /// when possible, else proxy).
    #[arg(long, value_enum, default_value_t = crate::topology::Mode::Auto)]
    pub mode: crate::topology::Mode,
    /// `virtual`: run in virtual time (as `clock = "virtual"` in the
    /// scenario): one thread, every link an engine pipeline, every endpoint
    /// a state machine, no sockets and no sleeping; a 60 s run takes well
    /// under a second and a seed gives the same frames.csv byte for byte.
    /// Glass's UDP protocol (gudp://), RTMP over QUIC (rtmpq://) and RTMP
    /// over TCP (rtmp://, on smoltcp's TCP, labelled "tcp (smoltcp)") so
    /// far: anything else is refused with the reason. `real`: real time even if the scenario says
    /// `clock = "virtual"`. Default: what the scenario says (real time
    /// unless it sets `clock`).
    #[arg(long, value_enum, value_name = "real|virtual", conflicts_with = "plan")]
    pub clock: Option<crate::scenario::ClockKind>,
    /// Carry on an interrupted run (or sweep) in --output DIR: runs that
    /// finished there are kept, the others run.
    #[arg(long, requires = "output", conflicts_with = "plan")]
    pub resume: bool,
    /// Run one index of a sweep plan (`glass sweep plan`) into
    /// DIR/runs/INDEX/ (results.json, frames.csv, seconds.csv, then
    /// manifest.json). The plan gives the scenario and the mode; an index
    /// that finished is kept (exit 0), one that was interrupted or failed
    /// is run again. Exit 1 when the run failed.
    #[arg(long, value_name = "FILE", requires_all = ["index", "output"], conflicts_with_all = ["scenario", "mode"])]
    pub plan: Option<PathBuf>,
    /// With --plan: the index to run, or `auto`: the first of
    /// GLASS_SWEEP_INDEX, JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs),
    /// SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX.
    #[arg(long, value_name = "N|auto", requires = "plan")]
    pub index: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Preset name, TOML file or quoted netem line for the link.
    #[arg(long, default_value = "none")]
    pub profile: String,

    /// Relay a port of the other side (198.18.0.1) to this machine:
    /// PROTO:PORT, or PROTO:PORT:HOST:PORT for another target. Repeatable.
    #[arg(long = "forward", value_name = "PROTO:PORT[:HOST:PORT]")]
    pub forwards: Vec<netem::adapters::relay::RelaySpec>,

    /// Write pcap captures of each direction, before and after impairment, here.
    #[arg(long, value_name = "DIR")]
    pub pcap: Option<PathBuf>,

    /// Seed of the impairment's random decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Data path: `tun` devices, `veth` pairs read with AF_PACKET (works
    /// without access to /dev/net/tun), or `auto` (TUN if possible).
    #[arg(long, default_value = "auto", value_name = "auto|tun|veth")]
    pub backend: netem::adapters::port::Backend,

    /// The program and its arguments, after `--`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Run a profile on synthetic packets in virtual time and compare what it
    /// did with what it was asked: loss rate and burst length, delay mean,
    /// spread and percentiles, throughput, queue drops.
    ///
    /// PROFILE is a preset name (see `glass profile list`), a TOML file, or a
    /// quoted netem line such as "delay 40ms 5ms distribution normal loss
    /// gemodel 1% 30%". Nothing is sent on any network.
    Check(CheckArgs),
    /// List the built-in presets.
    List,
    /// Print a profile as TOML (a preset's file with its sources, or a netem
    /// line translated), to copy and edit.
    Show {
        /// Preset name, TOML file or quoted netem line.
        profile: String,
    },
}

#[derive(Debug, Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    Uplink,
    Downlink,
    Both,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Preset name, TOML file or quoted netem line.
    pub profile: String,

    /// Synthetic packets to push through each direction (at most 100 million).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub packets: u64,

    /// Seed of the run; the same seed gives the same decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Size of each synthetic packet in bytes.
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub size: u32,

    /// Offered load as a multiple of the bottleneck's capacity (above 1 fills
    /// the queue). Profiles without a rate limit get 10 Mbit/s.
    #[arg(long, default_value_t = 0.8)]
    pub load: f64,

    /// Which direction(s) of a two-way profile to check.
    #[arg(long, value_enum, default_value_t = DirectionArg::Both)]
    pub direction: DirectionArg,

    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// A scenario file (run first) or a results directory (or its results.json).
    pub target: PathBuf,
    /// Baseline to compare against (written by --update-baseline).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write the baseline from these results instead of comparing (then
    /// only budgets are checked).
    #[arg(long, requires = "baseline")]
    pub update_baseline: bool,
    /// Relative tolerance of a new baseline (0.10: a metric may worsen by
    /// 10 % before it counts as a regression; floors: 5 ms, 0.5 % stall,
    /// 50 ms for the startup delay).
    #[arg(long, default_value_t = 0.10, value_name = "FRACTION")]
    pub tolerance: f64,
    /// Write the verdict as JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown summary (for a pull-request comment) here.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Results directory when running a scenario (default: results/NAME-UNIXTIME).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// How a scenario runs (see `glass run --help`).
    #[arg(long, value_enum, default_value_t = crate::topology::Mode::Auto)]
    pub mode: crate::topology::Mode,
}

impl GateArgs {
    /// Whether the target is results (a directory or a .json file), not a scenario.
    pub fn is_results(&self) -> bool {
        self.target.is_dir() || self.target.extension().is_some_and(|e| e == "json")
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Results directory (or results.json) A.
    pub a: PathBuf,
    /// Results directory (or results.json) B.
    pub b: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    /// A results directory (written by `glass run`).
    #[arg(required = true)]
    pub results: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge a sweep's indices, run apart, into one results directory.
    ///
    /// The indices of a plan run apart (`glass run --plan P --index N
    /// --output DIR`, on a cluster or in a loop) become one results
    /// directory: results.json, frames.csv, seconds.csv and the report, as
    /// one `glass run` of the whole scenario writes them. Every index of the
    /// plan must be there exactly once: the missing and duplicated ones are
    /// named, and nothing is written. Failed runs are kept as failed runs.
    ///
    /// Example: glass report merge out-node1 out-node2 --out merged
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Directories holding finished indices: a `--output DIR` of
    /// `glass run --plan` (its runs/N/), or one runs/N/ itself.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged results go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum SweepCommand {
    /// Write the scenario's runs as a numbered plan (index → sweep point,
    /// network, protocol, repeat, seed; the scenario's text and SHA-256),
    /// so each index can run on its own machine: a Kubernetes Indexed Job,
    /// a Slurm array, or a loop. The same scenario gives the same plan.
    ///
    /// Then: glass run --plan plan.json --index auto --output DIR (per
    /// index), and glass report merge DIR… --out MERGED. Templates and a
    /// guide: deploy/README.md.
    ///
    /// Example: glass sweep plan scenarios/protocol-map.toml --mode link --fallback proxy --out plan.json
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A scenario file; default: the quickstart.
    pub scenario: Option<PathBuf>,
    /// Where to write the plan.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The mode every index runs in (`auto`: each index picks link mode
    /// where it can create namespaces, else proxy mode).
    #[arg(long, value_enum, default_value_t = crate::topology::Mode::Auto)]
    pub mode: crate::topology::Mode,
    /// With `--mode link`: where link mode cannot work (a pod without
    /// CAP_NET_ADMIN, user namespaces restricted), run in this mode instead
    /// (and say so in the run's manifest) rather than fail. Only `proxy`.
    #[arg(long, value_enum)]
    pub fallback: Option<crate::topology::Mode>,
}
