//! Wireshark-readable captures of one link direction, before and after the
//! impairment: `DIR/<link>-<direction>-in.pcap` holds every packet that
//! entered the engine, `…-out.pcap` every packet it released, and
//! `…-dropped.pcapng` every packet it dropped, at the drop instant, with a
//! comment naming the cause. Raw IP link type (LINKTYPE_RAW, 101).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

use crate::time::Time;

/// One pcap file (or any writer: the fuzzer's round trip writes to memory).
pub struct Capture<W: Write = BufWriter<File>> {
    writer: PcapWriter<W>,
    /// Wall-clock instant of scenario time zero, for the timestamps.
    epoch: Duration,
}

impl Capture {
    pub fn create(path: &Path, start: SystemTime) -> io::Result<Capture> {
        Capture::new(BufWriter::new(File::create(path)?), start)
    }
}

impl<W: Write> Capture<W> {
    pub fn new(out: W, start: SystemTime) -> io::Result<Capture<W>> {
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(out, header).map_err(io::Error::other)?;
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
        self.into_inner().map(|_| ())
    }

    /// Flushes and hands back the writer.
    pub fn into_inner(self) -> io::Result<W> {
        let mut w = self.writer.into_writer();
        w.flush()?;
        Ok(w)
    }
}

/// Reads a capture back: (timestamp, bytes) of each packet.
pub fn read(path: &Path) -> io::Result<Vec<(Duration, Vec<u8>)>> {
    read_from(File::open(path)?)
}

/// Reads a capture from any reader.
pub fn read_from(r: impl Read) -> io::Result<Vec<(Duration, Vec<u8>)>> {
    let mut reader = pcap_file::pcap::PcapReader::new(r).map_err(io::Error::other)?;
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.map_err(io::Error::other)?;
        out.push((p.timestamp, p.data.into_owned()));
    }
    Ok(out)
}

/// Dropped packets of one direction, at the instant they were dropped, each
/// with a pcapng comment naming the cause (`loss`, `queue full`, `aqm`,
/// `outage`): Wireshark shows it as the packet's comment.
pub struct DropCapture<W: Write = BufWriter<File>> {
    writer: pcap_file::pcapng::PcapNgWriter<W>,
    epoch: Duration,
}

impl DropCapture {
    pub fn create(path: &Path, start: SystemTime) -> io::Result<DropCapture> {
        DropCapture::new(BufWriter::new(File::create(path)?), start)
    }
}

impl<W: Write> DropCapture<W> {
    pub fn new(out: W, start: SystemTime) -> io::Result<DropCapture<W>> {
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        let mut writer = pcap_file::pcapng::PcapNgWriter::new(out).map_err(io::Error::other)?;
        writer
            .write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::RAW,
                snaplen: 0,
                options: vec![],
            })
            .map_err(io::Error::other)?;
        Ok(DropCapture {
            writer,
            epoch: start.duration_since(UNIX_EPOCH).unwrap_or_default(),
        })
    }

    pub fn write(&mut self, at: Time, packet: &[u8], reason: &str) -> io::Result<()> {
        use pcap_file::pcapng::blocks::enhanced_packet::{
            EnhancedPacketBlock, EnhancedPacketOption,
        };
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: self.epoch + at.since_start(),
            original_len: packet.len() as u32,
            data: packet.into(),
            options: vec![EnhancedPacketOption::Comment(
                format!("dropped: {reason}").into(),
            )],
        };
        self.writer
            .write_pcapng_block(block)
            .map(|_| ())
            .map_err(io::Error::other)
    }

    pub fn finish(self) -> io::Result<()> {
        self.into_inner().map(|_| ())
    }

    /// Flushes and hands back the writer.
    pub fn into_inner(self) -> io::Result<W> {
        let mut w = self.writer.into_inner();
        w.flush()?;
        Ok(w)
    }
}

/// Reads a drop capture back: (bytes, comment) of each packet.
pub fn read_drops(path: &Path) -> io::Result<Vec<(Vec<u8>, String)>> {
    read_drops_from(File::open(path)?)
}

/// Reads a drop capture from any reader.
pub fn read_drops_from(r: impl Read) -> io::Result<Vec<(Vec<u8>, String)>> {
    use pcap_file::pcapng::Block;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    let mut reader = pcap_file::pcapng::PcapNgReader::new(r).map_err(io::Error::other)?;
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(p) = block.map_err(io::Error::other)? {
            let comment = p
                .options
                .iter()
                .find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            out.push((p.data.into_owned(), comment));
        }
    }
    Ok(out)
}
