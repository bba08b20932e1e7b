//! Server settings: defaults, then a TOML file (`--config` or `QTM_CONFIG`), then `QTM_*`
//! environment variables, then command-line flags; later sources win.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use qtm_sandbox::{Limits, SandboxConfig};

/// Everything `qtm serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (`QTM_LISTEN`).
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://user:password@host/database` (`QTM_DATABASE_URL`).
    pub database_url: String,
    /// HS256 secret for access tokens (`QTM_JWT_SECRET`); generated once and kept in the
    /// database when unset, so tokens survive restarts.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<String>,
    /// Refresh-token lifetime in seconds (`QTM_REFRESH_TTL_SECS`), 30 days by default.
    pub refresh_ttl_secs: i64,
    /// Origins allowed by CORS (`QTM_CORS_ORIGINS`, comma-separated; `*` for any). Empty: no
    /// cross-origin access.
    pub cors_origins: Vec<String>,
    /// Largest JSON body in bytes (`QTM_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Largest strategy upload in bytes (`QTM_MAX_UPLOAD_BYTES`): both the request body limit
    /// of uploads and the sandbox gate's component size limit, so that an upload the server
    /// reads is never refused for its size afterwards.
    pub max_upload_bytes: usize,
    /// Core instances one strategy instance may create (`QTM_MAX_CORE_INSTANCES`), the sandbox's
    /// `Limits::instances`.
    pub max_core_instances: usize,
    /// Requests per second allowed per user (or per IP before login) on the whole API
    /// (`QTM_RATE_LIMIT_PER_SEC`); 0 turns the limit off.
    pub rate_limit_per_sec: u32,
    /// Burst above the steady rate (`QTM_RATE_LIMIT_BURST`).
    pub rate_limit_burst: u32,
    /// Login attempts per minute per client IP (`QTM_LOGIN_PER_MIN`).
    pub login_per_min: u32,
    /// Directory of CSV market data that backtests may read by file name (`QTM_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Wall time a backtest job may run before it fails as timed out, in seconds
    /// (`QTM_BACKTEST_TIMEOUT_SECS`); 0 means the default, 600. Time spent queued behind other
    /// jobs does not count.
    pub backtest_timeout_secs: u64,
    /// Where compiled strategy code is cached (`QTM_CACHE_DIR`; by default `qtm/components` in
    /// the user's cache directory, `off` for no cache).
    pub cache_dir: Option<PathBuf>,
    /// Webhook secrets per source (`QTM_WEBHOOK_SECRET_<SOURCE>`), for `POST /api/webhooks/{source}`.
    #[serde(skip_serializing)]
    pub webhook_secrets: std::collections::BTreeMap<String, String>,
    /// Accepted clock difference for signed webhooks, in seconds (`QTM_WEBHOOK_WINDOW_SECS`).
    pub webhook_window_secs: i64,
    /// Start the replay feed when its module is enabled (`QTM_REPLAY`, default true). Off, the
    /// live engine still trades bars ingested over `POST /api/market`.
    pub replay: bool,
    /// Import the demo data embedded in the binary (SPY minute bars of 2011) on a start whose
    /// database has no bars, so a bare `qtm serve` has a market to replay (`QTM_DEMO_DATA`,
    /// default true).
    pub demo_data: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://qtm.db".into(),
            jwt_secret: None,
            refresh_ttl_secs: 30 * 86_400,
            cors_origins: Vec::new(),
            max_body_bytes: 1 << 20,
            max_upload_bytes: SandboxConfig::default().max_component_bytes,
            max_core_instances: Limits::default().instances,
            rate_limit_per_sec: 200,
            rate_limit_burst: 400,
            login_per_min: 20,
            data_dir: PathBuf::from("data"),
            backtest_timeout_secs: DEFAULT_BACKTEST_TIMEOUT_SECS,
            cache_dir: None,
            webhook_secrets: Default::default(),
            webhook_window_secs: 300,
            replay: true,
            demo_data: true,
        }
    }
}

/// Backtest job time limit when none is set: long enough for a million-bar run of an honest
/// strategy, short enough that a crawling one frees its slot the same hour.
pub const DEFAULT_BACKTEST_TIMEOUT_SECS: u64 = 600;

/// A setting that could not be read; names the source and the key.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    source_name: String,
    message: String,
}

