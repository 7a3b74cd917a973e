//! Fuzzing on stable Rust: every parser Glass runs on bytes from the
//! network or a file, as a target that takes fuzzer bytes, and a driver
//! that feeds each target N seeded random inputs and catches panics.
//!
//! There is no coverage feedback on stable, so random bytes alone would
//! stop at the first length check. The targets are structure-aware
//! instead: they read their choices from the input through
//! [`arbitrary::Unstructured`] and build valid-looking messages (right
//! magic, lengths that match, sequence numbers near each other, a
//! handshake that succeeds) with fields chosen by the input, then let
//! [`mutate::corrupt`] damage some of them. The same bytes always build the
//! same messages, so a crash is replayed from its saved input.
//!
//! A target is a `fn(&mut Unstructured) -> arbitrary::Result<()>`, the
//! shape `cargo fuzz` targets take, so they can also run under libFuzzer
//! on a nightly toolchain.

pub mod mutate;
pub mod targets;

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

/// One fuzz target: a parser and the code behind it.
pub struct Target {
    pub name: &'static str,
    /// What it feeds and where the bytes come from in Glass.
    pub about: &'static str,
    pub run: fn(&mut Unstructured<'_>) -> arbitrary::Result<()>,
}

impl Target {
    /// Runs the target on one input (a replay).
    pub fn run_once(&self, input: &[u8]) {
        // Running out of input is not a failure: the target stops there.
        let _ = (self.run)(&mut Unstructured::new(input));
    }
}

/// How long and how a target runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Inputs to run.
    pub inputs: u64,
    /// The seed of the input generator (each target mixes in its name).
    pub seed: u64,
    /// Longest input in bytes.
    pub max_len: usize,
    /// Stop at the first panic (default), or go on and count them all
    /// (keeping the first input of each distinct panic).
    pub keep_going: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: 10_000,
            seed: 1,
            max_len: 8192,
            keep_going: false,
        }
    }
}

/// A panic and the input that caused it.
#[derive(Clone, Debug, Serialize)]
pub struct Crash {
    /// 0-based index of the input in the run.
    pub index: u64,
    /// The panic's message and location.
    pub message: String,
    #[serde(skip)]
    pub input: Vec<u8>,
}

/// What a run of one target did.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub target: &'static str,
    pub inputs: u64,
    pub seed: u64,
    /// Inputs that panicked.
    pub panics: u64,
    /// The first input of each distinct panic (by message), at most
    /// [`MAX_DISTINCT`].
    pub crashes: Vec<Crash>,
    pub seconds: f64,
    /// Resident memory after the first 1 % of inputs (the warm-up: lazily
    /// built tables, allocator pools) and at most later, in KiB. Bounded
    /// memory means the second stays near the first however many inputs
    /// run.
    pub rss_warm_kib: u64,
    pub rss_max_kib: u64,
    /// The same for the heap in use (glibc's count of what it handed out
    /// and not had back; 0 where unknown): resident memory can creep while
    /// this stays flat (the allocator keeping freed pages), and not the
    /// other way round.
    pub heap_warm_kib: u64,
    pub heap_max_kib: u64,
}

impl Outcome {
    pub fn inputs_per_sec(&self) -> f64 {
        self.inputs as f64 / self.seconds.max(1e-9)
    }
}

/// Distinct panics kept per run: a panic that fires on every tenth input
/// must not fill memory with copies of it.
pub const MAX_DISTINCT: usize = 100;

