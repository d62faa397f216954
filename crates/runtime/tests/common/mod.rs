//! What the runtime's integration tests share: a runtime on loopback with an in-memory store,
//! and a SIP peer that writes messages by hand.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sip::{Message, Response};
use store::Store;
use tokio::net::UdpSocket;
use uuid::Uuid;
use voxflow_runtime as runtime;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct Rig {
    pub runtime: runtime::Runtime,
    pub store: Arc<store::SqliteStore>,
    pub dir: TempDir,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn rig(rtp_base: u16) -> Rig {
    rig_with(rtp_base, |_| {}).await
}

/// A rig whose runtime configuration `tweak` adjusts.
pub async fn rig_with(rtp_base: u16, tweak: impl FnOnce(&mut runtime::Config)) -> Rig {
    let dir = std::env::temp_dir().join(format!("voxflow-rt-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(store::SqliteStore::open("sqlite::memory:").await.unwrap());
    store.bootstrap(Some("t"), &store::utc_now()).await.unwrap();
    let mut config = runtime::Config {
        rtp_ports: (rtp_base, rtp_base + 40),
        media_workers: 1,
        keepalive_interval: std::time::Duration::from_millis(200),
        // The tests' HTTP servers (prompts, fetch, webhooks) are on loopback.
        allow_private_urls: true,
        ..runtime::Config::new("127.0.0.1:0".parse().unwrap(), dir.clone())
    };
    tweak(&mut config);
    let runtime = runtime::Runtime::start(config, store.clone())
        .await
        .unwrap();
    Rig {
        runtime,
        store,
        dir: TempDir(dir),
    }
}

/// What a test trunk differs in.
#[derive(Default)]
pub struct TrunkSpec<'a> {
    pub port: Option<u16>,
    pub username: &'a str,
    pub password: &'a str,
    pub register: bool,
    pub caller_id: &'a str,
    pub allowed_ips: &'a [&'a str],
}

impl Rig {
    /// Store a trunk to 127.0.0.1 for the test account.
    pub async fn trunk(&self, spec: TrunkSpec<'_>) -> Uuid {
        let account = self.store.account_by_token("t").await.unwrap().unwrap();
        let now = store::utc_now();
        let id = Uuid::new_v4();
        self.store
            .create_trunk(&store::TrunkRecord {
                id,
                account_id: account.id,
                name: "carrier".into(),
                host: "127.0.0.1".into(),
                port: spec.port,
                transport: "udp".into(),
                username: spec.username.into(),
                password: spec.password.into(),
                register: spec.register,
                register_expires: 300,
                caller_id: spec.caller_id.into(),
                allowed_ips: spec.allowed_ips.iter().map(|s| (*s).to_owned()).collect(),
                tm_create: now.clone(),
                tm_update: now,
            })
            .await
            .unwrap();
        id
    }

    /// Store a flow and bind `number` to it.
    pub async fn bind(&self, number: &str, actions: serde_json::Value) {
        let account = self.store.account_by_token("t").await.unwrap().unwrap();
        let mut actions = actions;
        flow::assign_ids(&mut actions, || Uuid::new_v4().to_string());
        flow::compile(&actions).unwrap();
        let now = store::utc_now();
        let flow_id = Uuid::new_v4();
        self.store
            .create_flow(&store::FlowRecord {
                id: flow_id,
                account_id: account.id,
                name: "t".into(),
                detail: String::new(),
                actions,
                on_complete_flow_id: None,
                tm_create: now.clone(),
                tm_update: now.clone(),
            })
            .await
            .unwrap();
        self.store
            .create_number(&store::NumberRecord {
                id: Uuid::new_v4(),
                account_id: account.id,
                number: number.into(),
                call_flow_id: flow_id,
                name: String::new(),
                tm_create: now.clone(),
                tm_update: now,
            })
            .await
            .unwrap();
    }
}

/// A SIP peer on a UDP socket that writes requests by hand and reads what comes back.
pub struct Phone {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub call_id: String,
}

/// The realm and issue time of the challenges `Phone::challenge` sends, acting as a carrier.
pub const CARRIER_REALM: &str = "carrier.example";
pub const CARRIER_NOW: u64 = 1_800_000_000;

impl Phone {
    /// Answer `request` with a carrier's digest challenge: a 401 (`WWW-Authenticate`) or a 407
    /// (`Proxy-Authenticate`), MD5, realm [`CARRIER_REALM`], issued at [`CARRIER_NOW`]. Returns
    /// the issuer that checks the credentials sent back.
    pub async fn challenge(
        &self,
        request: &sip::Request,
        status: u16,
        tag: &str,
    ) -> sip::auth::NonceIssuer {
        let issuer = sip::auth::NonceIssuer::new([7; 32]);
        let challenge =
            issuer.challenge(CARRIER_REALM, sip::auth::Algorithm::Md5, CARRIER_NOW, false);
        let header = if status == 407 {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let mut response = Response::for_request(request, status);
        response.set_to_tag(tag);
        response.headers.push(header, challenge.to_string());
        self.send(std::str::from_utf8(&response.to_bytes()).unwrap())
            .await;
        issuer
    }

    pub async fn new(server: SocketAddr) -> Phone {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Phone {
            socket,
            server,
            call_id: format!("{}@test", Uuid::new_v4()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub async fn send(&self, text: &str) {
        self.socket
            .send_to(text.as_bytes(), self.server)
            .await
            .unwrap();
    }

    /// The next SIP message, within [`WAIT`].
    pub async fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(WAIT, self.socket.recv_from(&mut buf))
            .await
            .expect("no SIP message within the wait")
            .unwrap();
        Message::parse(&buf[..n]).unwrap()
    }

    /// Skip messages until a response with `status` (failing on any final response that is not it).
    pub async fn expect_status(&self, status: u16) -> Response {
        loop {
            match self.recv().await {
                Message::Response(r) if r.status == status => return r,
                Message::Response(r) if r.status < 200 => {}
                other => panic!(
                    "expected {status}, got {}",
                    String::from_utf8_lossy(&other.to_bytes())
                ),
            }
        }
    }

    pub fn invite(&self, number: &str, branch: &str, sdp: Option<&str>) -> String {
        let body = sdp.unwrap_or("");
        let ctype = if sdp.is_some() {
            "Content-Type: application/sdp\r\n"
        } else {
            ""
        };
        format!(
            "INVITE sip:{number}@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: \"Alice\" <sip:alice@{me}>;tag=alice1\r\n\
             To: <sip:{number}@{server}>\r\n\
             Call-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:alice@{me}>\r\n\
             {ctype}Content-Length: {len}\r\n\r\n{body}",
            server = self.server,
            me = self.addr(),
            cid = self.call_id,
            len = body.len()
        )
    }

    /// An in-dialog request (ACK, BYE, INFO, ...) towards the server, with its To-tag.
    pub fn in_dialog(
        &self,
        method: &str,
        cseq: u32,
        to_tag: &str,
        branch: &str,
        extra: &str,
        body: &str,
    ) -> String {
        format!(
            "{method} sip:voxflow@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: \"Alice\" <sip:alice@{me}>;tag=alice1\r\n\
             To: <sip:x@{server}>;tag={to_tag}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n\
             {extra}Content-Length: {len}\r\n\r\n{body}",
            server = self.server,
            me = self.addr(),
            cid = self.call_id,
            len = body.len()
        )
    }
}

pub fn offer(rtp_port: u16, codecs: &str, rtpmaps: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP {codecs}\r\n{rtpmaps}"
    )
}

pub fn pcmu_offer(rtp_port: u16) -> String {
    offer(
        rtp_port,
        "0 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
    )
}

pub fn to_tag(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_owned()
}

/// Wait (bounded) for a call update satisfying `done`.
pub async fn wait_update(
    events: &mut tokio::sync::broadcast::Receiver<runtime::CallUpdate>,
    done: impl Fn(&store::CallRecord) -> bool,
) -> store::CallRecord {
    tokio::time::timeout(WAIT, async {
        loop {
            let update = events.recv().await.unwrap();
            if done(&update.record) {
                return update.record;
            }
        }
    })
    .await
    .expect("the call never reached the expected state")
}
