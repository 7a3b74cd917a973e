//! The one place a scenario file is checked and turned into a
//! [`Scenario`]: every error names the dotted field (the file and line are
//! added by `locate`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use netem::config::LinkProfiles;
use netem::units::HumanDuration;
use netem::{ConfigError, Profile};

use crate::interop::ffmpeg::parse_resolution;
use crate::media::encoder::EncoderConfig;
use crate::media::flv;
use crate::media::player::{LatePolicy, LatencyControl, PlayerConfig};
use crate::protocol::uri::StreamUri;

use super::*;

/// The player's live-edge control from its table: the kind's default for
/// the late policy, and `max_rate`/`skip_threshold` only where they apply.
fn latency_control(
    p: &PlayerFile,
    late: LatePolicy,
    field: &str,
    default: Option<LatencyControlKind>,
) -> Result<LatencyControl> {
    let kind = p.latency_control.or(default).unwrap_or(match late {
        LatePolicy::Wait => LatencyControlKind::CatchUp,
        LatePolicy::Skip => LatencyControlKind::SkipToLive,
    });
    if p.max_rate.is_some() && kind != LatencyControlKind::CatchUp {
        return bad(
            format!("{field}.player.max_rate"),
            "applies to latency_control = \"catch_up\"",
        );
    }
    if p.skip_threshold.is_some() && kind != LatencyControlKind::SkipToLive {
        return bad(
            format!("{field}.player.skip_threshold"),
            "applies to latency_control = \"skip_to_live\"",
        );
    }
    Ok(match kind {
        LatencyControlKind::None => LatencyControl::None,
        LatencyControlKind::CatchUp => {
            let max_rate = p.max_rate.unwrap_or(LatencyControl::DEFAULT_MAX_RATE);
            if !(max_rate > 1.0 && max_rate <= 4.0) {
                return bad(
                    format!("{field}.player.max_rate"),
                    format!("{max_rate}: a playback rate above 1 and at most 4"),
                );
            }
            LatencyControl::CatchUp { max_rate }
        }
        LatencyControlKind::SkipToLive => {
            let threshold = p
                .skip_threshold
                .map_or(LatencyControl::DEFAULT_SKIP_THRESHOLD, HumanDuration::get);
            if threshold < Duration::from_millis(1) || threshold > Duration::from_secs(60) {
                return bad(
                    format!("{field}.player.skip_threshold"),
                    "between 1 ms and 60 s",
                );
            }
            LatencyControl::SkipToLive { threshold }
        }
    })
}

