//! The relay's HLS origin for its stream: a packager fed from the hub (a
//! tap, not a player) on its own task, and what the HTTP server answers
//! from it.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::packager::{Packager, PackagerConfig};
use crate::relay::{Hub, Poisoned};

/// One stream's HLS segments and playlist, shared with the server.
#[derive(Debug)]
pub struct Origin {
    packager: Mutex<Packager>,
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
        if let Ok(mut p) = self.packager.lock() {
            p.push(m, SystemTime::now());
        }
    }

    /// The live media playlist, once a segment is done.
    pub fn playlist(&self) -> Option<String> {
        self.packager.lock().ok()?.playlist()
    }

    /// Segment `seq`'s bytes, while it is kept.
    pub fn segment(&self, seq: u64) -> Option<Bytes> {
        Some(self.packager.lock().ok()?.segment(seq)?.bytes.clone())
    }
}