impl ServerConfig {
    /// Defaults, overlaid with `file` (if given) and then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut c = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    source_name: path.display().to_string(),
                    message: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| ConfigError {
                    source_name: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => ServerConfig::default(),
        };
        c.apply_env(|k| std::env::var(k).ok())?;
        Ok(c)
    }

    /// Overlay `QTM_*` variables read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| ConfigError {
                source_name: key.to_string(),
                message: format!("{v:?}: {e}"),
            })
        }
        if let Some(v) = var("QTM_LISTEN") {
            self.listen = parse("QTM_LISTEN", &v)?;
        }
        if let Some(v) = var("QTM_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = var("QTM_JWT_SECRET") {
            self.jwt_secret = Some(v);
        }
        if let Some(v) = var("QTM_REFRESH_TTL_SECS") {
            self.refresh_ttl_secs = parse("QTM_REFRESH_TTL_SECS", &v)?;
        }
        if let Some(v) = var("QTM_CORS_ORIGINS") {
            self.cors_origins = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = var("QTM_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("QTM_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = var("QTM_MAX_UPLOAD_BYTES") {
            self.max_upload_bytes = parse("QTM_MAX_UPLOAD_BYTES", &v)?;
        }
        if let Some(v) = var("QTM_MAX_CORE_INSTANCES") {
            self.max_core_instances = parse("QTM_MAX_CORE_INSTANCES", &v)?;
        }
        if let Some(v) = var("QTM_RATE_LIMIT_PER_SEC") {
            self.rate_limit_per_sec = parse("QTM_RATE_LIMIT_PER_SEC", &v)?;
        }
        if let Some(v) = var("QTM_RATE_LIMIT_BURST") {
            self.rate_limit_burst = parse("QTM_RATE_LIMIT_BURST", &v)?;
        }
        if let Some(v) = var("QTM_LOGIN_PER_MIN") {
            self.login_per_min = parse("QTM_LOGIN_PER_MIN", &v)?;
        }
        if let Some(v) = var("QTM_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("QTM_BACKTEST_TIMEOUT_SECS") {
            self.backtest_timeout_secs = parse("QTM_BACKTEST_TIMEOUT_SECS", &v)?;
        }
        // Cached by default, as `qtm backtest` does; `QTM_CACHE_DIR=off` turns it off.
        match var("QTM_CACHE_DIR").as_deref() {
            Some("off") => self.cache_dir = None,
            Some(v) => self.cache_dir = Some(PathBuf::from(v)),
            None => {
                self.cache_dir = self
                    .cache_dir
                    .take()
                    .or_else(qtm_sandbox::default_cache_dir)
            }
        }
        if let Some(v) = var("QTM_WEBHOOK_WINDOW_SECS") {
            self.webhook_window_secs = parse("QTM_WEBHOOK_WINDOW_SECS", &v)?;
        }
        if let Some(v) = var("QTM_REPLAY") {
            self.replay = parse("QTM_REPLAY", &v)?;
        }
        if let Some(v) = var("QTM_DEMO_DATA") {
            self.demo_data = parse("QTM_DEMO_DATA", &v)?;
        }
        for (key, value) in std::env::vars() {
            if let Some(source) = key.strip_prefix("QTM_WEBHOOK_SECRET_") {
                self.webhook_secrets
                    .insert(source.to_ascii_lowercase().replace('_', "-"), value);
            }
        }
        Ok(())
    }

    /// The sandbox these settings ask for.
    pub fn sandbox(&self) -> SandboxConfig {
        let defaults = SandboxConfig::default();
        SandboxConfig {
            limits: Limits {
                instances: self.max_core_instances,
                ..defaults.limits
            },
            cache_dir: self.cache_dir.clone(),
            max_component_bytes: self.max_upload_bytes,
            ..defaults
        }
    }

    /// The backtest job time limit in force ([`ServerConfig::backtest_timeout_secs`], 0 meaning
    /// the default).
    pub fn backtest_timeout(&self) -> std::time::Duration {
        let secs = match self.backtest_timeout_secs {
            0 => DEFAULT_BACKTEST_TIMEOUT_SECS,
            n => n,
        };
        std::time::Duration::from_secs(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_bad_values_name_the_variable() {
        let mut c = ServerConfig::default();
        c.apply_env(|k| match k {
            "QTM_LISTEN" => Some("0.0.0.0:9000".into()),
            "QTM_CORS_ORIGINS" => Some("http://a, http://b".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.cors_origins, vec!["http://a", "http://b"]);
        assert_eq!(c.backtest_timeout().as_secs(), 600);
        c.apply_env(|k| (k == "QTM_BACKTEST_TIMEOUT_SECS").then(|| "30".into()))
            .unwrap();
        assert_eq!(c.backtest_timeout().as_secs(), 30);
        c.backtest_timeout_secs = 0;
        assert_eq!(c.backtest_timeout().as_secs(), 600, "0 is the default");
        let e = c
            .apply_env(|k| (k == "QTM_RATE_LIMIT_PER_SEC").then(|| "lots".into()))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("QTM_RATE_LIMIT_PER_SEC: \"lots\""),
            "{e}"
        );
        let t: ServerConfig =
            toml::from_str("listen = \"127.0.0.1:1\"\nlogin_per_min = 3").unwrap();
        assert_eq!((t.listen.port(), t.login_per_min), (1, 3));
        assert!(toml::from_str::<ServerConfig>("nope = 1").is_err());
    }

    #[test]
    fn one_upload_limit_for_the_body_and_the_gate() {
        let c = ServerConfig::default();
        assert_eq!(
            c.max_upload_bytes,
            SandboxConfig::default().max_component_bytes
        );
        assert_eq!(c.sandbox().max_component_bytes, c.max_upload_bytes);
        assert!(c.max_core_instances >= 64, "componentize-py needs 38");
        let mut c: ServerConfig =
            toml::from_str("max_upload_bytes = 1000\nmax_core_instances = 100").unwrap();
        c.apply_env(|k| (k == "QTM_MAX_UPLOAD_BYTES").then(|| "2000".into()))
            .unwrap();
        let sandbox = c.sandbox();
        assert_eq!(sandbox.max_component_bytes, 2000);
        assert_eq!(sandbox.limits.instances, 100);
    }
}
