//! Who may open a session: a challenge–response on the shared token, so
//! the token never crosses the network and a captured handshake cannot be
//! replayed.
//!
//! ```text
//! client → hello      client_nonce, no proof
//! server → challenge  server_nonce, client_nonce      (a fresh nonce each time)
//! client → hello      client_nonce, proof = HMAC-SHA256(token, label | server_nonce | client_nonce | role | key)[..16]
//! server → accept     (or reject "wrong token")
//! ```
//!
//! The server remembers each challenge it issued (by client nonce, a
//! bounded table, for [`CHALLENGE_LIFETIME`]) and forgets it when a proof
//! uses it, so a proof is good once: replaying a captured hello with its
//! proof gets a new challenge that only the token's holder can answer. A
//! server without a token admits every hello without a challenge.
//!
//! Sans-IO like the rest of the crate: nonces come from a keyed PRF over
//! a counter, keyed by a seed the I/O edge draws from the OS (tests use a
//! fixed one).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hmac::{Hmac, Mac};
use netem::Time;
use sha2::Sha256;

use crate::conn::Refusal;
use crate::wire::{self, Hello, Role, write};

pub const NONCE_LEN: usize = 16;
pub const PROOF_LEN: usize = 16;
/// How long a challenge can be answered.
pub const CHALLENGE_LIFETIME: Duration = Duration::from_secs(10);
/// Challenges remembered at most (the oldest goes first): a flood of
/// hellos costs the server a bounded table, not memory per packet.
pub const MAX_CHALLENGES: usize = 4096;

const LABEL: &[u8] = b"glass udpmedia hello v1";

type HmacSha256 = Hmac<Sha256>;

/// The proof a client sends for `challenge`.
pub fn proof(
    token: &str,
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    role: Role,
    key: &[u8],
) -> [u8; PROOF_LEN] {
    let full = mac(token, server_nonce, client_nonce, role, key)
        .finalize()
        .into_bytes();
    let mut out = [0u8; PROOF_LEN];
    out.copy_from_slice(&full[..PROOF_LEN]);
    out
}

fn mac(
    token: &str,
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    role: Role,
    key: &[u8],
) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    m.update(LABEL);
    m.update(server_nonce);
    m.update(client_nonce);
    m.update(&[wire::role_byte(role)]);
    m.update(&[key.len().min(255) as u8]);
    m.update(key);
    m
}

/// Proof that a hello passed the gate: [`crate::Connection::accept`] takes
/// one, so a server cannot open a session without asking the gate.
#[derive(Debug)]
pub struct Admitted(());

/// What the server does with a hello.
#[derive(Debug)]
pub enum Admission {
    /// Send this challenge datagram back.
    Challenge(Vec<u8>),
    /// Open the session.
    Admit(Admitted),
    /// Send the refusal back.
    Refuse(Refusal),
}

/// The server's side: issues challenges and checks proofs.
pub struct Gate {
    token: String,
    prf: HmacSha256,
    counter: u64,
    /// client nonce → (server nonce, when issued).
    issued: HashMap<[u8; NONCE_LEN], ([u8; NONCE_LEN], Time)>,
    order: VecDeque<[u8; NONCE_LEN]>,
    /// Hellos whose proof was wrong.
    pub refused: u64,
}

impl Gate {
    /// A gate for `token` (empty: every hello is admitted); `seed` keys the
    /// nonce generator (draw it from the OS).
    pub fn new(token: &str, seed: [u8; 32]) -> Gate {
        Gate {
            token: token.to_string(),
            prf: HmacSha256::new_from_slice(&seed).expect("HMAC takes any key length"),
            counter: 0,
            issued: HashMap::new(),
            order: VecDeque::new(),
            refused: 0,
        }
    }

    /// Challenges remembered now.
    pub fn pending(&self) -> usize {
        self.issued.len()
    }

