//! The `voxflow` binary: command line, configuration, logging, and wiring of store, runtime and API.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use store::Store;

mod config;
mod demo;
mod redact;

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
    /// Database URL: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB` (migrations run at
    /// start); default: SQLite file `voxflow.db` in the data dir.
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
    /// Directory `play` may read local files from (absolute paths, `file://`), besides
    /// DATA_DIR/media; repeat it (or separate with commas in the environment) for several.
    /// Files anywhere else are refused.
    #[arg(long = "media-dir", env = "VOXFLOW_MEDIA_DIRS", value_delimiter = ',')]
    media_dirs: Vec<PathBuf>,
    /// Seconds without RTP (or RTCP) from a caller, not on hold, after which the call is hung
    /// up with reason `rtp_timeout` (0 never).
    #[arg(long, env = "VOXFLOW_RTP_TIMEOUT", default_value_t = 60)]
    rtp_timeout: u64,
    /// Let `play`, `fetch` and `webhook_send` reach private, loopback, link-local and other
    /// non-public addresses (refused by default: the outbound URL guard). Only for trusted flow
    /// authors or a test bench.
    #[arg(long, env = "VOXFLOW_ALLOW_PRIVATE_URLS", value_parser = clap::builder::BoolishValueParser::new())]
    allow_private_urls: bool,
    /// Seconds one webhook delivery attempt may take (connect to response head).
    #[arg(long, env = "VOXFLOW_WEBHOOK_TIMEOUT", default_value_t = 10)]
    webhook_timeout: u64,
    /// Longest wait between two attempts of a failing webhook delivery, seconds (retries start
    /// at 1 s and double).
    #[arg(long, env = "VOXFLOW_WEBHOOK_MAX_RETRY_DELAY", default_value_t = 60)]
    webhook_max_retry_delay: u64,
    /// First pause of a webhook target after 5 failures in a row, seconds (doubles while it
    /// keeps failing, up to 10 minutes); deliveries wait, none are dropped.
    #[arg(long, env = "VOXFLOW_WEBHOOK_BREAKER_PAUSE", default_value_t = 30)]
    webhook_breaker_pause: u64,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `voxflow_runtime=debug`.
    #[arg(long, env = "VOXFLOW_LOG", default_value = "info")]
    log: String,
    /// Log phone numbers and SIP user parts as they are. By default they are masked in every
    /// log line (`sip:***@host`, `+***67`); see `docs/configuration.md`.
    #[arg(long, env = "VOXFLOW_LOG_PII", value_parser = clap::builder::BoolishValueParser::new())]
    log_pii: bool,
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
        /// The flow runs without a call (started by the API): refuse actions that need one.
        #[arg(long)]
        no_call: bool,
    },
    /// Draw a flow file as a diagram (Graphviz DOT or Mermaid). An invalid flow prints its
    /// errors and exits 1.
    Graph {
        /// The flow file (a JSON array of actions, or an object with `name` and `actions`).
        file: PathBuf,
        /// Output format: `dot` (render with `dot -Tsvg`) or `mermaid` (`flowchart TD`).
        #[arg(long, default_value = "dot", value_parser = ["dot", "mermaid"])]
        format: String,
        /// Write the diagram to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Dry-run a flow file offline in simulated time against a scripted caller (DTMF, hangup)
    /// and scripted outside world (HTTP replies, called parties, AMD) and print what happened.
    /// Exit code 1 when the flow does not compile, 0 otherwise.
    Run {
        /// The flow file (a JSON array of actions, or an object with `name` and `actions`).
        file: PathBuf,
        /// Keys the caller presses at a time, e.g. `1@5` or `12#@7.5` (seconds from the start;
        /// keys 100 ms apart). Repeatable; added to the script's.
        #[arg(long, value_name = "DIGITS@SECONDS", value_parser = parse_dtmf_at)]
        dtmf: Vec<(String, u64)>,
        /// A simulation script (JSON): dtmf, start_time, variables, http, flows, calls, amd,
        /// hangup_at_ms, answered, max_ms, … (see `examples/flows/README.md`).
        #[arg(long, value_name = "SCRIPT.json")]
        script: Option<PathBuf>,
        /// The wall-clock start (RFC 3339, e.g. `2026-11-23T09:00:00Z`) for
        /// `condition_datetime`; overrides the script's.
        #[arg(long, value_name = "RFC3339")]
        start: Option<String>,
        /// An initial variable, `key=value`. Repeatable; overrides the script's.
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_var)]
        var: Vec<(String, String)>,
        /// Print the full report as JSON.
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
        Cmd::Flow(FlowCmd::Check {
            file,
            json,
            no_call,
        }) => flow_check(&file, json, no_call),
        Cmd::Flow(FlowCmd::Graph {
            file,
            format,
            output,
        }) => flow_graph(&file, &format, output.as_deref()),
        Cmd::Flow(FlowCmd::Run {
            file,
            dtmf,
            script,
            start,
            var,
            json,
        }) => flow_run(&file, &dtmf, script.as_deref(), start.as_deref(), var, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("voxflow: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Read a flow file: a JSON array of actions, or an object with `actions` (and maybe `name`).
/// Returns the name (if any) and the actions value.
fn read_flow_file(file: &std::path::Path) -> anyhow::Result<(Option<String>, serde_json::Value)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let name = value
        .get("name")
        .and_then(serde_json::Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .map(str::to_owned);
    let actions = match value.get("actions") {
        Some(a) => a.clone(),
        None => value,
    };
    Ok((name, actions))
}

fn flow_check(
    file: &std::path::Path,
    json: bool,
    no_call: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let (_, actions) = read_flow_file(file)?;
    let compiled = if no_call {
        flow::compile_without_call(&actions)
    } else {
        flow::compile(&actions)
    };
    let (ok, diagnostics) = match compiled {
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

/// `voxflow flow graph`: the diagram goes to `output` or standard output; compile errors (and
/// warnings) go to standard error.
fn flow_graph(
    file: &std::path::Path,
    format: &str,
    output: Option<&std::path::Path>,
) -> anyhow::Result<std::process::ExitCode> {
    let (name, actions) = read_flow_file(file)?;
    let program = match flow::compile(&actions) {
        Ok(program) => program,
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!("{}: invalid", file.display());
            return Ok(std::process::ExitCode::from(1));
        }
    };
    for d in program.warnings() {
        eprintln!("{d}");
    }
    let title = name.unwrap_or_else(|| {
        file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    });
    let diagram = match format {
        "mermaid" => flow::to_mermaid(&program),
        _ => flow::to_dot(&program, &title),
    };
    match output {
        Some(path) => {
            std::fs::write(path, diagram).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{diagram}"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `--dtmf DIGITS@SECONDS`: the keys and the time in ms.
fn parse_dtmf_at(s: &str) -> Result<(String, u64), String> {
    let (digits, seconds) = s
        .rsplit_once('@')
        .ok_or("expected DIGITS@SECONDS, e.g. 1@5 or 12#@7.5")?;
    let seconds: f64 = seconds
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && (0.0..=604_800.0).contains(s))
        .ok_or_else(|| format!("bad time {seconds:?}: seconds from the start, e.g. 5 or 7.5"))?;
    let mut probe = flow::Script::default();
    probe.press(digits, 0)?;
    // In range by the filter above.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (seconds * 1000.0).round() as u64;
    Ok((digits.to_owned(), ms))
}

/// `--var key=value`.
fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err("expected KEY=VALUE".into()),
    }
}

/// `voxflow flow run`: simulate a flow file and print the transcript (or the JSON report).
fn flow_run(
    file: &std::path::Path,
    dtmf: &[(String, u64)],
    script_file: Option<&std::path::Path>,
    start: Option<&str>,
    vars: Vec<(String, String)>,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let (name, actions) = read_flow_file(file)?;
    let mut script = match script_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            flow::Script::from_json(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => flow::Script::default(),
    };
    for (digits, at_ms) in dtmf {
        script
            .press(digits, *at_ms)
            .map_err(|e| anyhow::anyhow!("--dtmf {digits}: {e}"))?;
    }
    if let Some(start) = start {
        script.start_time = start.parse().map_err(|e| anyhow::anyhow!("--start: {e}"))?;
    }
    script.variables.extend(vars);
    let program = match flow::compile(&actions) {
        Ok(program) => program,
        Err(diagnostics) => {
            if json {
                let items: Vec<_> = diagnostics
                    .iter()
                    .map(|d| serde_json::json!({"severity": "error", "path": d.path, "message": d.message}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "valid": false, "diagnostics": items })
                );
            } else {
                for d in &diagnostics {
                    println!("error: {}: {}", d.path, d.message);
                }
                println!("{}: invalid", file.display());
            }
            return Ok(std::process::ExitCode::from(1));
        }
    };
    for d in program.warnings() {
        eprintln!("warning: {}: {}", d.path, d.message);
    }
    let report = flow::simulate(Arc::new(program), &script);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let title = name.unwrap_or_else(|| file.display().to_string());
        print!("{}", transcript(&title, &script, &report));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The readable form of a simulation report.
fn transcript(title: &str, script: &flow::Script, report: &flow::Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "flow: {title}\nstart: {}\n", script.start_time);
    for line in &report.log {
        let _ = writeln!(out, "  {line}");
    }
    let path: Vec<String> = report
        .executed
        .iter()
        .map(|e| {
            let id =
                e.id.clone()
                    .unwrap_or_else(|| format!("[{}] {}", e.index, e.action_type));
            if e.stack > 0 {
                format!("{id} (stack {})", e.stack)
            } else {
                id
            }
        })
        .collect();
    let _ = writeln!(out, "\npath: {}", path.join(" -> "));
    let lists = [
        ("said", &report.spoken),
        ("played", &report.played),
        ("digits sent", &report.digits_sent),
    ];
    for (label, items) in lists {
        if !items.is_empty() {
            let _ = writeln!(out, "{label}:");
            for item in items {
                let _ = writeln!(out, "  {item:?}");
            }
        }
    }
    for w in &report.webhooks {
        let outcome = w.status.map_or_else(
            || w.error.clone().unwrap_or_default(),
            |s| format!("HTTP {s}"),
        );
        let _ = writeln!(out, "webhook: {} {} -> {outcome}", w.method, w.uri);
    }
    for c in &report.calls {
        for leg in &c.legs {
            let said = leg
                .run
                .as_ref()
                .map(|r| format!(", said {:?}", r.spoken))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "call placed: {} -> {}{said}",
                leg.destination.target,
                leg.result.as_str()
            );
        }
    }
    if !report.variables.is_empty() {
        let _ = writeln!(out, "variables:");
        for (k, v) in &report.variables {
            let _ = writeln!(out, "  {k} = {v:?}");
        }
    }
    let _ = writeln!(
        out,
        "ended: {} after {}.{:03} s",
        report.end_reason,
        report.duration_ms / 1000,
        report.duration_ms % 1000
    );
    out
}

fn serve(args: Serve) -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).context("bad --log filter")?,
        )
        .with_writer(redact::RedactingMakeWriter::new(
            std::io::stderr,
            args.log_pii,
        ))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if args.log_pii {
        tracing::warn!("--log-pii: phone numbers and SIP user parts are logged unmasked");
    }
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
            Ok(()) => tracing::debug!(soft_was = soft, now = hard, "raised the open files limit"),
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
    let store = store::open(&url).await.context("opening the database")?;
    let closed = store.close_live_calls("restart", &store::utc_now()).await?;
    let lost = store
        .close_live_recordings("error: restart", &store::utc_now())
        .await?;
    if lost > 0 {
        tracing::warn!(lost, "recordings interrupted by a restart marked failed");
    }
    let stopped = store
        .close_live_activeflows("restart", &store::utc_now())
        .await?;
    if stopped > 0 {
        tracing::warn!(stopped, "activeflows interrupted by a restart ended");
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

    let store_dyn: Arc<dyn Store> = Arc::clone(&store);
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
            media_dirs: args.media_dirs.clone(),
            rtp_timeout: Duration::from_secs(args.rtp_timeout),
            allow_private_urls: args.allow_private_urls,
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
            webhooks: runtime::webhooks::WebhookConfig {
                attempt_timeout: Duration::from_secs(args.webhook_timeout.max(1)),
                max_retry_delay: Duration::from_secs(args.webhook_max_retry_delay.max(1)),
                breaker_pause: Duration::from_secs(args.webhook_breaker_pause.max(1)),
                ..runtime::webhooks::WebhookConfig::default()
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
