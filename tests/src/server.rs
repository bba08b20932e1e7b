//! A real `qtm` server for integration tests: in this process, on an ephemeral port, with a
//! temporary SQLite file, and an HTTP and WebSocket client to talk to it.

use std::path::{Path, PathBuf};

use qtm_runtime::api::server::{Bootstrap, start_with};
use qtm_runtime::api::{RunningServer, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The admin account every test server starts with.
pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");
/// The JWT secret of test servers, so tests can mint expired or otherwise odd tokens.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

/// A running test server.
pub struct TestServer {
    pub server: RunningServer,
    pub base: String,
    pub http: reqwest::Client,
    pub db: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A fresh server with its own database.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("qtm.db");
        let mut s = Self::start_on(&db, |_| {}).await;
        s._dir = Some(dir);
        s
    }

    /// A server on the database file `db` (kept by the caller), with config tweaks.
    pub async fn start_on(db: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}", db.display()),
            jwt_secret: Some(JWT_SECRET.into()),
            // Backtests name files in it: the peer data where present, else the bundled data.
            data_dir: crate::peer_data().unwrap_or_else(crate::bundled_data),
            rate_limit_per_sec: 0,
            login_per_min: 0,
            // Tests feed the live engine themselves unless they turn the replay on.
            replay: false,
            // Tests start from an empty market unless they import one.
            demo_data: false,
            ..ServerConfig::default()
        };
        config
            .webhook_secrets
            .insert("whale-alert".into(), "whsec-test".into());
        tweak(&mut config);
        let (server, boot) = start_with(config, |k| match k {
            "QTM_ADMIN_USER" => Some(ADMIN.0.into()),
            "QTM_ADMIN_PASSWORD" => Some(ADMIN.1.into()),
            _ => None,
        })
        .await
        .expect("server starts");
        assert!(matches!(
            boot,
            Bootstrap::FromEnv { .. } | Bootstrap::Existing
        ));
        TestServer {
            base: format!("http://{}", server.addr),
            server,
            http: reqwest::Client::new(),
            db: db.to_path_buf(),
            _dir: None,
        }
    }

    /// Stop gracefully (the database stays).
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        self.server.stop().await;
        self._dir
    }

    /// `ws://…` base.
    pub fn ws_base(&self) -> String {
        self.base.replacen("http", "ws", 1)
    }

    /// Log in; returns the token response.
    pub async fn login(&self, user: &str, password: &str) -> Value {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/auth/login",
                None,
                Some(json!({"username": user, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {user}: {body}");
        body
    }

    /// An access token for `user`.
    pub async fn token(&self, user: &str, password: &str) -> String {
        self.login(user, password).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The admin's access token.
    pub async fn admin_token(&self) -> String {
        self.token(ADMIN.0, ADMIN.1).await
    }

    /// Create a user with `role` (as admin) and return their access token.
    pub async fn user_token(&self, admin: &str, name: &str, role: &str) -> String {
        let password = format!("{name}-password");
        let (status, body) = self
            .call(
                Method::POST,
                "/api/users",
                Some(admin),
                Some(json!({"username": name, "password": password, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {name}: {body}");
        self.token(name, &password).await
    }

    /// Upload `wasm` as a new strategy (multipart, as `curl -F file=@…` sends it) with `token`.
    pub async fn upload_strategy(&self, token: &str, wasm: Vec<u8>) -> (StatusCode, Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(wasm).file_name("strategy.wasm"),
        );
        let resp = self
            .http
            .post(format!("{}/api/strategies", self.base))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("request sent");
        Self::decode(resp).await
    }

    /// Send a JSON request with an optional bearer token; returns status and JSON body
    /// (`Value::Null` for an empty body, the text as a string if it is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        Self::decode(resp).await
    }

    /// Decode a response into status and JSON.
    pub async fn decode(resp: reqwest::Response) -> (StatusCode, Value) {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }
}

/// The `{"error": {"code", "message"}}` of an error response, checked for shape.
#[track_caller]
pub fn error_of(body: &Value) -> (String, String) {
    let e = &body["error"];
    let code = e["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    let message = e["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error without message: {body}"));
    assert!(!message.is_empty(), "empty error message: {body}");
    (code.to_string(), message.to_string())
}

/// The next text message of a WebSocket as JSON (10 s at most; other frames are skipped).
pub async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("ok");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// The `qtm` binary next to this test's executable (cargo builds it for the workspace tests).
pub fn qtm_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let qtm = dir.join(format!("qtm{}", std::env::consts::EXE_SUFFIX));
    assert!(
        qtm.exists(),
        "{} is built by `cargo test --workspace` (./test.sh); with `-p qtm-tests` alone, run `cargo build -p qtm-runtime` first",
        qtm.display()
    );
    qtm
}

/// `qtm serve` on a free port over the database at `url`, its stderr in `dir/serve.err`,
/// with the extra environment `env`; the child and its address.
pub fn spawn_serve(
    qtm: &Path,
    url: &str,
    dir: &Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = std::process::Command::new(qtm)
        .args(["serve", "--listen", &listen, "--database-url", url])
        .env("QTM_ADMIN_PASSWORD", ADMIN.1)
        .env("QTM_LOG", "warn")
        // Tests start from an empty market unless they ask for the demo data.
        .env("QTM_DEMO_DATA", "false")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.err")).unwrap())
        .spawn()
        .unwrap();
    (child, listen)
}

/// A client of `/ws/trading`: order messages and their answers, with the pushed
/// `order_update`s set aside.
pub struct TradingWs {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// The `welcome` message.
    pub welcome: Value,
    /// `order_update`s that arrived while waiting for answers, oldest first.
    pub updates: Vec<Value>,
    next_id: u64,
}

impl TradingWs {
    /// Connect with `query` (`token=…` or `api_key=…`) and read the welcome.
    pub async fn connect(s: &TestServer, query: &str) -> TradingWs {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("{}/ws/trading?{query}", s.ws_base()))
                .await
                .expect("/ws/trading upgrades");
        let welcome = next_json(&mut ws).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        TradingWs {
            ws,
            welcome,
            updates: Vec::new(),
            next_id: 0,
        }
    }

    /// Send raw text; the next answer (pushed updates are kept in `updates`).
    pub async fn send_text(&mut self, text: String) -> Value {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("sent");
        self.answer().await
    }

    /// The next message that is not a pushed update.
    pub async fn answer(&mut self) -> Value {
        loop {
            let m = next_json(&mut self.ws).await;
            if m["type"] == "order_update" {
                self.updates.push(m);
            } else {
                return m;
            }
        }
    }

    /// Send `msg` with a fresh `request_id`; its answer, checked to echo the id.
    pub async fn request(&mut self, mut msg: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        msg["request_id"] = json!(id);
        let answer = self.send_text(msg.to_string()).await;
        assert_eq!(answer["request_id"], json!(id), "{answer}");
        answer
    }

    /// Place `order` (a `POST /api/orders` body): the answer as REST gives it, status and
    /// body (the order, or the `{"error": …}` object).
    pub async fn place(&mut self, order: Value) -> (StatusCode, Value) {
        Self::as_rest(self.request(json!({"type": "place", "order": order})).await)
    }

    /// An answer as the REST status and body it stands for.
    pub fn as_rest(answer: Value) -> (StatusCode, Value) {
        match answer["type"].as_str() {
            Some("order") => (StatusCode::OK, answer["order"].clone()),
            Some("error") => (
                StatusCode::from_u16(answer["status"].as_u64().expect("status") as u16)
                    .expect("an HTTP status"),
                answer,
            ),
            _ => panic!("not an answer to an order message: {answer}"),
        }
    }

    /// Wait for a pushed `order_update` matching `pred` (10 s at most per message).
    pub async fn update_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.updates.iter().position(&pred) {
            return self.updates.remove(i);
        }
        loop {
            let m = next_json(&mut self.ws).await;
            assert_eq!(m["type"], "order_update", "unexpected message: {m}");
            if pred(&m) {
                return m;
            }
            self.updates.push(m);
        }
    }

    /// The socket itself, for tests of the transport.
    pub fn socket(
        &mut self,
    ) -> &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    > {
        &mut self.ws
    }
}