    pub fn check(&mut self, hello: &Hello<'_>, now: Time) -> Admission {
        if self.token.is_empty() {
            return Admission::Admit(Admitted(()));
        }
        self.expire(now);
        if hello.proof.is_empty() {
            return self.challenge(hello.client_nonce, now);
        }
        let Some((server_nonce, _)) = self.issued.remove(hello.client_nonce) else {
            // Expired, or used already (a replay): ask again.
            return self.challenge(hello.client_nonce, now);
        };
        let m = mac(
            &self.token,
            &server_nonce,
            hello.client_nonce,
            hello.role,
            hello.key,
        );
        if hello.proof.len() == PROOF_LEN && m.verify_truncated_left(hello.proof).is_ok() {
            Admission::Admit(Admitted(()))
        } else {
            self.refused += 1;
            Admission::Refuse(Refusal {
                code: wire::REJECT_TOKEN,
                reason: "wrong token".into(),
            })
        }
    }

    /// The challenge for `client_nonce`: the one outstanding if there is
    /// one (a client repeats its hello every 200 ms until an answer comes:
    /// on a link with a longer round trip a new nonce per hello would make
    /// its proof of the first one arrive stale, and be refused), else a
    /// fresh one.
    fn challenge(&mut self, client_nonce: &[u8; NONCE_LEN], now: Time) -> Admission {
        if let Some((server_nonce, at)) = self.issued.get(client_nonce)
            && now.saturating_since(*at) < CHALLENGE_LIFETIME
        {
            let mut d = Vec::new();
            write::challenge(&mut d, server_nonce, client_nonce);
            return Admission::Challenge(d);
        }
        self.counter += 1;
        let mut prf = self.prf.clone();
        prf.update(&self.counter.to_le_bytes());
        let mut server_nonce = [0u8; NONCE_LEN];
        server_nonce.copy_from_slice(&prf.finalize().into_bytes()[..NONCE_LEN]);
        if self
            .issued
            .insert(*client_nonce, (server_nonce, now))
            .is_none()
        {
            self.order.push_back(*client_nonce);
        }
        while self.issued.len() > MAX_CHALLENGES {
            match self.order.pop_front() {
                Some(old) => {
                    self.issued.remove(&old);
                }
                None => break,
            }
        }
        let mut d = Vec::new();
        write::challenge(&mut d, &server_nonce, client_nonce);
        Admission::Challenge(d)
    }

