//! The thin network layer: hickory-server answering UDP and TCP from a [`ZoneHandle`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::zone::{Answer, Zone};

/// The zone a server answers from, shared with the resolver that reads it
/// directly when a server runs alone. Cheap to clone.
#[derive(Clone, Default)]
pub struct ZoneHandle(Arc<Zone>);

impl ZoneHandle {
    /// Wraps a zone.
    pub fn new(zone: Zone) -> Self {
        ZoneHandle(Arc::new(zone))
    }

    /// The zone.
    pub fn current(&self) -> Arc<Zone> {
        self.0.clone()
    }
}

/// Errors from running the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsServerError {
    /// The hickory server stopped with an error.
    #[error("DNS server failed: {0}")]
    Server(String),
}

/// What a scripted fault makes the server answer instead of the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// `SERVFAIL`.
    ServFail,
    /// `NXDOMAIN`.
    NxDomain,
    /// `REFUSED`.
    Refused,
    /// No answer at all: the client times out.
    Silence,
}

/// Asked for every question (name as asked, record type): `Some` replaces
/// the answer. mailnet's scripted `dns:` faults come through here.
pub type QueryFaults = Arc<dyn Fn(&str, RecordType) -> Option<Injected> + Send + Sync>;

struct Handler {
    zone: ZoneHandle,
    /// Where names outside every zone are asked (a class hub), if anywhere.
    upstream: Option<SocketAddr>,
    faults: Option<QueryFaults>,
}

/// How long a forwarded question may take upstream.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks `upstream` over TCP (no truncation to handle) the question as the
/// client sent it; its answer when one came in time.
async fn forward(upstream: SocketAddr, query: &[u8]) -> Option<Message> {
    let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
    let mut query = query.to_vec();
    // Clear RD (the lowest bit of the third octet).
    *query.get_mut(2)? &= !0x01;
    let answer = crate::tcp::exchange(upstream, &query, FORWARD_TIMEOUT)
        .await
        .ok()?;
    let answer = Message::from_vec(&answer).ok()?;
    (answer.id == id).then_some(answer)
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if request.metadata.op_code != OpCode::Query {
            return refuse(request, ResponseCode::NotImp, response_handle).await;
        }
        if let (Some(faults), [query]) = (&self.faults, request.queries.queries()) {
            let name = query.name().to_string();
            match faults(&name, query.query_type()) {
                None => {}
                Some(Injected::ServFail) => {
                    return refuse(request, ResponseCode::ServFail, response_handle).await
                }
                Some(Injected::NxDomain) => {
                    return refuse(request, ResponseCode::NXDomain, response_handle).await
                }
                Some(Injected::Refused) => {
                    return refuse(request, ResponseCode::Refused, response_handle).await
                }
                Some(Injected::Silence) => {
                    tracing::debug!(%name, "no answer: an injected DNS timeout");
                    return unsent(request);
                }
            }
        }
        let zone = self.zone.current();
        // Only a question that asks for recursion is forwarded, and it goes
        // on without asking: two forwarding servers pointed at each other
        // answer REFUSED instead of passing a question round forever.
        let recursive = request.metadata.recursion_desired;
        if let (Some(upstream), [query], true) =
            (self.upstream, request.queries.queries(), recursive)
        {
            let outside = zone.lookup(query.name(), query.query_type()) == Answer::Refused
                && !matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR);
            if outside {
                // Not ours: the DNS this network resolves through answers.
                let Some(answer) = forward(upstream, request.as_slice()).await else {
                    tracing::debug!(%upstream, "no answer to a forwarded question");
                    return refuse(request, ResponseCode::ServFail, response_handle).await;
                };
                return answer_query(request, response_handle, false, |_, _| {
                    (
                        answer.answers.clone(),
                        answer.authorities.clone(),
                        answer.response_code,
                    )
                })
                .await;
            }
        }
        answer_query(request, response_handle, true, |name, rtype| {
            sections(zone.lookup(name, rtype))
        })
        .await
    }
}

/// An answer as the sections of a response: answers, authority, code.
pub(crate) fn sections(answer: Answer<'_>) -> (Vec<Record>, Vec<Record>, ResponseCode) {
    match answer {
        Answer::Records(records) => (
            records.into_iter().cloned().collect(),
            Vec::new(),
            ResponseCode::NoError,
        ),
        Answer::NoData(soa) => (Vec::new(), vec![soa.clone()], ResponseCode::NoError),
        Answer::NxDomain(soa) => (Vec::new(), vec![soa.clone()], ResponseCode::NXDomain),
        Answer::Refused => (Vec::new(), Vec::new(), ResponseCode::Refused),
    }
}

/// Answers a request with no records and `rcode`.
pub(crate) async fn refuse<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    mut response_handle: R,
) -> ResponseInfo {
    let builder = MessageResponseBuilder::new(&request.queries, request.edns.as_ref());
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.recursion_available = false;
    meta.response_code = rcode;
    sent(
        request,
        response_handle
            .send_response(builder.build_no_records(meta))
            .await,
    )
}

