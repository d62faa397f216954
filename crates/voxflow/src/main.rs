//! The `voxflow` binary: command line, configuration, logging, and wiring of store, runtime and API.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use store::Store;

mod config;
mod demo;

/// A programmable voice platform in one binary: SIP, RTP, call flows, REST API.
#[derive(Parser)]
#[command(name = "voxflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the platform: SIP (UDP+TCP), RTP media, and the HTTP API.
    Serve(Box<Serve>),
    /// Work with flow files offline.
    #[command(subcommand)]
    Flow(FlowCmd),
}

#[derive(Args)]
struct Serve {
    /// HTTP API listen address.
    #[arg(long, env = "VOXFLOW_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// SIP listen address (UDP, and TCP on the same port).
    #[arg(long, env = "VOXFLOW_SIP_LISTEN", default_value = "127.0.0.1:5060")]
    sip_listen: SocketAddr,
    /// RTP port range, LOW-HIGH (inclusive; even ports are used).
    #[arg(long, env = "VOXFLOW_RTP_PORTS", default_value = "20000-29999", value_parser = parse_range)]
    rtp_ports: (u16, u16),
    /// Directory for the database, recordings and caches (created if missing).
    #[arg(long, env = "VOXFLOW_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Database URL; default: SQLite file `voxflow.db` in the data dir.
    #[arg(long, env = "VOXFLOW_DATABASE_URL")]
    database_url: Option<String>,
    /// On an empty database, create the first account with this API token (otherwise one is
    /// generated and printed once).
    #[arg(long, env = "VOXFLOW_BOOTSTRAP_TOKEN")]
    bootstrap_token: Option<String>,
    /// Configuration file (TOML) with SIP trunks to create or update at start; see
    /// `docs/configuration.md`.
    #[arg(long, env = "VOXFLOW_CONFIG")]
    config: Option<PathBuf>,
    /// Make sure the demo IVR flow exists, bound to the number 1000.
    #[arg(long, env = "VOXFLOW_DEMO")]
    demo: bool,
    /// IP address to announce in SDP and Contact when listening on 0.0.0.0.
    #[arg(long, env = "VOXFLOW_ADVERTISE_IP")]
    advertise_ip: Option<std::net::IpAddr>,
    /// Media worker threads (0: one per core).
    #[arg(long, env = "VOXFLOW_MEDIA_WORKERS", default_value_t = 0)]
    media_workers: usize,
    /// Most actions one flow run may execute before it is stopped.
    #[arg(long, env = "VOXFLOW_MAX_FLOW_EXECUTIONS", default_value_t = 100)]
    max_flow_executions: u32,
    /// Digest realm for device authentication. Device passwords are stored as hashes over it:
    /// changing it invalidates them.
    #[arg(long, env = "VOXFLOW_SIP_REALM", default_value = "voxflow")]
    sip_realm: String,
    /// Digest algorithms to challenge devices with, most preferred first: `md5`, `sha256`.
    /// Many phones read only the first challenge, hence MD5 first by default.
    #[arg(long, env = "VOXFLOW_SIP_DIGEST", default_value = "md5,sha256", value_parser = parse_digest)]
    sip_digest: DigestList,
    /// Which inbound calls are taken: `open` (anyone may call a bound number) or `restricted`
    /// (only the number's account's devices and trunk allow-lists).
    #[arg(long, env = "VOXFLOW_SIP_INBOUND", default_value = "open", value_parser = ["open", "restricted"])]
    sip_inbound: String,
    /// Send every outbound call to sip and tel destinations through this proxy (a SIP URI, e.g.
    /// `sip:sbc.example.net:5060`).
    #[arg(long, env = "VOXFLOW_SIP_OUTBOUND_PROXY", value_parser = parse_sip_uri)]
    sip_outbound_proxy: Option<sip::Uri>,
    /// Seconds between OPTIONS keep-alives to registered contacts (and registration expiry).
    #[arg(long, env = "VOXFLOW_SIP_KEEPALIVE", default_value_t = 30)]
    sip_keepalive: u64,
    /// MiB of downloaded audio (`play` URLs) kept on disk under DATA_DIR/cache/audio, least
    /// recently used evicted first (0 keeps none).
    #[arg(long, env = "VOXFLOW_AUDIO_CACHE_MB", default_value_t = 512)]
    audio_cache_mb: u64,
    /// Seconds without RTP (or RTCP) from a caller, not on hold, after which the call is hung
    /// up with reason `rtp_timeout` (0 never).
    #[arg(long, env = "VOXFLOW_RTP_TIMEOUT", default_value_t = 60)]
    rtp_timeout: u64,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `voxflow_runtime=debug`.
    #[arg(long, env = "VOXFLOW_LOG", default_value = "info")]
    log: String,
}