    /// Forgets challenges older than their lifetime (and entries of the
    /// order queue whose challenge was answered).
    fn expire(&mut self, now: Time) {
        while let Some(old) = self.order.front() {
            match self.issued.get(old) {
                Some((_, at)) if now.saturating_since(*at) < CHALLENGE_LIFETIME => break,
                Some(_) => {
                    self.issued.remove(old);
                    self.order.pop_front();
                }
                None => {
                    self.order.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Body, parse};

    const KEY: &[u8] = b"live/glass";

    fn hello<'a>(nonce: &'a [u8; 16], proof: &'a [u8]) -> Hello<'a> {
        Hello {
            client_nonce: nonce,
            proof,
            role: Role::Publish,
            latency_ms: 120,
            key: KEY,
        }
    }

    /// The server nonce of a challenge datagram.
    fn challenged(a: Admission, client: &[u8; 16]) -> [u8; 16] {
        let Admission::Challenge(d) = a else {
            panic!("expected a challenge, got {a:?}")
        };
        let Body::Challenge {
            server_nonce,
            client_nonce,
        } = parse(&d).unwrap().body
        else {
            panic!("not a challenge datagram")
        };
        assert_eq!(client_nonce, client);
        *server_nonce
    }

    #[test]
    fn a_proof_admits_once_and_a_replay_is_challenged_again() {
        let mut gate = Gate::new("s3cret", [9; 32]);
        let n = [1u8; 16];
        let sn = challenged(gate.check(&hello(&n, b""), Time::ZERO), &n);
        let p = proof("s3cret", &sn, &n, Role::Publish, KEY);
        assert!(matches!(
            gate.check(&hello(&n, &p), Time::ZERO),
            Admission::Admit(_)
        ));
        // The same hello captured off the wire and sent again: a new
        // challenge with a different nonce, which the old proof does not answer.
        let sn2 = challenged(gate.check(&hello(&n, &p), Time::ZERO), &n);
        assert_ne!(sn, sn2);
        assert!(matches!(
            gate.check(&hello(&n, &p), Time::ZERO),
            Admission::Refuse(_)
        ));
        assert_eq!(gate.refused, 1);
    }

    #[test]
    fn a_repeated_hello_gets_the_same_challenge_so_a_slow_link_still_connects() {
        let mut gate = Gate::new("s3cret", [9; 32]);
        let n = [5u8; 16];
        // Hellos at 0 and 200 ms cross the first challenge on a long link.
        let sn = challenged(gate.check(&hello(&n, b""), Time::ZERO), &n);
        let again = challenged(gate.check(&hello(&n, b""), Time::from_millis(200)), &n);
        assert_eq!(sn, again);
        let p = proof("s3cret", &sn, &n, Role::Publish, KEY);
        assert!(matches!(
            gate.check(&hello(&n, &p), Time::from_millis(300)),
            Admission::Admit(_)
        ));
    }

    #[test]
    fn a_wrong_token_or_a_changed_key_is_refused() {
        let mut gate = Gate::new("s3cret", [9; 32]);
        let n = [2u8; 16];
        let sn = challenged(gate.check(&hello(&n, b""), Time::ZERO), &n);
        let p = proof("guess", &sn, &n, Role::Publish, KEY);
        let Admission::Refuse(r) = gate.check(&hello(&n, &p), Time::ZERO) else {
            panic!("admitted a wrong token")
        };
        assert_eq!(
            (r.code, r.reason.as_str()),
            (wire::REJECT_TOKEN, "wrong token")
        );
        // The proof covers role and stream key: a man in the middle cannot
        // turn a player's proof into a publisher's, or change the key.
        let sn = challenged(gate.check(&hello(&n, b""), Time::ZERO), &n);
        let p = proof("s3cret", &sn, &n, Role::Play, KEY);
        assert!(matches!(
            gate.check(&hello(&n, &p), Time::ZERO),
            Admission::Refuse(_)
        ));
        let sn = challenged(gate.check(&hello(&n, b""), Time::ZERO), &n);
        let p = proof("s3cret", &sn, &n, Role::Publish, b"live/other");
        assert!(matches!(
            gate.check(&hello(&n, &p), Time::ZERO),
            Admission::Refuse(_)
        ));
    }

    #[test]
    fn challenges_expire_and_the_table_stays_bounded() {
        let mut gate = Gate::new("s3cret", [9; 32]);
        let n = [3u8; 16];
        let sn = challenged(gate.check(&hello(&n, b""), Time::ZERO), &n);
        let p = proof("s3cret", &sn, &n, Role::Publish, KEY);
        let late = Time::ZERO + CHALLENGE_LIFETIME + Duration::from_millis(1);
        // Too late: asked again, not admitted.
        challenged(gate.check(&hello(&n, &p), late), &n);
        // A flood of first hellos, each with its own nonce.
        for i in 0..3 * MAX_CHALLENGES as u64 {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&i.to_le_bytes());
            let _ = gate.check(&hello(&n, b""), late);
        }
        assert!(gate.pending() <= MAX_CHALLENGES, "{}", gate.pending());
    }

    #[test]
    fn no_token_admits_without_a_challenge() {
        let mut gate = Gate::new("", [0; 32]);
        assert!(matches!(
            gate.check(&hello(&[4; 16], b""), Time::ZERO),
            Admission::Admit(_)
        ));
    }
}
