use super::*;
use crate::media::player::LatencyControl;

const GOOD: &str = r#"
name = "t"
duration = "10s"
[media]
bitrate = "2Mbit/s"
fps = 30
gop = 60
resolution = "1280x720"
audio = true
encode_delay = "20ms"
[[networks]]
name = "lossy"
first_mile = { uplink = "delay 20ms loss 2%", downlink = "delay 20ms" }
last_mile = { profile = "lte" }
[[protocols]]
kind = "rtmp"
player = { target_delay = "300ms" }
[budgets]
g2g_p99 = "2s"
"#;

#[test]
fn every_shipped_scenario_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            Scenario::sweep_from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 6, "{n} scenarios in {}", dir.display());
}

#[test]
fn udp_protocols_default_their_uris_and_refuse_mismatches() {
    let base = "name = \"u\"\nduration = \"1s\"\n";
    let s = Scenario::from_toml(
        "u.toml",
        &format!("{base}[[protocols]]\nkind = \"udp\"\n"),
        None,
    )
    .unwrap();
    let p = &s.protocols[0];
    assert_eq!(p.publisher_uri.to_string(), "gudp://server:5000/live/glass");
    assert_eq!(p.player.target_delay, Duration::from_millis(200));
    let udp = p.table::<crate::protocol::udp::UdpConfig>().unwrap();
    assert_eq!(udp.latency, Duration::from_millis(200));
    assert_eq!(p.player_uri.scheme, "gudp");
    for (body, needle) in [
        (
            "kind = \"rtmp\"\nuri = \"gudp://server/live/glass\"",
            "kind = \"udp\"",
        ),
        (
            "kind = \"udp\"\nuri = \"rtmp://server/live/glass\"",
            "gudp://",
        ),
        ("kind = \"udp\"\nabr = {}", "congestion control"),
        (
            "kind = \"rtmp\"\nudp = { nack = true }",
            "applies to gudp://",
        ),
        ("kind = \"udp\"\nudp = { red = 7 }", "udp.red"),
        (
            "kind = \"udp\"\nudp = { fec = { kind = \"rs\", k = 0, m = 1 } }",
            "udp.fec",
        ),
        (
            "kind = \"udp\"\nudp = { fec = { kind = \"lt\" } }",
            "unknown variant",
        ),
        (
            "kind = \"udp\"\nuri = \"gudp://server:1935/live/glass\"",
            "port 5000",
        ),
    ] {
        let e = Scenario::from_toml("u.toml", &format!("{base}[[protocols]]\n{body}\n"), None)
            .expect_err(body)
            .to_string();
        assert!(e.contains(needle), "{body}: {e}");
    }
}

#[test]
fn parses_a_full_scenario() {
    let s = Scenario::from_toml("t.toml", GOOD, None).unwrap();
    assert_eq!(
        s.networks[0].first_mile.0.loss.as_ref().unwrap().spec,
        netem::loss::LossModel::Bernoulli { p: 0.02 }
    );
    assert!(s.networks[0].last_mile.1.bottleneck.is_some());
    assert_eq!(
        s.protocols[0].player.target_delay,
        Duration::from_millis(300)
    );
    assert_eq!(s.budgets.g2g_p99.unwrap().get(), Duration::from_secs(2));
    assert!(Scenario::from_toml("q", QUICKSTART, None).is_ok());
}

fn err(text: &str) -> String {
    Scenario::from_toml("s.toml", text, None)
        .unwrap_err()
        .to_string()
}

#[test]
fn live_edge_control_and_warm_up_default_by_player_kind_and_run_length() {
    let s = Scenario::from_toml(
        "d.toml",
        "name = \"d\"\nduration = \"6s\"\n[[protocols]]\nname = \"a\"\nkind = \"rtmp\"\n\
         [[protocols]]\nname = \"b\"\nkind = \"rtmp\"\nplayer = { late = \"skip\" }\n\
         [[protocols]]\nname = \"c\"\nkind = \"rtmp\"\ncapture_starts = \"at_start\"\n\
         player = { latency_control = \"catch_up\", max_rate = 1.5 }\n",
        None,
    )
    .unwrap();
    let control: Vec<_> = s
        .protocols
        .iter()
        .map(|p| p.player.latency_control)
        .collect();
    assert_eq!(
        control,
        [
            LatencyControl::CatchUp { max_rate: 1.2 },
            LatencyControl::SkipToLive {
                threshold: Duration::from_millis(100)
            },
            LatencyControl::CatchUp { max_rate: 1.5 },
        ]
    );
    assert_eq!(s.protocols[0].capture_starts, CaptureStarts::OnConnect);
    assert_eq!(s.protocols[2].capture_starts, CaptureStarts::AtStart);
    // 5 s, but at most half of a 6 s run.
    assert_eq!(s.warmup, Duration::from_secs(3));
}

