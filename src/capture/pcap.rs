//! A recorded session as a pcapng file Wireshark and tshark can read.
//!
//! Nothing is sniffed (that would need root): the file is synthesized from
//! the session's recorded bytes. The payload and its times are real; the TCP
//! around it (handshake, segmentation, acknowledgements, teardown) is made
//! up, but made up correctly — sequence and acknowledgement numbers follow
//! the bytes, and every IPv4 and TCP checksum is right — so "Follow TCP
//! stream" and the SMTP, POP3 and IMF dissectors work on it, and checksum
//! validation finds nothing to flag.
//!
//! The packets are raw IP (LINKTYPE_RAW): there is no link layer to invent,
//! and Wireshark reads IPv4 and IPv6 from the version nibble.

use super::{Capture, Chunk};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

/// The most payload one synthesized segment carries. Below any Ethernet or
/// loopback MTU once the IPv6 and TCP headers are added, so the file looks
/// like something a real path could have carried.
pub const MSS: usize = 1400;

/// The snapshot length the interface declares: every packet is whole.
const SNAPLEN: u32 = 65535;

/// The gap put between packets that would otherwise share a timestamp, so
/// the packet list keeps its order when sorted by time.
const TICK: Duration = Duration::from_micros(1);

/// The receive window each side advertises. The receiver acknowledges every
/// second segment (as RFC 1122's delayed ACK does), so at most two segments
/// are ever in flight and this window never fills.
const WINDOW: u16 = 65535;

/// Initial sequence numbers. Fixed, so one capture always gives the same
/// file; Wireshark shows sequence numbers relative to them anyway.
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0x6000_0000;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// What every file says about itself: the TCP in it was made up.
const SYNTHESIZED: &str = "Synthesized by mailnet from a recorded session (after TLS is \
     taken off): the payload and its times are as recorded; the TCP handshake, \
     segmentation, acknowledgements and teardown are made up.";

/// Said on the section and on the last packet when the recording was cut.
const CUT: &str = "The recording was cut: the session passed mailnet's recording \
     limit, and the bytes after that point are not in this file.";

/// The session as a pcapng file: a Section Header Block, one Interface
/// Description Block (raw IP, nanosecond timestamps), then one Enhanced
/// Packet Block per synthesized packet: the three-way handshake at
/// `opened`, each chunk as segments of at most [`MSS`] bytes at its time
/// (acknowledged by the other side), and a FIN exchange at `closed` (or at
/// the last chunk's time when the session is still open). A POP3 server's
/// `+OK` line answering RETR or TOP is a segment of its own, so Wireshark
/// dissects the message after it as IMF. Times never go backwards (each
/// packet is at least a microsecond after the one before); a cut recording
/// says so in a comment on the section and on the last packet.
///
/// Client and server of different address families are both written as
/// IPv6 (the IPv4 one as `::ffff:a.b.c.d`); IPv4-mapped IPv6 addresses on
/// both sides (a dual-stack listener) are written as IPv4.
pub fn to_pcapng(capture: &Capture) -> Vec<u8> {
    let mut tcp = Synth::new(capture);
    let opened = since_epoch(capture.opened);

    // The handshake, announcing the MSS the segments below keep to.
    let mss = mss_option();
    tcp.send(Side::Client, opened, SYN, &mss, &[]);
    tcp.send(Side::Server, opened, SYN | ACK, &mss, &[]);
    tcp.send(Side::Client, opened, ACK, &[], &[]);

    let mut last = opened;
    let mut asked: Option<&Chunk> = None;
    for chunk in &capture.chunks {
        let at = since_epoch(chunk.at);
        last = last.max(at);
        let (from, to) = if chunk.from_client {
            (Side::Client, Side::Server)
        } else {
            (Side::Server, Side::Client)
        };
        let segments = segments(chunk, asked);
        for (n, segment) in segments.iter().enumerate() {
            tcp.send(from, at, PSH | ACK, &[], segment);
            if n % 2 == 1 || n + 1 == segments.len() {
                tcp.send(to, at, ACK, &[], &[]);
            }
        }
        if chunk.from_client {
            asked = Some(chunk);
        }
    }

    // The server closes first, as SMTP and POP3 servers do after QUIT.
    let closed = capture.closed.map(since_epoch).unwrap_or(last);
    tcp.send(Side::Server, closed, FIN | ACK, &[], &[]);
    tcp.send(Side::Client, closed, FIN | ACK, &[], &[]);
    tcp.send(Side::Server, closed, ACK, &[], &[]);

    write(capture, tcp.packets)
}