impl ScenarioFile {
    pub fn validate(&self, base_dir: Option<&Path>) -> Result<Scenario> {
        if self.name.trim().is_empty() {
            return bad("name", "give the scenario a name");
        }
        let duration = self.duration.get();
        if duration < Duration::from_secs(1) || duration > Duration::from_secs(24 * 3600) {
            return bad("duration", "between 1 s and 24 h");
        }
        if self.repeat == 0 || self.repeat > 1000 {
            return bad("repeat", "between 1 and 1000");
        }
        let m = &self.media;
        let encoder = EncoderConfig {
            bitrate: m.bitrate,
            fps: m.fps,
            gop: m.gop,
            encode_delay: m.encode_delay.get(),
            audio: m.audio.then(|| EncoderConfig::default().audio).flatten(),
            ..EncoderConfig::default()
        };
        encoder
            .validate()
            .map_err(|e| ConfigError::invalid("media", e))?;
        let warmup = match self.warmup {
            Some(w) => w.get(),
            // 5 s, or the start of the second GOP when GOPs are longer; at
            // most half of a short run.
            None => Duration::from_secs(5)
                .max(Duration::from_secs_f64(m.gop as f64 / m.fps))
                .min(duration / 2),
        };
        if warmup >= duration {
            return bad(
                "warmup",
                format!(
                    "{} leaves no steady state in a {} run: shorten it or lengthen `duration`",
                    HumanDuration(warmup),
                    HumanDuration(duration)
                ),
            );
        }
        let replay = match &m.flv {
            None => None,
            Some(name) => {
                let path = base_dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
                let tags = flv::read_file(&path)
                    .map_err(|e| ConfigError::invalid("media.flv", e.to_string()))?;
                Some(Replay {
                    path,
                    tags: std::sync::Arc::new(tags),
                })
            }
        };
        let networks = if self.networks.is_empty() {
            vec![NetworkFile {
                name: "clean".into(),
                first_mile: LinkFile::default(),
                last_mile: LinkFile::default(),
                cross: Vec::new(),
                hostile: Vec::new(),
                faults: Vec::new(),
                players: Vec::new(),
                viewers: None,
            }]
        } else {
            self.networks.clone()
        };
        let mut names = std::collections::HashSet::new();
        let mut out_networks = Vec::new();
        for (i, n) in networks.iter().enumerate() {
            let field = format!("networks[{i}]");
            if !names.insert(n.name.clone()) {
                return bad(
                    format!("{field}.name"),
                    format!("\"{}\" is used twice", n.name),
                );
            }
            let (fu, fd, dfu, dfd) = n
                .first_mile
                .resolve(base_dir)
                .map_err(|e| e.within(&format!("{field}.first_mile")))?;
            let (lu, ld, dlu, dld) = n
                .last_mile
                .resolve(base_dir)
                .map_err(|e| e.within(&format!("{field}.last_mile")))?;
            let groups = player_groups(n, &field, base_dir, (lu, ld, dlu, dld), duration)?;
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            let cross = n
                .cross
                .iter()
                .enumerate()
                .map(|(j, c)| c.validate(&format!("{field}.cross[{j}]"), duration, &names))
                .collect::<Result<Vec<_>>>()?;
            let hostile = n
                .hostile
                .iter()
                .enumerate()
                .map(|(j, a)| a.validate(&format!("{field}.hostile[{j}]"), duration))
                .collect::<Result<Vec<_>>>()?;
            let faults = n
                .faults
                .iter()
                .enumerate()
                .map(|(j, f)| f.validate(&format!("{field}.faults[{j}]"), duration))
                .collect::<Result<Vec<_>>>()?;
            let g0 = &groups[0];
            out_networks.push(Network {
                name: n.name.clone(),
                first_mile: (fu, fd),
                last_mile: g0.last_mile.clone(),
                described: [dfu, dfd, g0.described[0].clone(), g0.described[1].clone()],
                cross,
                hostile,
                faults,
                groups,
            });
        }
        if self.protocols.is_empty() {
            return bad("protocols", "list at least one protocol to run");
        }
        let mut protocols = Vec::new();
        let mut pnames = std::collections::HashSet::new();
        for (i, p) in self.protocols.iter().enumerate() {
            let field = format!("protocols[{i}]");
            let proto = protocol(p, &field, m, duration)?;
            if !pnames.insert(proto.name.clone()) {
                return bad(
                    format!("{field}.name"),
                    format!("\"{}\" is used twice; name the variants", proto.name),
                );
            }
            protocols.push(proto);
        }
        // Light viewers are RTMP players over TCP.
        if let Some(n) = out_networks
            .iter()
            .position(|n| n.groups.iter().any(|g| g.viewers.is_some()))
            && let Some(p) = protocols.iter().find(|p| p.player_uri.scheme != "rtmp")
        {
            return bad(
                format!("networks[{n}].viewers"),
                format!(
                    "light viewers play RTMP over TCP (rtmp://), and protocol \"{}\" plays {}://; \
                     put the viewers in a scenario of RTMP protocols",
                    p.name, p.player_uri.scheme
                ),
            );
        }
        let mut scenario = Scenario {
            name: self.name.clone(),
            description: self.description.clone(),
            duration,
            warmup,
            seed: self.seed,
            repeat: self.repeat,
            encoder,
            resolution: m.resolution.clone(),
            networks: out_networks,
            protocols,
            budgets: self.budgets.clone(),
            source: None,
            replay,
            clock: ClockKind::Real,
        };
        if self.clock == ClockKind::Virtual
            && let Err(why) = scenario.set_virtual()
        {
            return bad("clock", why);
        }
        Ok(scenario)
    }
}