#[test]
fn each_kind_of_bad_input_names_file_line_and_field() {
    let base = "name = \"t\"\nduration = \"10s\"\n[[protocols]]\nkind = \"rtmp\"\n";
    for (text, needles) in [
        // Unknown field.
        (
            format!("{base}colour = \"red\"\n"),
            vec!["s.toml", "line 5", "colour"],
        ),
        // Light viewers: a rate without Poisson arrivals, a Poisson crowd
        // longer than the run, a flash crowd without its span, too many,
        // viewers of a protocol that is not RTMP over TCP.
        (
            format!("{base}[[networks]]\nname = \"n\"\nviewers = {{ count = 5, rate = 2.0 }}\n"),
            vec!["networks[0].viewers.rate", "only \"poisson\""],
        ),
        (
            format!("{base}[[networks]]\nname = \"n\"\nviewers = {{ count = 100, arrival = \"poisson\", rate = 5.0 }}\n"),
            vec!["networks[0].viewers.rate", "need about 20s", "lasts 10s"],
        ),
        (
            format!("{base}[[networks]]\nname = \"n\"\nviewers = {{ count = 5, arrival = \"flash\" }}\n"),
            vec!["networks[0].viewers.within", "span"],
        ),
        (
            format!("{base}[[networks]]\nname = \"n\"\nviewers = {{ count = 20000 }}\n"),
            vec!["networks[0].viewers.count", "1 to 10000"],
        ),
        (
            "name = \"t\"\nduration = \"10s\"\n[[protocols]]\nkind = \"udp\"\n[[networks]]\nname = \"n\"\nviewers = { count = 5 }\n".to_string(),
            vec!["networks[0].viewers", "RTMP over TCP", "gudp://"],
        ),
        // A warm-up as long as the run.
        (
            "name = \"t\"\nduration = \"10s\"\nwarmup = \"10s\"\n[[protocols]]\nkind = \"rtmp\"\n"
                .to_string(),
            vec!["warmup", "no steady state"],
        ),
        // A catch-up rate that does not catch up, and a setting of
        // another latency control.
        (
            format!("{base}player = {{ max_rate = 1.0 }}\n"),
            vec!["protocols[0].player.max_rate", "above 1"],
        ),
        (
            format!("{base}player = {{ latency_control = \"none\", skip_threshold = \"50ms\" }}\n"),
            vec!["protocols[0].player.skip_threshold", "skip_to_live"],
        ),
        (
            format!("{base}capture_starts = \"whenever\"\n"),
            vec!["line 5", "capture_starts"],
        ),
        // Bad unit.
        (
            "name = \"t\"\nduration = \"10 fortnights\"\n[[protocols]]\nkind = \"rtmp\"\n"
                .to_string(),
            vec!["line 2", "unknown time unit"],
        ),
        // Negative rate in a network table.
        (
            format!(
                "{base}[[networks]]\nname = \"n\"\nfirst_mile = {{ uplink = {{ bottleneck = {{ rate = \"-1Mbit/s\" }} }} }}\n"
            ),
            vec!["line 7", "greater than zero"],
        ),
        // A profile that is neither preset, file nor netem line.
        (
            format!(
                "{base}[[networks]]\nname = \"n\"\nlast_mile = {{ profile = \"5g-magic\" }}\n"
            ),
            vec!["line 7", "networks[0].last_mile.profile", "not a preset"],
        ),
        // Missing file.
        (
            format!(
                "{base}[[networks]]\nname = \"n\"\nlast_mile = {{ profile = \"nope/missing.toml\" }}\n"
            ),
            vec!["networks[0].last_mile.profile", "missing.toml"],
        ),
        // Unknown protocol kind.
        (
            "name = \"t\"\nduration = \"10s\"\n[[protocols]]\nkind = \"carrier-pigeon\"\n"
                .to_string(),
            vec!["line 4", "not a protocol Glass speaks", "rtmp, udp"],
        ),
        // A key no protocol owns in a [[protocols]] entry.
        (
            "name = \"t\"\nduration = \"10s\"\n[[protocols]]\nkind = \"rtmp\"\nsrt = { latency = \"120ms\" }\n"
                .to_string(),
            vec!["line 5", "protocols[0].srt", "unknown field `srt`", "quic, udp"],
        ),
        // A mistyped field of a protocol's table.
        (
            "name = \"t\"\nduration = \"10s\"\n[[protocols]]\nkind = \"udp\"\nudp = { nak = true }\n"
                .to_string(),
            vec!["line 5", "protocols[0].udp", "unknown field `nak`"],
        ),
        // Out of range.
        (
            "name = \"t\"\nduration = \"10s\"\nrepeat = 0\n[[protocols]]\nkind = \"rtmp\"\n"
                .to_string(),
            vec!["line 3", "repeat"],
        ),
        (
            "name = \"t\"\nduration = \"10s\"\n".to_string(),
            vec!["protocols"],
        ),
        // ffmpeg cannot play Glass's synthetic frames.
        (
            format!("{base}ffmpeg_player = true\n"),
            vec!["line 5", "protocols[0].ffmpeg_player", "real H.264"],
        ),
        // An ffmpeg publisher needs a resolution it can encode.
        (
            "name = \"t\"\nduration = \"10s\"\n[media]\nbitrate = \"1Mbit/s\"\nfps = 30\ngop = 60\nresolution = \"720p\"\naudio = false\nencode_delay = \"0ms\"\n[[protocols]]\nkind = \"rtmp\"\npublisher = \"ffmpeg\"\n"
                .to_string(),
            vec!["line 7", "media.resolution", "WIDTHxHEIGHT"],
        ),
        // A recording that is not there.
        (
            "name = \"t\"\nduration = \"10s\"\n[media]\nbitrate = \"1Mbit/s\"\nfps = 30\ngop = 60\nresolution = \"640x360\"\naudio = false\nencode_delay = \"0ms\"\nflv = \"no/such.flv\"\n[[protocols]]\nkind = \"rtmp\"\n"
                .to_string(),
            vec!["line 10", "media.flv", "no/such.flv"],
        ),
        // A malformed stream URI.
        (
            format!("{base}uri = \"rtmpq://server/live\"\n"),
            vec!["line 5", "protocols[0].uri", "/APP/KEY"],
        ),
        // A URI whose host is not Glass's relay.
        (
            format!("{base}uri = \"rtmp://example.com/live/k\"\n"),
            vec!["line 5", "protocols[0].uri", "Glass's relay"],
        ),
        // A player that would play another stream.
        (
            format!("{base}uri = \"rtmp://server/live/a\"\nplayer_uri = \"rtmpq://server/live/b\"\n"),
            vec!["protocols[0].player_uri", "same app and key"],
        ),
        // An unknown QUIC congestion controller.
        (
            format!("{base}quic = {{ congestion = \"vegas\" }}\n"),
            vec!["line 5", "vegas"],
        ),
        // ABR settings that cannot work.
        (
            format!("{base}abr = {{ up = 0.5 }}\n"),
            vec!["protocols[0].abr", "up"],
        ),
        // HTTP-FLV is play only: as the kind, and as the publisher's URI.
        (
            "name = \"t\"\nduration = \"10s\"\n[[protocols]]\nkind = \"http\"\n".to_string(),
            vec!["line 4", "protocols[0].kind", "play only", "player_uri = \"httpflv://"],
        ),
        (
            format!("{base}uri = \"httpflv://server/live/k\"\n"),
            vec!["line 5", "protocols[0].uri", "play only"],
        ),
        (
            format!("{base}player_uri = \"httpflv://server/live/glass?x=1\"\n"),
            vec!["line 5", "protocols[0].player_uri", "unknown query parameter \"x\""],
        ),
        (
            format!("{base}player_uri = \"httpflv://server/live/glass\"\nhttp = {{ gop = true }}\n"),
            vec!["line 6", "protocols[0].http", "unknown field `gop`"],
        ),
        // LL-HLS parts of a segment, a play secret worth the name.
        (
            format!(
                "{base}player_uri = \"llhls://server/live/glass\"\nhttp = {{ hls_segment = \"1s\", hls_part = \"600ms\" }}\n"
            ),
            vec!["line 6", "protocols[0].http.hls_part", "half of hls_segment (500 ms)"],
        ),
        (
            format!(
                "{base}player_uri = \"llhls://server/live/glass\"\nhttp = {{ hls_segment = \"800ms\" }}\n"
            ),
            vec!["protocols[0].http.hls_part", "half of hls_segment"],
        ),
        (
            format!("{base}player_uri = \"hls://server/live/glass\"\nhttp = {{ play_secret = \"short\" }}\n"),
            vec!["line 6", "protocols[0].http.play_secret", "at least 16"],
        ),
        // A player that would join after the run.
        (
            format!("{base}player = {{ join = \"10s\" }}\n"),
            vec!["line 5", "protocols[0].player.join", "before the run's end"],
        ),
        // A congestion control name that cannot be one.
        (
            format!("{base}tcp_congestion = \"cubic; rm -rf\"\n"),
            vec!["line 5", "protocols[0].tcp_congestion"],
        ),
    ] {
        let e = err(&text);
        for n in needles {
            assert!(e.contains(n), "{text}\n  gave: {e}\n  missing: {n}");
        }
    }
}

