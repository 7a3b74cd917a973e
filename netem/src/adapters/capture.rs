//! Wireshark-readable captures of one link direction, before and after the
//! impairment: `DIR/<link>-<direction>-in.pcap` holds every packet that
//! entered the engine, `…-out.pcap` every packet it released, each at its own
//! instant. A packet in `in` and not in `out` was dropped (the engine's
//! counters say by what). Raw IP link type (LINKTYPE_RAW, 101).

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

use crate::time::Time;

/// One pcap file.
pub struct Capture {
    writer: PcapWriter<BufWriter<File>>,
    /// Wall-clock instant of scenario time zero, for the timestamps.
    epoch: Duration,
}

impl Capture {
    pub fn create(path: &Path, start: SystemTime) -> io::Result<Capture> {
        let file = BufWriter::new(File::create(path)?);
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(file, header).map_err(io::Error::other)?;
        Ok(Capture {
            writer,
            epoch: start.duration_since(UNIX_EPOCH).unwrap_or_default(),
        })
    }

    pub fn write(&mut self, at: Time, packet: &[u8]) -> io::Result<()> {
        let ts = self.epoch + at.since_start();
        self.writer
            .write_packet(&PcapPacket::new(ts, packet.len() as u32, packet))
            .map(|_| ())
            .map_err(io::Error::other)
    }

    /// Flushes and closes the file, reporting any write error.
    pub fn finish(self) -> io::Result<()> {
        use std::io::Write;
        self.writer.into_writer().flush()
    }
}

/// Reads a capture back: (timestamp, bytes) of each packet.
pub fn read(path: &Path) -> io::Result<Vec<(Duration, Vec<u8>)>> {
    let mut reader =
        pcap_file::pcap::PcapReader::new(File::open(path)?).map_err(io::Error::other)?;
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.map_err(io::Error::other)?;
        out.push((p.timestamp, p.data.into_owned()));
    }
    Ok(out)
}