impl LinkFile {
    /// (uplink, downlink) profiles and how each was written.
    fn resolve(&self, base_dir: Option<&Path>) -> Result<(Profile, Profile, String, String)> {
        if let Some(name) = &self.profile {
            if self.uplink.is_some() || self.downlink.is_some() {
                return bad(
                    "profile",
                    "give either profile (both directions) or uplink/downlink, not both",
                );
            }
            let resolved = resolve_named(name, base_dir).map_err(|e| e.within("profile"))?;
            let (up, down) = resolved.validate()?;
            return Ok((up, down, name.clone(), name.clone()));
        }
        let side =
            |d: &Option<DirectionFile>, uplink: bool, field: &str| -> Result<(Profile, String)> {
                match d {
                    None => Ok((Profile::transparent(), "none".into())),
                    Some(DirectionFile::Named(name)) => {
                        let p = resolve_named(name, base_dir).map_err(|e| e.within(field))?;
                        let (up, down) = p.validate().map_err(|e| e.within(field))?;
                        Ok((if uplink { up } else { down }, name.clone()))
                    }
                    Some(DirectionFile::Table(t)) => Ok((
                        t.validate(base_dir).map_err(|e| e.within(field))?,
                        describe_table(t),
                    )),
                }
            };
        let (up, du) = side(&self.uplink, true, "uplink")?;
        let (down, dd) = side(&self.downlink, false, "downlink")?;
        Ok((up, down, du, dd))
    }
}

/// A profile written as a table, as one line for tables and reports:
/// `delay.base=150ms loss.model=bernoulli loss.rate=5%`.
fn describe_table(t: &netem::config::ProfileConfig) -> String {
    fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, x, out);
                }
            }
            serde_json::Value::String(s) => out.push(format!("{prefix}={s}")),
            serde_json::Value::Null => {}
            other => out.push(format!("{prefix}={other}")),
        }
    }
    let mut parts = Vec::new();
    if let Ok(v) = serde_json::to_value(t) {
        flatten("", &v, &mut parts);
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

/// A preset, a file relative to the scenario, or a netem line.
fn resolve_named(name: &str, base_dir: Option<&Path>) -> Result<LinkProfiles> {
    if let Some(dir) = base_dir {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return LinkProfiles::from_file(&candidate);
        }
    }
    // A field error on the reference itself: `within` adds the field path.
    netem::resolve(name).map_err(|e| ConfigError::invalid("", e.to_string()))
}