/// What was sent, or a SERVFAIL header to account for when sending failed.
pub(crate) fn sent(
    request: &Request,
    result: Result<ResponseInfo, hickory_server::net::NetError>,
) -> ResponseInfo {
    match result {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "could not send a DNS response");
            unsent(request)
        }
    }
}

/// What to account for when no response went out: a SERVFAIL header.
fn unsent(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    hickory_proto::op::Header {
        metadata,
        counts: Default::default(),
    }
    .into()
}

/// Answers a standard query the way an authoritative server does, from
/// `lookup` (answers, authority, response code); `authoritative` is false
/// for answers relayed from elsewhere.
pub(crate) async fn answer_query<R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    authoritative: bool,
    lookup: impl FnOnce(&LowerName, RecordType) -> (Vec<Record>, Vec<Record>, ResponseCode),
) -> ResponseInfo {
    let builder = MessageResponseBuilder::new(&request.queries, request.edns.as_ref());
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.recursion_available = false;
    let queries = request.queries.queries();
    let udp = request.protocol() == Protocol::Udp;
    let result = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 §6.1.3: an EDNS version we do not speak gets BADVERS,
        // with our own OPT record saying version 0.
        let ours = Edns::new();
        let builder = MessageResponseBuilder::new(&request.queries, Some(&ours));
        meta.response_code = ResponseCode::BADVERS;
        response_handle
            .send_response(builder.build_no_records(meta))
            .await
    } else if queries.len() != 1 {
        meta.response_code = ResponseCode::FormErr;
        response_handle
            .send_response(builder.build_no_records(meta))
            .await
    } else if matches!(queries[0].query_type(), RecordType::AXFR | RecordType::IXFR) {
        // Zone transfers are not offered; say so rather than answer
        // with a lone SOA a transfer client would take for the zone.
        meta.response_code = ResponseCode::Refused;
        response_handle
            .send_response(builder.build_no_records(meta))
            .await
    } else {
        let query = &queries[0];
        let (answers, authority, rcode) = lookup(query.name(), query.query_type());
        meta.authoritative = authoritative && rcode != ResponseCode::Refused;
        meta.response_code = rcode;
        if udp && !fits_udp(request, &answers, &authority) {
            // RFC 2181 §9: rather than cut a record set (hickory's
            // encoder can leave a partial record and drop the OPT),
            // send the question alone with TC set; the client retries
            // over TCP.
            meta.truncation = true;
            response_handle
                .send_response(builder.build(meta, [], [], [], []))
                .await
        } else {
            let response = builder.build(meta, answers.iter(), [], authority.iter(), []);
            response_handle.send_response(response).await
        }
    };
    sent(request, result)
}

/// Whether the whole answer fits the UDP size the client allows (512
/// octets without EDNS, its advertised payload with it), measured as
/// hickory-server encodes it: the question copied as the client sent it,
/// whose names the records' names are not compressed against. (Measured
/// with full compression, a 430-octet estimate went out as 615 octets, cut
/// by the encoder mid-record: kdig and dnspython saw trailing data.)
fn fits_udp(request: &Request, answers: &[Record], authority: &[Record]) -> bool {
    let limit = request
        .edns
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload().max(512)));
    let mut wire = Vec::with_capacity(limit);
    let mut encoder = BinEncoder::new(&mut wire);
    let emitted = (|| {
        encoder.emit_vec(&[0; 12])?;
        encoder.emit_vec(request.queries.as_bytes())?;
        for record in answers.iter().chain(authority) {
            record.emit(&mut encoder)?;
        }
        if let Some(edns) = &request.edns {
            Record::from(edns).emit(&mut encoder)?;
        }
        Ok::<(), hickory_proto::ProtoError>(())
    })();
    emitted.is_ok() && wire.len() <= limit
}

/// Answers queries on already-bound sockets until `shutdown` is cancelled.
///
/// The caller binds, so it can report a port in use by name and learn the
/// real port when it asked for port 0.
pub async fn serve(
    zone: ZoneHandle,
    udp: UdpSocket,
    tcp: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), DnsServerError> {
    serve_forwarding(zone, None, udp, tcp, shutdown).await
}

/// Like [`serve`], and questions about names outside every zone are asked
/// of `upstream` (a class hub a network joined), so the machine's agents
/// find other machines' domains through the same local DNS.
pub async fn serve_forwarding(
    zone: ZoneHandle,
    upstream: Option<SocketAddr>,
    udp: UdpSocket,
    tcp: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), DnsServerError> {
    serve_with_faults(zone, upstream, None, udp, tcp, shutdown).await
}

/// Like [`serve_forwarding`], and every question is first put to `faults`,
/// which may replace the answer with a failure (scripted DNS faults).
pub async fn serve_with_faults(
    zone: ZoneHandle,
    upstream: Option<SocketAddr>,
    faults: Option<QueryFaults>,
    udp: UdpSocket,
    tcp: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), DnsServerError> {
    let mut server = Server::new(Handler {
        zone,
        upstream,
        faults,
    });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 64);
    shutdown.cancelled().await;
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsServerError::Server(e.to_string()))
}