#[derive(Subcommand)]
enum FlowCmd {
    /// Validate a flow file (a JSON array of actions, or an object with `actions`). Exit code 0
    /// when valid, 1 when not.
    Check {
        /// The flow file.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The `--sip-digest` list.
#[derive(Clone, Debug)]
struct DigestList(Vec<sip::auth::Algorithm>);

fn parse_digest(s: &str) -> Result<DigestList, String> {
    let list = s
        .split(',')
        .map(|a| match a.trim().to_ascii_lowercase().as_str() {
            "md5" => Ok(sip::auth::Algorithm::Md5),
            "sha256" | "sha-256" => Ok(sip::auth::Algorithm::Sha256),
            other => Err(format!(
                "unknown digest algorithm {other:?}: use md5 and/or sha256"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DigestList(list))
}

fn parse_sip_uri(s: &str) -> Result<sip::Uri, String> {
    let text = if s.starts_with("sip:") {
        s.to_owned()
    } else {
        format!("sip:{s}")
    };
    sip::Uri::parse(&text).map_err(|e| format!("not a SIP URI: {e}"))
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (low, high) = s
        .split_once('-')
        .ok_or("expected LOW-HIGH, e.g. 20000-29999")?;
    let low: u16 = low
        .trim()
        .parse()
        .map_err(|_| format!("bad port {low:?}"))?;
    let high: u16 = high
        .trim()
        .parse()
        .map_err(|_| format!("bad port {high:?}"))?;
    if low == 0 || high <= low {
        return Err("the range needs 0 < LOW < HIGH".into());
    }
    Ok((low, high))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(args) => serve(*args),
        Cmd::Flow(FlowCmd::Check { file, json }) => flow_check(&file, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("voxflow: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn flow_check(file: &PathBuf, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let actions = match value.get("actions") {
        Some(a) => a.clone(),
        None => value,
    };
    let (ok, diagnostics) = match flow::compile(&actions) {
        Ok(program) => (true, program.warnings().to_vec()),
        Err(diagnostics) => (false, diagnostics),
    };
    if json {
        let items: Vec<_> = diagnostics
            .iter()
            .map(|d| {
                serde_json::json!({
                    "severity": if d.severity == flow::Severity::Error { "error" } else { "warning" },
                    "path": d.path,
                    "message": d.message,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "valid": ok, "diagnostics": items })
        );
    } else {
        for d in &diagnostics {
            let level = if d.severity == flow::Severity::Error {
                "error"
            } else {
                "warning"
            };
            println!("{level}: {}: {}", d.path, d.message);
        }
        println!(
            "{}: {}",
            file.display(),
            if ok { "valid" } else { "invalid" }
        );
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

fn serve(args: Serve) -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).context("bad --log filter")?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    raise_open_files_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(args))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Every call holds two sockets (RTP and RTCP) besides SIP connections, so the usual soft limit
/// of 1024 open files would cap a server near 500 calls: raise it to the hard limit.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open files limit"),
            Err(e) => tracing::warn!(error = %e, soft, "could not raise the open files limit"),
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not read the open files limit"),
    }
}

async fn run(args: Serve) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.data_dir.join("voxflow.db").display()),
    };
    if !url.starts_with("sqlite:") {
        bail!("unsupported --database-url {url:?}: this build supports SQLite (sqlite://PATH)");
    }
    let store = Arc::new(
        store::SqliteStore::open(&url)
            .await
            .context("opening the database")?,
    );
    let closed = store.close_live_calls("restart", &store::utc_now()).await?;
    let lost = store
        .close_live_recordings("error: restart", &store::utc_now())
        .await?;
    if lost > 0 {
        tracing::warn!(lost, "recordings interrupted by a restart marked failed");
    }
    if closed > 0 {
        tracing::warn!(closed, "closed calls left live by a previous run");
    }
    let token = store
        .bootstrap(args.bootstrap_token.as_deref(), &store::utc_now())
        .await?;
    if let Some(token) = &token
        && args.bootstrap_token.is_none()
    {
        println!("voxflow: created the first account; its API token (shown once): {token}");
    }
    if args.demo {
        demo::ensure(store.as_ref(), token.as_deref()).await?;
    }
    if let Some(path) = &args.config {
        let file = config::load(path)?;
        let account = store
            .first_account()
            .await?
            .context("no account for the config file's trunks")?;
        config::apply(&file, store.as_ref(), account.id).await?;
    }

    let store_dyn: Arc<dyn Store> = store.clone();
    let runtime = runtime::Runtime::start(
        runtime::Config {
            sip_listen: args.sip_listen,
            rtp_ports: args.rtp_ports,
            data_dir: args.data_dir.clone(),
            media_workers: args.media_workers,
            advertise_ip: args.advertise_ip,
            realm: args.sip_realm.clone(),
            digest_algorithms: args.sip_digest.0.clone(),
            keepalive_interval: Duration::from_secs(args.sip_keepalive.max(1)),
            audio_cache_max_bytes: args.audio_cache_mb.saturating_mul(1024 * 1024),
            rtp_timeout: Duration::from_secs(args.rtp_timeout),
            outbound_proxy: args.sip_outbound_proxy.clone(),
            inbound_policy: if args.sip_inbound == "restricted" {
                runtime::InboundPolicy::Restricted
            } else {
                runtime::InboundPolicy::Open
            },
            flow_limits: flow::Limits {
                max_executions: args.max_flow_executions,
                ..flow::Limits::default()
            },
        },
        store_dyn.clone(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("binding HTTP on {}", args.http_listen))?;
    let http_addr = listener.local_addr()?;
    let runtime = Arc::new(runtime);
    let app = api::router(api::AppState {
        store: store_dyn,
        engine: runtime.clone(),
    });
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });
    println!(
        "voxflow ready: http=http://{http_addr} sip={} (udp+tcp)",
        runtime.sip_addr()
    );
    if args.demo {
        println!(
            "voxflow: demo IVR on number {}: call sip:{}@{} with any softphone",
            demo::NUMBER,
            demo::NUMBER,
            runtime.sip_addr()
        );
    }

    wait_for_signal().await;
    tracing::info!("shutting down: hanging up active calls");
    runtime.shutdown(Duration::from_secs(5)).await;
    let _ = stop_http.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