/// One `[[protocols]]` entry, checked: its URIs, player, transport and
/// each registered protocol's table, and what they require of `[media]`.
fn protocol(p: &ProtocolFile, field: &str, m: &MediaFile, duration: Duration) -> Result<Protocol> {
    let Some(kind) = crate::protocol::by_name(&p.kind) else {
        return bad(
            format!("{field}.kind"),
            format!(
                "\"{}\" is not a protocol Glass speaks; one of: {}",
                p.kind,
                crate::protocol::names()
            ),
        );
    };
    if let Some(why) = kind.no_publisher() {
        return bad(format!("{field}.kind"), why);
    }
    let name = p.name.clone().unwrap_or_else(|| kind.name().into());
    let cc = p.tcp_congestion.clone().unwrap_or_else(|| "cubic".into());
    if cc.is_empty() || cc.len() > 15 || !cc.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return bad(
            format!("{field}.tcp_congestion"),
            "a congestion control name such as \"cubic\", \"reno\" or \"bbr\"",
        );
    }
    let key = p.stream_key.clone().unwrap_or_else(|| "glass".into());
    if key.is_empty() || key.contains(['/', '?', ' ']) {
        return bad(
            format!("{field}.stream_key"),
            "a stream key is a non-empty word without / ? or spaces",
        );
    }
    let default_scheme = kind.schemes().first().map_or("rtmp", |s| s.name);
    let publisher_uri = stream_uri(&format!("{field}.uri"), &p.uri, None, default_scheme, &key)?;
    // An ingest-only protocol (RTSP) is played over RTMP through the
    // gateway unless the entry says otherwise.
    let player_text = match (&p.player_uri, kind.no_player()) {
        (None, Some(_)) => Some(format!(
            "rtmp://server/{}/{}",
            publisher_uri.app, publisher_uri.key
        )),
        (given, _) => given.clone(),
    };
    let player_uri = stream_uri(
        &format!("{field}.player_uri"),
        &player_text,
        Some(&publisher_uri),
        default_scheme,
        &key,
    )?;
    if p.uri.is_some() && p.stream_key.is_some() {
        return bad(
            format!("{field}.stream_key"),
            "give the stream key in `uri`, not both",
        );
    }
    if player_uri.key != publisher_uri.key || player_uri.app != publisher_uri.app {
        return bad(
            format!("{field}.player_uri"),
            "the player must play what the publisher publishes: same app and key as `uri`",
        );
    }
    let key = publisher_uri.key.clone();
    let routed = |u: &StreamUri, at: &str| {
        crate::protocol::route(u)
            .map(|(p, _)| p)
            .map_err(|e| ConfigError::invalid(format!("{field}.{at}"), e.to_string()))
    };
    let publishes_with = routed(&publisher_uri, "uri")?;
    let plays_with = routed(&player_uri, "player_uri")?;
    if let Some(why) = publishes_with.no_publisher() {
        return bad(format!("{field}.uri"), why);
    }
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    if p.publisher == PublisherKind::Ffmpeg
        && publishes_with.ffmpeg_output(&publisher_uri, any).is_none()
    {
        return bad(
            format!("{field}.uri"),
            "ffmpeg publishes RTMP over TCP (rtmp://) or RTSP (rtsp://, ?transport=udp) only",
        );
    }
    if let Some(why) = plays_with.no_player() {
        return bad(format!("{field}.player_uri"), why);
    }
    if publishes_with.name() != kind.name() {
        return bad(
            format!("{field}.uri"),
            format!(
                "a {}:// publisher is kind = \"{}\"; kind = \"{}\" publishes over {}://server/live/KEY (its player may use another protocol's URI: the relay is a gateway)",
                publisher_uri.scheme,
                publishes_with.name(),
                kind.name(),
                default_scheme
            ),
        );
    }
    if let Some(a) = &p.abr {
        if let Some(why) = kind.refuses_abr() {
            return bad(format!("{field}.abr"), why);
        }
        a.validate()
            .map_err(|e| ConfigError::invalid(format!("{field}.abr"), e))?;
    }
    let player = player(&p.player, field, plays_with, &player_uri)?;
    let join = p.player.join.map_or(Duration::ZERO, HumanDuration::get);
    if join > duration.saturating_sub(Duration::from_secs(1)) {
        return bad(
            format!("{field}.player.join"),
            "at least 1 s before the run's end (`duration`)",
        );
    }
    let tables = tables(
        p,
        field,
        &player,
        player_uri.scheme,
        [publishes_with, plays_with],
    )?;
    let out = Protocol {
        name,
        kind: kind.name(),
        stream_key: key,
        player,
        join,
        capture_starts: p.capture_starts,
        publisher: p.publisher,
        ffmpeg_player: p.ffmpeg_player,
        tcp_congestion: cc,
        publisher_uri,
        player_uri,
        abr: p.abr.clone(),
        tables,
    };
    if p.ffmpeg_player && p.publisher == PublisherKind::Glass && m.flv.is_none() {
        return bad(
            format!("{field}.ffmpeg_player"),
            "ffmpeg plays real H.264 only: use publisher = \"ffmpeg\" or replay a file (media.flv); Glass's synthetic frames have no pictures",
        );
    }
    if p.publisher == PublisherKind::Ffmpeg {
        if m.flv.is_some() {
            return bad(
                format!("{field}.publisher"),
                "ffmpeg publishes its own test pattern; media.flv is replayed by Glass's publisher (publisher = \"glass\")",
            );
        }
        if parse_resolution(&m.resolution).is_none() {
            return bad(
                "media.resolution",
                format!(
                    "ffmpeg encodes at this resolution: give WIDTHxHEIGHT with even numbers (\"1280x720\"), not \"{}\"",
                    m.resolution
                ),
            );
        }
    }
    Ok(out)
}