#[test]
fn a_sweep_is_the_product_of_its_axes() {
    let text = r#"
name = "sweep"
duration = "5s"
[[networks]]
name = "lossy"
first_mile = { uplink = "delay 20ms" }
[[protocols]]
kind = "rtmp"
[sweep]
"networks.lossy.first_mile.uplink" = ["delay 20ms loss 0%", "delay 20ms loss 2%", "delay 20ms loss 5%"]
"media.bitrate" = ["1Mbit/s", "2Mbit/s"]
"#;
    let points = Scenario::sweep_from_toml("s.toml", text, None).unwrap();
    assert_eq!(points.len(), 6);
    let last = &points[5];
    assert_eq!(last.coords["media.bitrate"], "2Mbit/s");
    assert_eq!(
        last.coords["networks.lossy.first_mile.uplink"],
        "delay 20ms loss 5%"
    );
    assert_eq!(last.scenario.encoder.bitrate.bits_per_sec(), 2_000_000);
    assert!(last.scenario.networks[0].first_mile.0.loss.is_some());
    assert!(points[0].scenario.networks[0].first_mile.0.loss.is_some());
    assert_eq!(last.label(), "bitrate=2Mbit/s, uplink=delay 20ms loss 5%");
    // No sweep: one point, no coordinates.
    let one = Scenario::sweep_from_toml("q", QUICKSTART, None).unwrap();
    assert_eq!((one.len(), one[0].coords.len()), (1, 0));
    // A path that does not exist, and a bad value at one point.
    let e = Scenario::sweep_from_toml(
        "s.toml",
        &text.replace("networks.lossy", "networks.nope"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no element named or numbered \"nope\""), "{e}");
    let e = Scenario::sweep_from_toml(
        "s.toml",
        &text.replace("\"2Mbit/s\"]", "\"2 parsecs\"]"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 parsecs") || e.contains("parsecs"), "{e}");
}

#[test]
fn a_named_axis_sets_several_fields_to_each_value() {
    // An RTT axis: one value for both directions' delay.
    let text = r#"
name = "map"
duration = "5s"
[[networks]]
name = "n"
[networks.first_mile.uplink]
delay = { base = "10ms" }
loss = { model = "bernoulli", rate = "0%" }
[networks.first_mile.downlink]
delay = { base = "10ms" }
[[protocols]]
kind = "rtmp"
[sweep]
loss = { set = ["networks.n.first_mile.uplink.loss.rate"], values = ["0%", "5%"] }
rtt_half = { set = ["networks.n.first_mile.uplink.delay.base", "networks.n.first_mile.downlink.delay.base"], values = ["10ms", "150ms"] }
"#;
    let points = Scenario::sweep_from_toml("s.toml", text, None).unwrap();
    assert_eq!(points.len(), 4);
    let last = &points[3];
    assert_eq!(last.label(), "loss=5%, rtt_half=150ms");
    let n = &last.scenario.networks[0];
    assert_eq!(
        n.described[0],
        "delay.base=150ms loss.model=bernoulli loss.rate=5%"
    );
    assert_eq!(n.described[1], "delay.base=150ms");
    // Malformed named axes name the axis.
    for (bad, needle) in [
        ("loss = { values = [\"1%\"] }", "sweep.loss"),
        ("loss = { set = [], values = [\"1%\"] }", "sweep.loss"),
        (
            "loss = { set = [\"media.fps\"], values = [30], step = 1 }",
            "unknown key \"step\"",
        ),
        ("loss = 3", "a non-empty list of values"),
    ] {
        let t = text.replace(
            "loss = { set = [\"networks.n.first_mile.uplink.loss.rate\"], values = [\"0%\", \"5%\"] }",
            bad,
        );
        let e = Scenario::sweep_from_toml("s.toml", &t, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn the_common_protocol_keys_are_the_entry_fields() {
    let entry = r#"
name = "n"
kind = "rtmp"
stream_key = "k"
player = {}
publisher = "glass"
ffmpeg_player = false
tcp_congestion = "cubic"
uri = "rtmp://server/live/k"
player_uri = "rtmp://server/live/k"
abr = {}
capture_starts = "on_connect"
"#;
    let p: ProtocolFile = toml::from_str(entry).unwrap();
    // Every listed key is one of the entry's own fields, not a table…
    assert!(p.tables.is_empty(), "{:?}", p.tables.keys());
    // …and every field the entry serializes is listed.
    let v = toml::Value::try_from(&p).unwrap();
    let mut keys: Vec<&str> = v.as_table().unwrap().keys().map(String::as_str).collect();
    let mut listed = PROTOCOL_COMMON_KEYS.to_vec();
    keys.sort_unstable();
    listed.sort_unstable();
    assert_eq!(keys, listed);
}

#[test]
fn player_groups_get_their_own_last_miles_and_views() {
    let text = r#"
name = "g"
duration = "5s"
[[networks]]
name = "net"
first_mile = { profile = "delay 10ms" }
players = [
  { name = "home" },
  { name = "mobile", last_mile = { profile = "lte" } },
]
[[protocols]]
kind = "rtmp"
"#;
    let s = Scenario::from_toml("g.toml", text, None).unwrap();
    let n = &s.networks[0];
    assert!(n.has_groups());
    assert_eq!(n.group_names(), ["net · home", "net · mobile"]);
    let mobile = n.for_group(1);
    assert_eq!(mobile.described[3], "lte");
    assert_ne!(mobile.last_mile.1, Profile::transparent());
    assert_eq!(n.for_group(0).last_mile.1, Profile::transparent());
    assert_eq!(mobile.first_mile, n.first_mile);
    assert_eq!(n.groups[1].link, "last_mile-mobile");
    // Without `players`: one group on the network's last mile, unlabelled.
    let plain = Scenario::from_toml("p.toml", GOOD, None).unwrap();
    let p = &plain.networks[0];
    assert!(!p.has_groups());
    assert_eq!(p.group_names(), ["lossy"]);
    assert_eq!(p.groups[0].host, "player");
    assert_eq!(p.groups[0].link, "last_mile");
}

#[test]
fn bad_player_groups_are_refused_with_the_field() {
    let with = |players: &str, extra: &str| {
        format!(
            "name = \"g\"\nduration = \"5s\"\n[[networks]]\nname = \"n\"\n{extra}players = [{players}]\n[[protocols]]\nkind = \"rtmp\"\n"
        )
    };
    for (text, needles) in [
        (
            with("{ name = \"a\" }", "last_mile = { profile = \"lte\" }\n"),
            vec!["networks[0].last_mile", "own last_mile"],
        ),
        (
            with("{ name = \"a b\" }", ""),
            vec!["networks[0].players[0].name", "not a host name"],
        ),
        (
            with("{ name = \"a\" }, { name = \"a\" }", ""),
            vec!["networks[0].players[1].name", "used twice"],
        ),
        (
            with("{ name = \"server\" }", ""),
            vec!["networks[0].players[0].name", "another host"],
        ),
        (
            with("{ name = \"a\", last_mile = { profile = \"nope\" } }", ""),
            vec!["networks[0].players[0].last_mile.profile"],
        ),
        (
            with("{ name = \"a\", colour = 1 }", ""),
            vec!["unknown field `colour`"],
        ),
    ] {
        let e = Scenario::from_toml("g.toml", &text, None)
            .expect_err(&text)
            .to_string();
        for n in needles {
            assert!(e.contains(n), "{e} (wanted {n})");
        }
    }
}

#[test]
fn an_ingest_only_protocol_is_played_over_rtmp() {
    let base = "name = \"r\"\nduration = \"5s\"\n[[protocols]]\n";
    let s = Scenario::from_toml("r.toml", &format!("{base}kind = \"rtsp\"\n"), None).unwrap();
    let p = &s.protocols[0];
    assert_eq!(p.publisher_uri.to_string(), "rtsp://server:554/live/glass");
    assert_eq!(p.player_uri.to_string(), "rtmp://server:1935/live/glass");
    let e = Scenario::from_toml(
        "r.toml",
        &format!("{base}kind = \"rtmp\"\nplayer_uri = \"rtsp://server/live/glass\"\n"),
        None,
    )
    .expect_err("an RTSP player")
    .to_string();
    assert!(
        e.contains("protocols[0].player_uri") && e.contains("RTSP is an ingest"),
        "{e}"
    );
}