/// How a chunk is cut into segments: every [`MSS`] bytes, and in one case
/// at a line. Wireshark's POP dissector hands a RETR or TOP answer's message
/// to the IMF dissector only from the segment after the one holding the
/// `+OK` line (a segment starting with `+OK` is never message data), so a
/// server chunk answering a lone RETR or TOP has its status line sent on its
/// own, as a server writing the line before the message would. `asked` is
/// the client's latest chunk.
fn segments<'a>(chunk: &'a Chunk, asked: Option<&Chunk>) -> Vec<&'a [u8]> {
    let bytes = &chunk.bytes[..];
    let retrieves = |c: &Chunk| {
        let line = c.bytes.strip_suffix(b"\r\n").unwrap_or(&c.bytes);
        let word = line.split(|b| *b == b' ').next().unwrap_or_default();
        !line.contains(&b'\n')
            && (word.eq_ignore_ascii_case(b"RETR") || word.eq_ignore_ascii_case(b"TOP"))
    };
    let status_end = match asked {
        Some(asked) if !chunk.from_client && bytes.starts_with(b"+OK ") && retrieves(asked) => {
            bytes.iter().position(|b| *b == b'\n').map(|at| at + 1)
        }
        _ => None,
    };
    let (first, rest) = bytes.split_at(status_end.unwrap_or(0));
    [first, rest]
        .into_iter()
        .filter(|part| !part.is_empty())
        .flat_map(|part| part.chunks(MSS))
        .collect()
}

/// Serializes the blocks. Writing into a `Vec` cannot fail.
fn write(capture: &Capture, mut packets: Vec<EnhancedPacketBlock<'static>>) -> Vec<u8> {
    let mut comments = vec![SectionHeaderOption::Comment(Cow::Borrowed(SYNTHESIZED))];
    if capture.truncated {
        comments.push(SectionHeaderOption::Comment(Cow::Borrowed(CUT)));
        if let Some(last) = packets.last_mut() {
            last.options
                .push(EnhancedPacketOption::Comment(Cow::Borrowed(CUT)));
        }
    }
    comments.push(SectionHeaderOption::UserApplication(Cow::Borrowed(
        concat!("mailnet ", env!("CARGO_PKG_VERSION")),
    )));
    // Little-endian whatever the host, so one capture is one file everywhere.
    let section = SectionHeaderBlock {
        endianness: Endianness::Little,
        options: comments,
        ..Default::default()
    };
    let interface = InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen: SNAPLEN,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed("mailnet")),
            InterfaceDescriptionOption::IfDescription(Cow::Borrowed(
                "a mailnet session, synthesized from its recorded bytes",
            )),
            // pcap-file 2 writes timestamps in nanoseconds; without this a
            // reader would take them for the default microseconds.
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    };
    let written = (|| {
        let mut writer = PcapNgWriter::with_section_header(Vec::new(), section)?;
        writer.write_pcapng_block(interface)?;
        for packet in packets {
            writer.write_pcapng_block(packet)?;
        }
        Ok::<_, pcap_file::PcapError>(writer.into_inner())
    })();
    written.expect("writing pcapng into memory cannot fail")
}