/// Every registered protocol's table for an entry, each parsed by its
/// protocol; a table written for a protocol neither URI uses, or a key no
/// protocol owns, is refused.
fn tables(
    p: &ProtocolFile,
    field: &str,
    player: &PlayerConfig,
    player_scheme: &str,
    used: [&dyn crate::protocol::Protocol; 2],
) -> Result<Vec<(&'static str, std::sync::Arc<dyn crate::protocol::Table>)>> {
    let registry = crate::protocol::REGISTRY;
    if let Some(k) = p
        .tables
        .keys()
        .find(|k| !registry.iter().any(|r| r.table_key() == k.as_str()))
    {
        let keys: Vec<&str> = registry.iter().map(|r| r.table_key()).collect();
        return bad(
            format!("{field}.{k}"),
            format!(
                "unknown field `{k}`: a [[protocols]] entry takes {}, and a protocol's table ({})",
                PROTOCOL_COMMON_KEYS.join(", "),
                keys.join(", ")
            ),
        );
    }
    let cx = crate::protocol::EntryCx {
        field,
        target_delay: player.target_delay,
        player_scheme,
    };
    let mut out = Vec::new();
    for r in registry {
        let written = p.tables.get(r.table_key());
        if written.is_some() && !used.iter().any(|u| u.name() == r.name()) {
            let schemes: Vec<String> = r
                .schemes()
                .iter()
                .map(|s| format!("{}://", s.name))
                .collect();
            return bad(
                format!("{field}.{}", r.table_key()),
                format!(
                    "applies to {} URIs; neither `uri` nor `player_uri` is one",
                    schemes.join(" and ")
                ),
            );
        }
        out.push((
            r.table_key(),
            std::sync::Arc::from(r.configure(written, &cx)?),
        ));
    }
    Ok(out)
}

/// A URI of a `[[protocols]]` entry (`at` is its dotted field): as written,
/// else `fallback`, else `scheme://server/live/KEY`; the host must be the
/// relay and the port the relay's for that scheme.
fn stream_uri(
    at: &str,
    written: &Option<String>,
    fallback: Option<&StreamUri>,
    scheme: &str,
    key: &str,
) -> Result<StreamUri> {
    let u = match (written, fallback) {
        (Some(s), _) => StreamUri::parse(s).map_err(|e| ConfigError::invalid(at, e.to_string()))?,
        (None, Some(u)) => return Ok(u.clone()),
        (None, None) => StreamUri::parse(&format!("{scheme}://server/live/{key}"))
            .map_err(|e| ConfigError::invalid(at, e.to_string()))?,
    };
    if u.host != "server" {
        return bad(
            at,
            format!(
                "the host is Glass's relay: write rtmp://server/... (not \"{}\")",
                u.host
            ),
        );
    }
    let (_, endpoint) =
        crate::protocol::route(&u).map_err(|e| ConfigError::invalid(at, e.to_string()))?;
    if u.port != endpoint.port() {
        return bad(
            at,
            format!(
                "the relay listens on port {} for this scheme",
                endpoint.port()
            ),
        );
    }
    Ok(u)
}

