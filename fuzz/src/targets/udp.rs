//! Glass's UDP protocol: datagrams off the wire into a connection (server
//! or client, publisher or player), through the receiver's reassembly,
//! FEC recovery, RED and reordering, and the sender's NACK and feedback
//! handling.

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use netem::Time;
use udpmedia::wire::{self, Fec, FecScheme, RedBlock, Role, write};
use udpmedia::{Admission, Config, Connection, FecConfig, Gate, OutFrame};

use crate::mutate::{corrupt, small_bytes};

const TOKEN: &str = "fuzz-token";
const KEY: &str = "live/fuzz";

pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
    // The raw parsers on their own first.
    let raw = small_bytes(u, 64)?;
    if let Ok(p) = wire::parse(raw)
        && let wire::Body::Data(d) = p.body
        && let Ok(m) = wire::media(d.protected)
    {
        let _ = wire::red(m.payload);
    }

    let cfg = config(u)?;
    let role = if u.arbitrary()? {
        Role::Publish
    } else {
        Role::Play
    };
    let session = 7;
    let mut now = Time::ZERO;
    let nonce: [u8; 16] = u.arbitrary()?;
    let mut conn = if u.arbitrary()? {
        // The server: hellos through the token's challenge first.
        let Some(admitted) = gate(u, &nonce, role, now)? else {
            return Ok(());
        };
        let hello = wire::Hello {
            client_nonce: &nonce,
            proof: &[],
            role,
            latency_ms: u.int_in_range(0..=2000)?,
            key: KEY.as_bytes(),
        };
        match Connection::accept(cfg, &hello, admitted, session, now) {
            Ok(c) => c,
            Err(_) => return Ok(()),
        }
    } else {
        let Ok(mut c) = Connection::connect(cfg, role, KEY, nonce, now) else {
            return Ok(());
        };
        c.handle_timeout(now);
        drain(&mut c, now);
        if u.ratio(3, 4)? {
            let mut d = Vec::new();
            let server_nonce: [u8; 16] = u.arbitrary()?;
            let echoed = if u.ratio(7, 8)? {
                nonce
            } else {
                u.arbitrary()?
            };
            write::challenge(&mut d, &server_nonce, &echoed);
            corrupt(&mut d, u)?;
            c.handle_datagram(now, &d);
            drain(&mut c, now);
        }
        if u.ratio(7, 8)? {
            let mut d = Vec::new();
            write::accept(&mut d, session, u.int_in_range(0..=2000)?);
            c.handle_datagram(now, &d);
        }
        c
    };
    let mut seq: u32 = u.arbitrary()?;
    let mut frame: u32 = u.int_in_range(0..=3)?;
    for _ in 0..u.int_in_range(1..=80u32)? {
        if u.is_empty() {
            break;
        }
        if u.ratio(1, 4)? {
            // The application sends a frame (a sending half only).
            let data = small_bytes(u, 3000)?;
            let _ = conn.send_frame(
                now,
                OutFrame {
                    video: u.arbitrary()?,
                    key: u.arbitrary()?,
                    timestamp: u.arbitrary()?,
                    data,
                },
            );
        }
        let mut d = Vec::new();
        datagram(u, &mut d, session, &mut seq, &mut frame)?;
        corrupt(&mut d, u)?;
        conn.handle_datagram(now, &d);
        now = now + Duration::from_micros(u.int_in_range(0..=40_000)?);
        conn.handle_timeout(now);
        drain(&mut conn, now);
    }
    // Long silence: timeouts, keepalives and the end of the session.
    now = now + Duration::from_secs(u.int_in_range(0..=30)?);
    conn.handle_timeout(now);
    drain(&mut conn, now);
    let _ = conn.stats();
    Ok(())
}

/// Settings chosen by the input: every recovery mechanism on or off.
fn config(u: &mut Unstructured<'_>) -> Result<Config> {
    let mut cfg = Config {
        token: TOKEN.into(),
        nack: u.arbitrary()?,
        red: u.int_in_range(0..=3)?,
        ordered: u.arbitrary()?,
        reorder_packets: u.int_in_range(0..=8)?,
        ..Config::default()
    };
    cfg.fec = match u.int_in_range(0..=2u8)? {
        0 => FecConfig::None,
        1 => FecConfig::Xor {
            cols: u.int_in_range(1..=10)?,
            rows: u.int_in_range(1..=10)?,
        },
        _ => FecConfig::Rs {
            k: u.int_in_range(1..=32)?,
            m: u.int_in_range(1..=8)?,
            adaptive: u.arbitrary()?,
        },
    };
    if u.arbitrary()? {
        cfg.cc = udpmedia::CcMode::Gcc;
    }
    Ok(cfg)
}