/// A time as pcapng counts it. Times before 1970 (a broken clock) become 0.
fn since_epoch(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The TCP MSS option (kind 2, length 4).
fn mss_option() -> [u8; 4] {
    let [hi, lo] = (MSS as u16).to_be_bytes();
    [2, 4, hi, lo]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// The two endpoints as they will be written.
enum Addresses {
    V4([Ipv4Addr; 2]),
    V6([Ipv6Addr; 2]),
}

impl Addresses {
    fn of(client: IpAddr, server: IpAddr) -> Addresses {
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; that
        // connection was IPv4 on the wire.
        match (client.to_canonical(), server.to_canonical()) {
            (IpAddr::V4(c), IpAddr::V4(s)) => Addresses::V4([c, s]),
            (c, s) => Addresses::V6([v6(c), v6(s)]),
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// Both ends of the made-up TCP connection, and the packets so far.
struct Synth {
    addresses: Addresses,
    ports: [u16; 2],
    /// The next sequence number each side sends (which the other acknowledges).
    seq: [u32; 2],
    /// The next IPv4 identification each side uses.
    ip_id: [u16; 2],
    packets: Vec<EnhancedPacketBlock<'static>>,
    last: Option<Duration>,
}

impl Synth {
    fn new(capture: &Capture) -> Synth {
        Synth {
            addresses: Addresses::of(capture.client.ip(), capture.server.ip()),
            ports: [capture.client.port(), capture.server.port()],
            seq: [CLIENT_ISN, SERVER_ISN],
            // Different starting points, so the two directions are easy to
            // tell apart by id as well.
            ip_id: [0x1000, 0x8000],
            packets: Vec::new(),
            last: None,
        }
    }

    /// Appends one packet from `from`, acknowledging everything the other
    /// side has sent when `flags` has ACK.
    fn send(&mut self, from: Side, at: Duration, flags: u8, options: &[u8], payload: &[u8]) {
        let (me, peer) = (from.index(), 1 - from.index());
        let ack = if flags & ACK != 0 { self.seq[peer] } else { 0 };
        let segment = tcp_segment(
            self.ports[me],
            self.ports[peer],
            self.seq[me],
            ack,
            flags,
            options,
            payload,
        );
        // SYN and FIN each take one sequence number, like a byte.
        let consumed =
            payload.len() + usize::from(flags & SYN != 0) + usize::from(flags & FIN != 0);
        self.seq[me] = self.seq[me].wrapping_add(consumed as u32);

        let packet = match &self.addresses {
            Addresses::V4(ips) => {
                let id = self.ip_id[me];
                self.ip_id[me] = id.wrapping_add(1);
                ipv4_packet(ips[me], ips[peer], id, segment)
            }
            Addresses::V6(ips) => ipv6_packet(ips[me], ips[peer], segment),
        };

        // Never earlier than the packet before (clocks can step back), and
        // never at the same instant.
        let timestamp = match self.last {
            Some(last) => at.max(last + TICK),
            None => at,
        };
        self.last = Some(timestamp);
        self.packets.push(EnhancedPacketBlock {
            interface_id: 0,
            timestamp,
            original_len: packet.len() as u32,
            data: Cow::Owned(packet),
            options: Vec::new(),
        });
    }
}

/// A TCP segment with its checksum left at zero (it needs the IP addresses).
fn tcp_segment(
    src: u16,
    dst: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    debug_assert!(options.len() % 4 == 0, "TCP options fill whole words");
    let header = 20 + options.len();
    let mut s = Vec::with_capacity(header + payload.len());
    s.extend_from_slice(&src.to_be_bytes());
    s.extend_from_slice(&dst.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(((header / 4) as u8) << 4);
    s.push(flags);
    s.extend_from_slice(&WINDOW.to_be_bytes());
    s.extend_from_slice(&[0, 0]); // checksum, filled in by the IP layer
    s.extend_from_slice(&[0, 0]); // urgent pointer
    s.extend_from_slice(options);
    s.extend_from_slice(payload);
    s
}

const TCP_CHECKSUM: usize = 16;
const PROTO_TCP: u8 = 6;
const TTL: u8 = 64;

/// An IPv4 packet around `segment`, both checksums computed.
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, id: u16, mut segment: Vec<u8>) -> Vec<u8> {
    let tcp_len = segment.len() as u16;
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, PROTO_TCP]);
    pseudo.extend_from_slice(&tcp_len.to_be_bytes());
    let sum = checksum(&[&pseudo, &segment]);
    segment[TCP_CHECKSUM..TCP_CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());

    let total = 20 + tcp_len;
    let mut p = Vec::with_capacity(usize::from(total));
    p.push(0x45); // version 4, 5 words of header
    p.push(0); // DSCP/ECN
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment, as Linux sends TCP
    p.push(TTL);
    p.push(PROTO_TCP);
    p.extend_from_slice(&[0, 0]); // header checksum, below
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&[&p]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&segment);
    p
}

/// An IPv6 packet around `segment` (IPv6 has no header checksum; TCP's
/// covers a pseudo-header of the addresses).
fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, mut segment: Vec<u8>) -> Vec<u8> {
    let tcp_len = segment.len() as u32;
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&tcp_len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, PROTO_TCP]);
    let sum = checksum(&[&pseudo, &segment]);
    segment[TCP_CHECKSUM..TCP_CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());

    let mut p = Vec::with_capacity(40 + segment.len());
    p.extend_from_slice(&0x6000_0000u32.to_be_bytes()); // version 6, no class or flow label
    p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    p.push(PROTO_TCP); // next header
    p.push(TTL); // hop limit
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&segment);
    p
}