/// The player's table: refresh, playout buffer (default by the player's
/// protocol: low delay for the UDP protocol, buffered for RTMP, DESIGN) and
/// live-edge control.
fn player(
    p: &PlayerFile,
    field: &str,
    plays_with: &dyn crate::protocol::Protocol,
    uri: &StreamUri,
) -> Result<PlayerConfig> {
    let refresh = p
        .refresh
        .map_or(Duration::from_secs_f64(1.0 / 60.0), HumanDuration::get);
    if refresh < Duration::from_millis(1) || refresh > Duration::from_secs(1) {
        return bad(format!("{field}.player.refresh"), "between 1 ms and 1 s");
    }
    // Low delay for the UDP protocol, buffered for RTMP (DESIGN): the
    // player's protocol says.
    let target = p
        .target_delay
        .map_or(plays_with.default_target_delay(), HumanDuration::get);
    if target > Duration::from_secs(60) {
        return bad(format!("{field}.player.target_delay"), "at most 60 s");
    }
    let late = p.late.unwrap_or(LatePolicy::Wait);
    let latency_control = latency_control(p, late, field, plays_with.default_latency_control(uri))?;
    Ok(PlayerConfig {
        target_delay: target,
        refresh,
        late,
        ordered: true,
        latency_control,
    })
}

/// A network's player groups: its `players`, each checked (a host name the
/// topology takes, unique, its own last mile), or the default group on the
/// network's `last_mile` (`last_mile`, resolved).
fn player_groups(
    n: &NetworkFile,
    field: &str,
    base_dir: Option<&Path>,
    last_mile: (Profile, Profile, String, String),
    duration: Duration,
) -> Result<Vec<PlayerGroup>> {
    use netem::adapters::graph::MAX_GROUPS;
    if n.players.is_empty() {
        let (u, d, du, dd) = last_mile;
        let viewers = n
            .viewers
            .as_ref()
            .map(|v| v.validate(&format!("{field}.viewers"), duration))
            .transpose()?;
        return Ok(vec![PlayerGroup {
            name: DEFAULT_GROUP.into(),
            host: DEFAULT_GROUP.into(),
            link: "last_mile".into(),
            last_mile: (u, d),
            described: [du, dd],
            viewers,
        }]);
    }
    if n.viewers.is_some() {
        return bad(
            format!("{field}.viewers"),
            "a network with `players` gives each group its own viewers",
        );
    }
    let lm = &n.last_mile;
    if lm.profile.is_some() || lm.uplink.is_some() || lm.downlink.is_some() {
        return bad(
            format!("{field}.last_mile"),
            "a network with `players` gives each group its own last_mile; \
             move this one into the groups",
        );
    }
    if n.players.len() > MAX_GROUPS {
        return bad(
            format!("{field}.players"),
            format!(
                "at most {MAX_GROUPS} player groups, not {}",
                n.players.len()
            ),
        );
    }
    let reserved = ["publisher", "server", "first_cross"];
    let mut out: Vec<PlayerGroup> = Vec::new();
    for (j, g) in n.players.iter().enumerate() {
        let gf = format!("{field}.players[{j}]");
        if !netem::adapters::graph::is_host_name(&g.name) {
            return bad(
                format!("{gf}.name"),
                format!(
                    "\"{}\" is not a host name: a word of at most 12 letters, digits, - and _",
                    g.name
                ),
            );
        }
        if reserved.contains(&g.name.as_str()) || g.name.starts_with("last_cross") {
            return bad(
                format!("{gf}.name"),
                format!("\"{}\" is the name of another host; choose another", g.name),
            );
        }
        if out.iter().any(|o| o.name == g.name) {
            return bad(
                format!("{gf}.name"),
                format!("\"{}\" is used twice", g.name),
            );
        }
        let (u, d, du, dd) = g
            .last_mile
            .resolve(base_dir)
            .map_err(|e| e.within(&format!("{gf}.last_mile")))?;
        let viewers = g
            .viewers
            .as_ref()
            .map(|v| v.validate(&format!("{gf}.viewers"), duration))
            .transpose()?;
        out.push(PlayerGroup {
            name: g.name.clone(),
            host: g.name.clone(),
            link: format!("last_mile-{}", g.name),
            last_mile: (u, d),
            described: [du, dd],
            viewers,
        });
    }
    Ok(out)
}