/// One well-formed datagram of a type the input picks, with sequence
/// numbers and frames near the ones before (so reassembly and recovery
/// have something to work on).
fn datagram(
    u: &mut Unstructured<'_>,
    d: &mut Vec<u8>,
    session: u32,
    seq: &mut u32,
    frame: &mut u32,
) -> Result<()> {
    let session = if u.ratio(15, 16)? {
        session
    } else {
        u.arbitrary()?
    };
    match u.int_in_range(0..=9u8)? {
        0..=3 => {
            *seq = seq.wrapping_add(u.int_in_range(0..=3)?);
            if u.ratio(1, 3)? {
                *frame = frame.wrapping_add(1);
            }
            let frags = u.int_in_range(1..=4)?;
            let frag = u.int_in_range(0..=frags)?;
            let mut flags = 0;
            for (bit, p) in [
                (wire::flags::VIDEO, 2),
                (wire::flags::KEY, 4),
                (wire::flags::RED, 4),
            ] {
                if u.ratio(1, p)? {
                    flags |= bit;
                }
            }
            let mut payload = small_bytes(u, 1200)?.to_vec();
            if flags & wire::flags::RED != 0 {
                let primary = payload.clone();
                payload.clear();
                let blocks = [RedBlock {
                    frame: frame.wrapping_sub(1),
                    timestamp: u.arbitrary()?,
                    data: small_bytes(u, 200)?,
                }];
                write::red(&mut payload, &primary, &blocks[..u.int_in_range(0..=1)?]);
            }
            let mut protected = Vec::new();
            write::protected(
                &mut protected,
                *frame,
                frag,
                frags,
                flags,
                u.arbitrary()?,
                &payload,
            );
            let xflags = if u.ratio(1, 4)? {
                wire::XFLAG_RETRANSMIT
            } else {
                0
            };
            write::data(d, session, *seq, u.arbitrary()?, xflags, &protected);
        }
        4 | 5 => {
            let scheme = *u.choose(&[
                FecScheme::XorRow,
                FecScheme::XorColumn,
                FecScheme::ReedSolomon,
            ])?;
            let count = u.int_in_range(1..=12)?;
            let total = u.int_in_range(1..=4)?;
            let payload = small_bytes(u, 1300)?;
            // Mostly the XOR of lengths a sender would put there.
            let len_xor = if u.ratio(3, 4)? {
                payload.len() as u16 ^ u.int_in_range(0..=64)?
            } else {
                u.arbitrary()?
            };
            write::fec(
                d,
                session,
                &Fec {
                    scheme,
                    base: seq.wrapping_sub(u.int_in_range(0..=16)?),
                    count,
                    stride: u.int_in_range(1..=4)?,
                    index: u.int_in_range(0..=total)?,
                    total,
                    len_xor,
                    payload,
                },
            );
        }
        6 => {
            let n = u.int_in_range(0..=8usize)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(wire::NackEntry {
                    pid: seq.wrapping_sub(u.int_in_range(0..=64)?),
                    blp: u.arbitrary()?,
                });
            }
            write::nack(d, session, &entries);
        }
        7 => {
            let n = u.int_in_range(0..=40usize)?;
            let mut arrivals = Vec::with_capacity(n);
            for _ in 0..n {
                arrivals.push(if u.ratio(1, 5)? {
                    None
                } else {
                    Some(u.int_in_range(0..=200_000)?)
                });
            }
            let base = seq.wrapping_sub(u.int_in_range(0..=64)?);
            write::feedback(d, session, base, u.arbitrary()?, &arrivals);
        }
        8 => write::keepalive(
            d,
            session,
            u.arbitrary()?,
            seq.wrapping_add(u.int_in_range(0..=8)?),
        ),
        _ => match u.int_in_range(0..=3u8)? {
            0 => write::close(d, session),
            1 => write::accept(d, session, u.arbitrary()?),
            2 => write::reject(d, u.arbitrary()?, "fuzz"),
            _ => {
                let nonce: [u8; 16] = u.arbitrary()?;
                write::hello(
                    d,
                    &nonce,
                    small_bytes(u, 20)?,
                    Role::Play,
                    u.arbitrary()?,
                    KEY.as_bytes(),
                )
            }
        },
    }
    Ok(())
}

/// Hellos from clients (right, wrong, replayed proofs) through the
/// server's gate; then the session's own hello, answered with the right
/// proof unless the input says otherwise. `None`: not admitted.
fn gate(
    u: &mut Unstructured<'_>,
    nonce: &[u8; 16],
    role: Role,
    now: Time,
) -> Result<Option<udpmedia::Admitted>> {
    let mut gate = Gate::new(TOKEN, u.arbitrary()?);
    let mut now = now;
    for _ in 0..u.int_in_range(0..=6u8)? {
        let n: [u8; 16] = if u.arbitrary()? {
            *nonce
        } else {
            u.arbitrary()?
        };
        let mut d = Vec::new();
        write::hello(
            &mut d,
            &n,
            small_bytes(u, 20)?,
            role,
            u.arbitrary()?,
            KEY.as_bytes(),
        );
        corrupt(&mut d, u)?;
        if let Ok(wire::Packet {
            body: wire::Body::Hello(h),
            ..
        }) = wire::parse(&d)
        {
            let _ = gate.check(&h, now);
        }
        now = now + Duration::from_secs(u.int_in_range(0..=12)?);
    }
    let first = wire::Hello {
        client_nonce: nonce,
        proof: &[],
        role,
        latency_ms: 0,
        key: KEY.as_bytes(),
    };
    let Admission::Challenge(c) = gate.check(&first, now) else {
        return Ok(None);
    };
    let Ok(wire::Packet {
        body: wire::Body::Challenge { server_nonce, .. },
        ..
    }) = wire::parse(&c)
    else {
        return Ok(None);
    };
    let token = if u.ratio(15, 16)? { TOKEN } else { "guess" };
    let proof = udpmedia::auth::proof(token, server_nonce, nonce, role, KEY.as_bytes());
    let hello = wire::Hello {
        proof: &proof,
        ..first
    };
    Ok(match gate.check(&hello, now) {
        Admission::Admit(a) => Some(a),
        _ => None,
    })
}

/// Takes everything the connection has to say (bounded: a connection that
/// never stops sending is a bug the fuzzer should see as a hang, not as
/// memory growth).
fn drain(conn: &mut Connection, now: Time) {
    for _ in 0..10_000 {
        if conn.poll_transmit(now).is_none() {
            break;
        }
    }
    while conn.poll_frame().is_some() {}
    while conn.poll_event().is_some() {}
}