thread_local! {
    /// The message of the last panic on this thread (the hook stores it
    /// instead of printing a backtrace per crash).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `target` on `opts.inputs` generated inputs; `progress` is called
/// with the count done every 4096 inputs.
pub fn fuzz(target: &Target, opts: &Options, mut progress: impl FnMut(u64)) -> Outcome {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(opts.seed ^ name_hash(target.name));
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let msg = format!("{info}");
        LAST_PANIC.with(|l| *l.borrow_mut() = Some(msg));
    }));
    let warm_at = (opts.inputs / 100).max(1);
    let (mut rss_warm, mut rss_max) = (0, 0);
    let (mut heap_warm, mut heap_max) = (0, 0);
    let mut crashes: Vec<Crash> = Vec::new();
    let mut panics = 0;
    let mut buf = Vec::with_capacity(opts.max_len);
    let t0 = Instant::now();
    let mut done = 0;
    while done < opts.inputs {
        input(&mut rng, opts.max_len, &mut buf);
        let r = panic::catch_unwind(AssertUnwindSafe(|| target.run_once(&buf)));
        done += 1;
        if r.is_err() {
            let message = LAST_PANIC
                .with(|l| l.borrow_mut().take())
                .unwrap_or_else(|| "a panic without a message".into());
            panics += 1;
            if crashes.len() < MAX_DISTINCT && !crashes.iter().any(|c| c.message == message) {
                crashes.push(Crash {
                    index: done - 1,
                    message,
                    input: buf.clone(),
                });
            }
            if !opts.keep_going {
                break;
            }
        }
        if done == warm_at {
            rss_warm = rss_kib();
            heap_warm = heap_kib();
        }
        if done % 4096 == 0 {
            rss_max = rss_max.max(rss_kib());
            heap_max = heap_max.max(heap_kib());
            progress(done);
        }
    }
    panic::set_hook(previous_hook);
    let (rss_end, heap_end) = (rss_kib(), heap_kib());
    Outcome {
        target: target.name,
        inputs: done,
        seed: opts.seed,
        panics,
        crashes,
        seconds: t0.elapsed().as_secs_f64(),
        rss_warm_kib: if rss_warm == 0 { rss_end } else { rss_warm },
        rss_max_kib: rss_max.max(rss_end),
        heap_warm_kib: if heap_warm == 0 { heap_end } else { heap_warm },
        heap_max_kib: heap_max.max(heap_end),
    }
}

/// One input: mostly short (headers and small messages are where parsers
/// branch), sometimes up to `max_len`.
fn input(rng: &mut Xoshiro256PlusPlus, max_len: usize, buf: &mut Vec<u8>) {
    let cap = match below(rng, 8) {
        0..=2 => 256,
        3..=5 => 2048,
        _ => max_len,
    }
    .min(max_len)
    .max(1);
    let len = below(rng, cap as u64 + 1) as usize;
    buf.resize(len, 0);
    rng.fill_bytes(buf);
}

/// Uniform in `0..n` (Lemire's multiply-shift).
fn below(rng: &mut Xoshiro256PlusPlus, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// FNV-1a of the target's name: targets draw different inputs from one seed.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// This process's resident set in KiB (0 where /proc is not there).
pub fn rss_kib() -> u64 {
    harness::procstat::rss_kib()
}

/// The heap in use in KiB (0 without glibc).
pub fn heap_kib() -> u64 {
    harness::procstat::heap_in_use_kib()
}

/// A duration in the form a summary prints.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target, 10,000 inputs each (CI's figure): no panic. The
    /// 10-million-input runs are `ci/fuzz.sh`'s, not the test suite's.
    #[test]
    fn every_target_survives_ten_thousand_inputs() {
        let opts = Options::default();
        let mut failed = Vec::new();
        for t in targets::ALL {
            let o = fuzz(t, &opts, |_| {});
            if let Some(c) = o.crashes.first() {
                failed.push(format!(
                    "{}: input {} panicked: {}\n  reproduce: glass-fuzz run {} --inputs {} --seed {} \
                     (saves the input under fuzz-crashes/)",
                    t.name,
                    c.index,
                    c.message,
                    t.name,
                    c.index + 1,
                    opts.seed
                ));
            } else {
                assert_eq!(o.inputs, opts.inputs, "{}", t.name);
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    /// The driver catches a panic, keeps its input and goes on with
    /// `keep_going`.
    #[test]
    fn a_panicking_target_is_caught_and_its_input_kept() {
        fn boom(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
            let b: u8 = u.arbitrary()?;
            assert!(b < 128, "byte {b}");
            Ok(())
        }
        let t = Target {
            name: "boom",
            about: "",
            run: boom,
        };
        let o = fuzz(
            &t,
            &Options {
                inputs: 1000,
                keep_going: true,
                ..Options::default()
            },
            |_| {},
        );
        assert_eq!(o.inputs, 1000);
        assert!(o.panics > 300, "{}", o.panics);
        // One distinct message per byte value that panics.
        assert!(o.crashes.len() <= MAX_DISTINCT);
        let c = &o.crashes[0];
        assert!(c.message.contains("byte"), "{}", c.message);
        assert!(c.input[0] >= 128);
        // The saved input replays the panic.
        assert!(panic::catch_unwind(|| t.run_once(&c.input)).is_err());
        // Stops at the first without keep_going.
        let o = fuzz(&t, &Options::default(), |_| {});
        assert_eq!((o.panics, o.crashes.len()), (1, 1));
        assert_eq!(o.inputs, o.crashes[0].index + 1);
    }
}
