//! The relay's HLS origin for its stream: a packager fed from the hub (a
//! tap, not a player) on its own task, and what the HTTP server answers
//! from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::packager::{Packager, PackagerConfig};
use crate::relay::{Hub, Poisoned};

/// One stream's HLS segments and playlist, shared with the server.
#[derive(Debug)]
pub struct Origin {
    packager: Mutex<Packager>,
    /// Segments finished so far: requests that wait for one watch it.
    finished: watch::Sender<u64>,
}

impl Origin {
    /// Packages `key`'s stream from now until `stop` changes.
    pub fn start(
        hub: &Hub,
        key: &str,
        cfg: PackagerConfig,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(Arc<Origin>, JoinHandle<()>), Poisoned> {
        let sub = hub.tap(key)?;
        let origin = Arc::new(Origin {
            packager: Mutex::new(Packager::new(cfg)),
            finished: watch::Sender::new(0),
        });
        let o = origin.clone();
        let task = tokio::spawn(async move {
            let mut rx = sub.rx;
            for m in &sub.catch_up {
                o.push(m);
            }
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => o.push(&m),
                        None => break,
                    },
                    _ = stop.changed() => break,
                }
            }
        });
        Ok((origin, task))
    }

    fn push(&self, m: &crate::relay::Media) {
        let finished = self
            .packager
            .lock()
            .is_ok_and(|mut p| p.push(m, SystemTime::now()));
        if finished {
            self.finished.send_modify(|n| *n += 1);
        }
    }

    /// The live media playlist, once a segment is done.
    pub fn playlist(&self) -> Option<String> {
        self.packager.lock().ok()?.playlist()
    }

    /// The playlist, waiting up to `wait` for the stream's first segment:
    /// a player that asks before the stream has begun is answered when it
    /// has (ffmpeg's HLS reader gives up on a first 404; hls.js retries).
    pub async fn first_playlist(&self, wait: Duration) -> Option<String> {
        let mut rx = self.finished.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|&n| n > 0)).await;
        self.playlist()
    }

    /// Segment `seq`'s bytes, while it is kept.
    pub fn segment(&self, seq: u64) -> Option<Bytes> {
        Some(self.packager.lock().ok()?.segment(seq)?.bytes.clone())
    }
}
