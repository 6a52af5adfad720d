//! The inter-broker transport over real loopback sockets: groups
//! multiplexed on one connection, each group's requests in order, peers of
//! another cluster and garbage refused without disturbing anyone else,
//! reconnection after the listener comes back.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rill_protocol::peer::{GroupId, PeerFrame, PeerRpc, RefusedReason, PEER_LENGTH_PREFIX_BYTES};
use rill_replication::transport::Members;
use rill_replication::{PeerClient, PeerHandler, PeerIdentity, PeerListener, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const CLUSTER: [u8; 16] = [0xc1; 16];
const SERVER: u64 = 1;
const CLIENT: u64 = 2;
/// Bounds every wait, so a hang fails the test instead of stalling CI.
const DEADLINE: Duration = Duration::from_secs(10);

fn me(node_id: u64) -> PeerIdentity {
    PeerIdentity {
        cluster_id: CLUSTER,
        node_id,
    }
}

fn members() -> Members {
    Arc::new(|node| node == SERVER || node == CLIENT)
}

fn partition(topic: &str) -> GroupId {
    GroupId::Partition {
        topic: topic.to_owned(),
        partition: 0,
    }
}

/// Echoes payloads, journals them per group, fails payloads "fail", and
/// holds group "blocked" until group "free" has been served.
#[derive(Default)]
struct Recorder {
    seen: Mutex<HashMap<GroupId, Vec<Bytes>>>,
    gate: Arc<Notify>,
}

impl Recorder {
    fn seen(&self, group: &GroupId) -> Vec<Bytes> {
        self.seen
            .lock()
            .expect("journal")
            .get(group)
            .cloned()
            .unwrap_or_default()
    }
}

impl PeerHandler for Recorder {
    fn handle(
        &self,
        from: u64,
        group: GroupId,
        _rpc: PeerRpc,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send + 'static>> {
        assert_eq!(from, CLIENT);
        self.seen
            .lock()
            .expect("journal")
            .entry(group.clone())
            .or_default()
            .push(payload.clone());
        if group == partition("free") {
            // Stores a permit if "blocked" is not waiting yet.
            self.gate.notify_one();
        }
        let gate = (group == partition("blocked")).then(|| Arc::clone(&self.gate));
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            if &payload[..] == b"fail" {
                return Err("refused by the handler".to_owned());
            }
            Ok(payload)
        })
    }
}

async fn listen(handler: Arc<dyn PeerHandler>) -> PeerListener {
    PeerListener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        me(SERVER),
        members(),
        handler,
    )
    .await
    .expect("bind")
}

fn client(listener: &PeerListener) -> PeerClient {
    PeerClient::new(
        me(CLIENT),
        SERVER,
        listener.local_addr().to_string(),
        DEADLINE,
    )
}

#[tokio::test]
async fn transport_groups_share_one_connection_without_waiting_on_each_other() {
    let handler = Arc::new(Recorder::default());
    let listener = listen(handler.clone()).await;
    let client = client(&listener);
    // "blocked" is answered only after "free" was served: were the groups
    // queued behind one another, neither would ever be answered.
    let blocked = client.request(
        partition("blocked"),
        PeerRpc::AppendEntries,
        Bytes::from_static(b"b"),
    );
    let free = client.request(partition("free"), PeerRpc::Vote, Bytes::from_static(b"f"));
    let (blocked, free) = tokio::time::timeout(DEADLINE, async { tokio::join!(blocked, free) })
        .await
        .expect("both groups answered");
    assert_eq!(&blocked.expect("blocked answered")[..], b"b");
    assert_eq!(&free.expect("free answered")[..], b"f");
    listener.shutdown().await;
}

#[tokio::test]
async fn transport_answers_each_request_and_keeps_a_groups_order() {
    let handler = Arc::new(Recorder::default());
    let listener = listen(handler.clone()).await;
    let client = client(&listener);
    let payloads: Vec<Bytes> = (0..200u32)
        .map(|i| Bytes::from(i.to_le_bytes().to_vec()))
        .collect();
    // Requests of two groups interleaved and all in flight at once.
    let requests = payloads.iter().enumerate().map(|(i, p)| {
        let group = if i % 2 == 0 {
            partition("even")
        } else {
            GroupId::Controller
        };
        client.request(group, PeerRpc::AppendEntries, p.clone())
    });
    let answers = tokio::time::timeout(DEADLINE, futures_join_all(requests))
        .await
        .expect("all answered");
    for (answer, sent) in answers.into_iter().zip(&payloads) {
        assert_eq!(
            &answer.expect("answered"),
            sent,
            "each request gets its own answer"
        );
    }
    let even: Vec<Bytes> = payloads.iter().step_by(2).cloned().collect();
    let odd: Vec<Bytes> = payloads.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(
        handler.seen(&partition("even")),
        even,
        "a group's requests run in send order"
    );
    assert_eq!(handler.seen(&GroupId::Controller), odd);
    let failed = client
        .request(
            GroupId::Controller,
            PeerRpc::Vote,
            Bytes::from_static(b"fail"),
        )
        .await;
    assert!(
        matches!(&failed, Err(TransportError::Remote { message, .. }) if message == "refused by the handler"),
        "{failed:?}"
    );
    listener.shutdown().await;
}

/// Polls the futures together (in creation order, so they reach the
/// connection's writer in that order: its lock is FIFO).
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

