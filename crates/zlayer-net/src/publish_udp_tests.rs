//! The UDP publisher against real sockets on loopback: flows, round robin,
//! the cap, and a replica taken out (127.0.0.2 stands for a second replica IP).

use super::*;

/// A UDP server at `ip` that answers each datagram with `NAME:payload`.
async fn replica(ip: &str, name: &'static str) -> SocketAddr {
    let s = UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let answer = [name.as_bytes(), b":", &buf[..n]].concat();
            let _ = s.send_to(&answer, from).await;
        }
    });
    addr
}

async fn port(max_flows: usize, backends: Vec<SocketAddr>) -> (UdpPublisher, SocketAddr) {
    let listen = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let p = UdpPublisher::bind(listen, max_flows).await.unwrap();
    p.backends.send_replace(backends);
    (p, listen)
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends `msg` to the port and returns the answer (a bound, not a timing check).
async fn ask(c: &UdpSocket, port: SocketAddr, msg: &str) -> String {
    c.send_to(msg.as_bytes(), port).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(from, port, "answers come from the published port");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_datagram_reaches_a_replica_and_its_answer_comes_back_from_the_port() {
    let a = replica("127.0.0.1", "a").await;
    let (p, at) = port(16, vec![a]).await;
    let c = client().await;
    assert_eq!(ask(&c, at, "ping").await, "a:ping");
    assert_eq!(ask(&c, at, "again").await, "a:again");
    assert_eq!(p.flows(), 1, "one client, one flow");
}

#[tokio::test]
async fn each_client_keeps_its_replica_and_clients_spread_round_robin() {
    let (a, b) = (
        replica("127.0.0.1", "a").await,
        replica("127.0.0.1", "b").await,
    );
    let (_p, at) = port(16, vec![a, b]).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let c = client().await;
        let first = ask(&c, at, "x").await;
        for _ in 0..3 {
            assert_eq!(ask(&c, at, "x").await, first, "a flow stays on its replica");
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "two clients, two replicas: {seen:?}");
}

#[tokio::test]
async fn a_replica_taken_out_gets_no_new_datagrams_and_its_flows_drain() {
    let leaving = replica("127.0.0.1", "leaving").await;
    let staying = replica("127.0.0.2", "staying").await;
    let (p, at) = port(16, vec![leaving]).await;
    let c = client().await;
    assert_eq!(ask(&c, at, "1").await, "leaving:1");
    p.backends.send_replace(vec![staying]);
    // The list change reaches the port's loop before the next datagram.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ask(&c, at, "2").await, "staying:2");
    tokio::time::timeout(Duration::from_secs(10), p.drained(leaving.ip()))
        .await
        .expect("the old flow ends after its linger");
    assert_eq!(ask(&c, at, "3").await, "staying:3");
}

#[tokio::test]
async fn a_port_holds_at_most_its_cap_of_flows() {
    let a = replica("127.0.0.1", "a").await;
    let (p, at) = port(2, vec![a]).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let c = client().await;
        assert_eq!(ask(&c, at, &i.to_string()).await, format!("a:{i}"));
        clients.push(c);
    }
    // An evicted flow's relay ends on its own task; give it a moment.
    for _ in 0..100 {
        if p.flows() <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(p.flows(), 2);
    // The newest client is still served.
    assert_eq!(ask(&clients[4], at, "more").await, "a:more");
}

#[tokio::test]
async fn no_replica_no_answer_and_no_flow() {
    let (p, at) = port(16, Vec::new()).await;
    let c = client().await;
    c.send_to(b"anyone?", at).await.unwrap();
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(300), c.recv_from(&mut buf)).await;
    assert!(got.is_err(), "nothing answers");
    assert_eq!(p.flows(), 0);
}