/// The Internet checksum (RFC 1071) of the parts laid end to end. Every
/// part but the last has an even length here, so words never straddle two.
fn checksum(parts: &[&[u8]]) -> u16 {
    // 64 bits hold the carries of any packet IP can carry, folded at the end.
    let mut sum: u64 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for word in &mut words {
            sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
        }
        if let [odd] = words.remainder() {
            sum += u64::from(*odd) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};
    use std::net::SocketAddr;

    /// One packet read back, parsed by hand from the raw IP bytes.
    #[derive(Debug)]
    struct Packet {
        at: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        ip_id: Option<u16>,
        seq: u32,
        ack: u32,
        flags: u8,
        options: Vec<u8>,
        payload: Vec<u8>,
        comments: Vec<String>,
    }

    /// What the file holds: the section's comments, the interface, the packets.
    struct Read {
        section: Vec<String>,
        interfaces: Vec<InterfaceDescriptionBlock<'static>>,
        packets: Vec<Packet>,
    }

    /// The Internet checksum's defining property, computed another way than
    /// the module does: a ones-complement sum is the plain sum modulo
    /// 0xffff, and a correct checksum makes the whole sum 0 (mod 0xffff).
    fn sums_to_zero(bytes: &[u8]) -> bool {
        let mut padded = bytes.to_vec();
        if padded.len() % 2 == 1 {
            padded.push(0);
        }
        let total: u64 = padded
            .iter()
            .enumerate()
            .map(|(i, b)| u64::from(*b) << if i % 2 == 0 { 8 } else { 0 })
            .sum();
        total % 0xffff == 0
    }

    fn parse_ip(data: &[u8]) -> (IpAddr, IpAddr, Option<u16>, &[u8], Vec<u8>) {
        match data[0] >> 4 {
            4 => {
                let ihl = usize::from(data[0] & 0x0f) * 4;
                assert_eq!(ihl, 20);
                let total = usize::from(u16::from_be_bytes([data[2], data[3]]));
                assert_eq!(total, data.len(), "IPv4 total length");
                assert_eq!(data[9], 6, "protocol is TCP");
                assert!(sums_to_zero(&data[..ihl]), "IPv4 header checksum");
                let src: [u8; 4] = data[12..16].try_into().unwrap();
                let dst: [u8; 4] = data[16..20].try_into().unwrap();
                let segment = &data[ihl..];
                let mut pseudo = [&src[..], &dst[..], &[0, 6]].concat();
                pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
                let id = u16::from_be_bytes([data[4], data[5]]);
                (src.into(), dst.into(), Some(id), segment, pseudo)
            }
            6 => {
                let len = usize::from(u16::from_be_bytes([data[4], data[5]]));
                assert_eq!(len + 40, data.len(), "IPv6 payload length");
                assert_eq!(data[6], 6, "next header is TCP");
                let src: [u8; 16] = data[8..24].try_into().unwrap();
                let dst: [u8; 16] = data[24..40].try_into().unwrap();
                let segment = &data[40..];
                let mut pseudo = [&src[..], &dst[..]].concat();
                pseudo.extend_from_slice(&(segment.len() as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 6]);
                (src.into(), dst.into(), None, segment, pseudo)
            }
            v => panic!("IP version {v}"),
        }
    }

    fn read(file: &[u8]) -> Read {
        let mut reader = PcapNgReader::new(file).expect("a section header first");
        let section = reader
            .section()
            .options
            .iter()
            .filter_map(|o| match o {
                SectionHeaderOption::Comment(c) => Some(c.to_string()),
                _ => None,
            })
            .collect();
        let mut interfaces = Vec::new();
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.expect("a well-formed block").into_owned() {
                Block::InterfaceDescription(idb) => {
                    assert!(packets.is_empty(), "the interface comes before packets");
                    interfaces.push(idb);
                }
                Block::EnhancedPacket(epb) => {
                    assert_eq!(epb.interface_id, 0);
                    assert_eq!(epb.original_len as usize, epb.data.len());
                    let (src, dst, ip_id, segment, pseudo) = parse_ip(&epb.data);
                    assert!(
                        sums_to_zero(&[&pseudo[..], segment].concat()),
                        "TCP checksum"
                    );
                    let offset = usize::from(segment[12] >> 4) * 4;
                    let port = |at: usize| u16::from_be_bytes([segment[at], segment[at + 1]]);
                    let word =
                        |at: usize| u32::from_be_bytes(segment[at..at + 4].try_into().unwrap());
                    packets.push(Packet {
                        at: epb.timestamp,
                        src: SocketAddr::new(src, port(0)),
                        dst: SocketAddr::new(dst, port(2)),
                        ip_id,
                        seq: word(4),
                        ack: word(8),
                        flags: segment[13],
                        options: segment[20..offset].to_vec(),
                        payload: segment[offset..].to_vec(),
                        comments: epb
                            .options
                            .iter()
                            .filter_map(|o| match o {
                                EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                                _ => None,
                            })
                            .collect(),
                    });
                }
                other => panic!("unexpected block {other:?}"),
            }
        }
        Read {
            section,
            interfaces,
            packets,
        }
    }

    /// Checks the TCP conversation as a receiver would: each side's
    /// sequence numbers continue exactly where its last segment ended,
    /// every ACK acknowledges all the other side sent, the handshake and
    /// teardown are there, times never go back, IPv4 ids increase. Returns
    /// what each side sent (client, server).
    fn follow(packets: &[Packet], client: SocketAddr, server: SocketAddr) -> (Vec<u8>, Vec<u8>) {
        let flags: Vec<u8> = packets.iter().map(|p| p.flags).collect();
        assert_eq!(flags[..3], [SYN, SYN | ACK, ACK], "three-way handshake");
        assert_eq!(
            flags[flags.len() - 3..],
            [FIN | ACK, FIN | ACK, ACK],
            "teardown"
        );
        let mut next = [packets[0].seq, packets[1].seq];
        let mut sent = [Vec::new(), Vec::new()];
        let mut ids: [Option<u16>; 2] = [None, None];
        for (n, p) in packets.iter().enumerate() {
            let me = if p.src == client {
                assert_eq!(p.dst, server);
                0
            } else {
                assert_eq!((p.src, p.dst), (server, client));
                1
            };
            assert_eq!(p.seq, next[me], "packet {n}: sequence continues");
            if p.flags & ACK != 0 {
                assert_eq!(p.ack, next[1 - me], "packet {n}: acknowledges all");
            }
            if n > 0 {
                assert!(p.at > packets[n - 1].at, "packet {n}: time goes forward");
            }
            if let Some(id) = p.ip_id {
                if let Some(before) = ids[me] {
                    assert_eq!(id, before.wrapping_add(1), "packet {n}: IP id");
                }
                ids[me] = Some(id);
            }
            if !p.payload.is_empty() {
                assert_eq!(p.flags, PSH | ACK, "packet {n}: data is pushed");
                assert!(p.payload.len() <= MSS);
            }
            let consumed = p.payload.len() as u32
                + u32::from(p.flags & SYN != 0)
                + u32::from(p.flags & FIN != 0);
            next[me] = next[me].wrapping_add(consumed);
            sent[me].extend_from_slice(&p.payload);
        }
        let [c, s] = sent;
        (c, s)
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000) + Duration::from_millis(ms)
    }

    fn chunk(from_client: bool, ms: u64, bytes: &[u8]) -> Chunk {
        Chunk {
            from_client,
            at: at(ms),
            bytes: bytes.to_vec(),
        }
    }

    fn smtp(client: SocketAddr, server: SocketAddr) -> Capture {
        Capture {
            client,
            server,
            opened: at(0),
            closed: Some(at(90)),
            chunks: vec![
                chunk(false, 5, b"220 gmail.com ESMTP mailnet\r\n"),
                chunk(true, 10, b"EHLO client\r\n"),
                chunk(false, 11, b"250-gmail.com\r\n250 PIPELINING\r\n"),
                chunk(true, 20, b"MAIL FROM:<a@qq.com>\r\n"),
                chunk(false, 21, b"250 OK\r\n"),
                chunk(true, 30, b"QUIT\r\n"),
                chunk(false, 31, b"221 Bye\r\n"),
            ],
            truncated: false,
        }
    }

    fn sent_by(capture: &Capture, client: bool) -> Vec<u8> {
        capture
            .chunks
            .iter()
            .filter(|c| c.from_client == client)
            .flat_map(|c| c.bytes.clone())
            .collect()
    }

    #[test]
    fn an_ipv4_session_reads_back_as_a_correct_tcp_conversation() {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.2:2125".parse().unwrap();
        let capture = smtp(client, server);
        let read = read(&to_pcapng(&capture));

        assert_eq!(read.interfaces.len(), 1);
        let idb = &read.interfaces[0];
        assert_eq!(idb.linktype, DataLink::RAW);
        assert_eq!(idb.snaplen, 65535);
        assert!(idb
            .options
            .contains(&InterfaceDescriptionOption::IfTsResol(9)));
        assert_eq!(read.section, [SYNTHESIZED], "not cut, so one comment");

        // Handshake, then each one-segment chunk and its ACK, then teardown.
        assert_eq!(read.packets.len(), 3 + 2 * capture.chunks.len() + 3);
        let (from_client, from_server) = follow(&read.packets, client, server);
        assert_eq!(from_client, sent_by(&capture, true));
        assert_eq!(from_server, sent_by(&capture, false));

        // The times are the recording's.
        let p = &read.packets;
        assert_eq!(p[0].at, since_epoch(at(0)));
        assert_eq!(p[3].at, since_epoch(at(5)), "the greeting");
        assert_eq!(p[3].payload, capture.chunks[0].bytes);
        assert_eq!(p[5].at, since_epoch(at(10)), "EHLO");
        assert_eq!(p[p.len() - 3].at, since_epoch(at(90)), "closed");
        assert!(p.iter().all(|p| p.comments.is_empty()));
    }

    #[test]
    fn ipv6_sessions_are_ipv6_with_checksums_over_the_pseudo_header() {
        let client: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let server: SocketAddr = "[2001:db8::25]:2125".parse().unwrap();
        let capture = smtp(client, server);
        let read = read(&to_pcapng(&capture));
        assert!(read.packets.iter().all(|p| p.ip_id.is_none()), "IPv6");
        let (from_client, from_server) = follow(&read.packets, client, server);
        assert_eq!(from_client, sent_by(&capture, true));
        assert_eq!(from_server, sent_by(&capture, false));
    }

    #[test]
    fn mixed_families_become_ipv6_and_mapped_pairs_become_ipv4() {
        let mut capture = smtp(
            "127.0.0.1:40000".parse().unwrap(),
            "[::1]:2125".parse().unwrap(),
        );
        let read1 = read(&to_pcapng(&capture));
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        follow(&read1.packets, mapped, capture.server);

        // A dual-stack listener: both ends IPv4-mapped, IPv4 on the wire.
        capture.client = "[::ffff:10.0.0.1]:40000".parse().unwrap();
        capture.server = "[::ffff:10.0.0.2]:2125".parse().unwrap();
        let read2 = read(&to_pcapng(&capture));
        assert!(read2.packets.iter().all(|p| p.ip_id.is_some()), "IPv4");
        follow(
            &read2.packets,
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:2125".parse().unwrap(),
        );
    }

    #[test]
    fn a_chunk_longer_than_the_mss_is_split_and_acknowledged_every_second_segment() {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:2125".parse().unwrap();
        let body: Vec<u8> = (0..3 * MSS + 100).map(|n| (n % 251) as u8).collect();
        let mut capture = smtp(client, server);
        capture.chunks = vec![chunk(true, 10, &body), chunk(false, 20, b"250 OK\r\n")];
        let read = read(&to_pcapng(&capture));
        let (from_client, from_server) = follow(&read.packets, client, server);
        assert_eq!(from_client, body);
        assert_eq!(from_server, b"250 OK\r\n");

        let data: Vec<(bool, usize)> = read.packets[3..read.packets.len() - 3]
            .iter()
            .map(|p| (p.src == client, p.payload.len()))
            .collect();
        assert_eq!(
            data,
            [
                (true, MSS),
                (true, MSS),
                (false, 0), // ACK of two segments
                (true, MSS),
                (true, 100),
                (false, 0), // ACK of the rest
                (false, 8),
                (true, 0),
            ]
        );
    }

    #[test]
    fn an_empty_session_is_a_handshake_and_a_teardown() {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:2210".parse().unwrap();
        let capture = Capture {
            client,
            server,
            opened: at(0),
            closed: None,
            chunks: Vec::new(),
            truncated: false,
        };
        let read = read(&to_pcapng(&capture));
        assert_eq!(read.packets.len(), 6);
        let (c, s) = follow(&read.packets, client, server);
        assert!(c.is_empty() && s.is_empty());
        // Still open: the teardown comes right after the last thing seen.
        assert_eq!(read.packets[5].at, since_epoch(at(0)) + 5 * TICK);
        // The SYNs announce the MSS the segments keep to; nothing else has options.
        let options: Vec<&[u8]> = read.packets.iter().map(|p| &p.options[..]).collect();
        let mss = (MSS as u16).to_be_bytes();
        assert_eq!(options[..2], [[2, 4, mss[0], mss[1]]; 2]);
        assert!(options[2..].iter().all(|o| o.is_empty()));
    }

    #[test]
    fn a_cut_recording_says_so_and_times_never_go_back() {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:2125".parse().unwrap();
        let mut capture = smtp(client, server);
        capture.truncated = true;
        // A clock stepping back: the chunk comes before the connection.
        capture.chunks[1].at = at(0) - Duration::from_secs(1);
        capture.closed = Some(at(1));
        let read = read(&to_pcapng(&capture));
        assert_eq!(read.section, [SYNTHESIZED, CUT]);
        let last = read.packets.last().unwrap();
        assert_eq!(last.comments, [CUT]);
        assert!(read.packets[..read.packets.len() - 1]
            .iter()
            .all(|p| p.comments.is_empty()));
        follow(&read.packets, client, server);
    }

    #[test]
    fn a_retrieved_message_starts_a_segment_of_its_own() {
        let answer = chunk(false, 0, b"+OK 12 octets\r\nSubject: x\r\n\r\n.\r\n");
        let pieces = |asked: &[u8]| {
            let asked = chunk(true, 0, asked);
            segments(&answer, Some(&asked))
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
        };
        let split = ["+OK 12 octets\r\n", "Subject: x\r\n\r\n.\r\n"];
        assert_eq!(pieces(b"RETR 1\r\n"), split);
        assert_eq!(pieces(b"top 1 0\r\n"), split);
        // Anything else stays whole: another answer's lines after a
        // segment of their own would be taken for a message.
        let whole = [String::from_utf8_lossy(&answer.bytes).into_owned()];
        assert_eq!(pieces(b"LIST\r\n"), whole);
        assert_eq!(pieces(b"STAT\r\nRETR 1\r\n"), whole, "pipelined");
        assert_eq!(segments(&answer, None).len(), 1);

        // A long message is then cut at the MSS from its own start.
        let mut long = b"+OK 3000 octets\r\n".to_vec();
        long.extend(vec![b'a'; 3000]);
        let long = chunk(false, 0, &long);
        let sizes: Vec<usize> = segments(&long, Some(&chunk(true, 0, b"RETR 2\r\n")))
            .iter()
            .map(|s| s.len())
            .collect();
        assert_eq!(sizes, [17, MSS, MSS, 3000 - 2 * MSS]);
    }

    #[test]
    fn the_checksum_matches_the_rfc_1071_example() {
        // RFC 1071 section 3: these words sum to 0xddf2 (ones' complement).
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&bytes]), !0xddf2);
        assert_eq!(checksum(&[&bytes[..4], &bytes[4..]]), !0xddf2);
        assert!(sums_to_zero(
            &[&bytes[..], &(!0xddf2u16).to_be_bytes()].concat()
        ));
    }
}