#[tokio::test]
async fn transport_refuses_peers_of_another_cluster_another_node_or_no_member() {
    let handler = Arc::new(Recorder::default());
    let listener = listen(handler.clone()).await;
    let addr = listener.local_addr().to_string();
    let cases = [
        (
            PeerIdentity {
                cluster_id: [0xee; 16],
                node_id: CLIENT,
            },
            SERVER,
            RefusedReason::OtherCluster,
        ),
        (me(CLIENT), 7, RefusedReason::WrongNode),
        (me(9), SERVER, RefusedReason::UnknownNode),
    ];
    for (who, to, want) in cases {
        let c = PeerClient::new(who, to, addr.clone(), DEADLINE);
        let got = c
            .request(GroupId::Controller, PeerRpc::Vote, Bytes::new())
            .await;
        assert!(
            matches!(&got, Err(TransportError::Refused { reason, .. }) if *reason == want),
            "{want:?}: {got:?}"
        );
    }
    assert!(
        handler.seen(&GroupId::Controller).is_empty(),
        "no refused peer reached the handler"
    );
    // A member of this cluster is still served.
    let ok = client(&listener)
        .request(GroupId::Controller, PeerRpc::Vote, Bytes::from_static(b"v"))
        .await
        .expect("member served");
    assert_eq!(&ok[..], b"v");
    listener.shutdown().await;
}

/// Reads what the listener answers a raw connection until it closes.
async fn answer_to(listener: &PeerListener, bytes: &[u8]) -> Vec<u8> {
    let mut raw = TcpStream::connect(listener.local_addr())
        .await
        .expect("connect");
    raw.write_all(bytes).await.expect("write");
    // Sent all it will: the listener sees the end instead of waiting out
    // its hello timeout.
    raw.shutdown().await.expect("shutdown");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, raw.read_to_end(&mut answer))
        .await
        .expect("the listener closes the connection")
        .expect("read");
    answer
}

fn refusal(answer: &[u8]) -> Option<RefusedReason> {
    let body = answer.get(PEER_LENGTH_PREFIX_BYTES..)?;
    match PeerFrame::decode(Bytes::copy_from_slice(body)).ok()? {
        PeerFrame::Refused { reason, .. } => Some(reason),
        _ => None,
    }
}

#[tokio::test]
async fn transport_refuses_garbage_and_keeps_serving_others() {
    let handler = Arc::new(Recorder::default());
    let listener = listen(handler.clone()).await;
    let good = client(&listener);
    good.request(GroupId::Controller, PeerRpc::Vote, Bytes::from_static(b"1"))
        .await
        .expect("served before");
    // HTTP instead of a hello: its first four bytes read as a length far
    // over the limit, refused before anything is allocated for it.
    let http = answer_to(&listener, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(refusal(&http), Some(RefusedReason::Malformed), "{http:?}");
    // A well-framed body that is not a hello (bad magic).
    let mut not_hello = vec![0u8; 4];
    let body = [0u8, 1, 2, 3, 4, 5, 6, 7];
    not_hello[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    not_hello.extend_from_slice(&body);
    let answer = answer_to(&listener, &not_hello).await;
    assert_eq!(refusal(&answer), Some(RefusedReason::Malformed));
    // A length prefix under the limit whose bytes never come: the peer
    // closes and the listener only ever held what arrived.
    let answer = answer_to(&listener, &(64u32 << 20).to_le_bytes()).await;
    assert_eq!(refusal(&answer), Some(RefusedReason::Malformed));
    // The connection that was already open is still served, as are new ones.
    let again = good
        .request(GroupId::Controller, PeerRpc::Vote, Bytes::from_static(b"2"))
        .await
        .expect("served after");
    assert_eq!(&again[..], b"2");
    listener.shutdown().await;
}

#[tokio::test]
async fn transport_client_refuses_a_listener_that_is_not_a_peer() {
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = fake.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((mut s, _)) = fake.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let c = PeerClient::new(me(CLIENT), SERVER, addr.to_string(), DEADLINE);
    let got = c
        .request(GroupId::Controller, PeerRpc::Vote, Bytes::new())
        .await;
    assert!(
        matches!(got, Err(TransportError::BadPeer { .. })),
        "{got:?}"
    );
}

#[tokio::test]
async fn transport_client_reconnects_when_the_listener_comes_back() {
    let handler: Arc<dyn PeerHandler> = Arc::new(Recorder::default());
    let listener = listen(Arc::clone(&handler)).await;
    let addr = listener.local_addr();
    let c = client(&listener);
    c.request(GroupId::Controller, PeerRpc::Vote, Bytes::from_static(b"1"))
        .await
        .expect("first");
    listener.shutdown().await;
    let down = c
        .request(GroupId::Controller, PeerRpc::Vote, Bytes::from_static(b"2"))
        .await;
    assert!(
        matches!(
            down,
            Err(TransportError::Closed { .. } | TransportError::Connect { .. })
        ),
        "{down:?}"
    );
    let back = PeerListener::bind(addr, me(SERVER), members(), handler)
        .await
        .expect("rebind the same port");
    let answer = c
        .request(GroupId::Controller, PeerRpc::Vote, Bytes::from_static(b"3"))
        .await
        .expect("reconnected");
    assert_eq!(&answer[..], b"3");
    back.shutdown().await;
}
