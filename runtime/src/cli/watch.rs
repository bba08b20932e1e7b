//! `qtm watch`: print a WebSocket stream, one message a line, so the README's walkthrough
//! (and scripts) need no WebSocket client of their own.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

use super::out::outln;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// A stream of the server: a path (`/ws/trades`, `/ws/market?symbols=SPY`) or a whole
    /// `ws://` URL.
    stream: String,
    /// The server, for a path.
    #[arg(long, env = "QTM_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Access token (sent as `?token=`).
    #[arg(long, env = "QTM_TOKEN")]
    token: Option<String>,
    /// API key instead of a token (sent as `?api_key=`).
    #[arg(long, env = "QTM_API_KEY", conflicts_with = "token")]
    api_key: Option<String>,
    /// Stop after this many messages (the welcome included).
    #[arg(long)]
    count: Option<u64>,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
}

/// The stream's URL: `stream` as given when it is a URL, else joined to `server`, with the
/// token added as a query parameter.
fn url_of(args: &WatchArgs) -> Result<String> {
    let mut url = if args.stream.starts_with("ws://") || args.stream.starts_with("wss://") {
        args.stream.clone()
    } else if args.stream.starts_with('/') {
        let server = args.server.trim_end_matches('/');
        let base = if let Some(rest) = server.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = server.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            bail!("--server must start with http:// or https://, got {server:?}");
        };
        format!("{base}{}", args.stream)
    } else {
        bail!(
            "the stream must be a path such as /ws/trades or a ws:// URL, got {:?}",
            args.stream
        );
    };
    let credential = match (&args.token, &args.api_key) {
        (Some(t), _) => Some(("token", t)),
        (None, Some(k)) => Some(("api_key", k)),
        (None, None) => None,
    };
    if let Some((name, value)) = credential {
        let sep = if url.contains('?') { '&' } else { '?' };
        url.push(sep);
        url.push_str(name);
        url.push('=');
        url.push_str(&urlencode(value));
    }
    Ok(url)
}

/// Percent-encode what a query value cannot hold as is (tokens are base64url and dots, so
/// this is for keys pasted with anything else in them).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn run(args: WatchArgs) -> Result<()> {
    let url = url_of(&args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(args.connect_timeout),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .with_context(|| format!("connecting to {}: timed out", shown(&url)))?
        .with_context(|| format!("connecting to {}", shown(&url)))?;
        let mut seen = 0u64;
        while args.count.is_none_or(|n| seen < n) {
            let Some(msg) = ws.next().await else {
                break;
            };
            match msg.context("reading the stream")? {
                Message::Text(text) => {
                    outln!("{}", text.as_str())?;
                    seen += 1;
                }
                Message::Binary(bytes) => {
                    outln!("{}", String::from_utf8_lossy(&bytes))?;
                    seen += 1;
                }
                Message::Close(frame) => {
                    if let Some(f) = frame
                        && !f.reason.is_empty()
                    {
                        bail!("the server closed the stream: {}", f.reason.as_str());
                    }
                    break;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
        let _ = ws.close(None).await;
        Ok(())
    })
}

/// `url` without its credential, for messages.
fn shown(url: &str) -> String {
    match ["token=", "api_key="]
        .iter()
        .find_map(|k| url.find(k).map(|i| (i, k)))
    {
        Some((i, k)) => format!("{}{k}…", &url[..i]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(stream: &str, server: &str, token: Option<&str>) -> WatchArgs {
        WatchArgs {
            stream: stream.into(),
            server: server.into(),
            token: token.map(Into::into),
            api_key: None,
            count: None,
            connect_timeout: 1,
        }
    }

    #[test]
    fn paths_join_the_server_and_carry_the_token() {
        let u = |s, srv, t| url_of(&args(s, srv, t)).map_err(|e| e.to_string());
        assert_eq!(
            u("/ws/trades", "http://127.0.0.1:8080/", Some("a.b-c")).unwrap(),
            "ws://127.0.0.1:8080/ws/trades?token=a.b-c"
        );
        assert_eq!(
            u("/ws/market?symbols=SPY", "https://qtm.example", Some("k y")).unwrap(),
            "wss://qtm.example/ws/market?symbols=SPY&token=k%20y"
        );
        assert_eq!(u("ws://h:1/ws", "x", None).unwrap(), "ws://h:1/ws");
        assert!(
            u("trades", "http://h", None)
                .unwrap_err()
                .contains("a path")
        );
        assert!(u("/ws", "h:1", None).unwrap_err().contains("--server"));
        assert_eq!(shown("ws://h/ws?token=secret"), "ws://h/ws?token=…");
        assert_eq!(shown("ws://h/ws?a=1&api_key=k"), "ws://h/ws?a=1&api_key=…");
        let mut key = args("/ws", "http://h", None);
        key.api_key = Some("qtm_k".into());
        assert_eq!(url_of(&key).unwrap(), "ws://h/ws?api_key=qtm_k");
    }
}
