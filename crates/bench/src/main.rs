//! `weir-bench`: weir side by side with its peers and the no-gateway limit, in one run.
//!
//! ```text
//! cargo run --release -p weir-bench                 # full run (about 15 minutes)
//! cargo run --release -p weir-bench -- --quick      # seconds: proves the harness works
//! cargo run --release -p weir-bench -- --out docs/benchmarks-results.md
//! ```
//!
//! Every server runs in a child process of its own (`weir-bench serve KIND`, or the
//! connect-node reference server of `web/interop`); the load generator is this process. Each
//! workload runs against every contender in turn, repetition by repetition (interleaved), after
//! a warm-up; figures are medians over repetitions with their spread. Everything started is
//! stopped at the end. Nothing here asserts anything about speed.

mod caller;
mod serve;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use prost::Message as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc};
use weir_client::HttpVersion;
use weir_testservice::pb::{
    Payload, ResponseParameters, SimpleRequest, StreamingOutputCallRequest,
};

use caller::{Caller, Stream};

/// Benchmark harness: weir, its peers and the no-gateway limit, side by side in one run.
#[derive(Debug, Parser)]
#[command(name = "weir-bench")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,

    /// A run of seconds that only proves the harness works (CI).
    #[arg(long)]
    quick: bool,

    /// Also write the report (Markdown) to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Only these sections (comma-separated: unary, stream, cancel, memory, soak, browser).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,

    /// Minutes of the soak section (mixed unary calls, streams and cancellations against the
    /// gateway and the layer; RSS, open files and threads at start and end). A full run
    /// includes it only when this or `--only soak` is given (default then: 30 minutes); a
    /// quick run soaks for 3 seconds.
    #[arg(long, value_name = "MINUTES")]
    soak_minutes: Option<f64>,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Run one server (used by the harness itself).
    #[command(hide = true)]
    Serve {
        #[arg(value_enum)]
        kind: serve::Kind,
        #[arg(long)]
        upstream: Option<u16>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir-bench: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Sub::Serve { kind, upstream }) => runtime.block_on(serve::run(kind, upstream)),
        None => runtime.block_on(bench(cli.quick, cli.out, cli.only, cli.soak_minutes)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Settings of one run.
struct Plan {
    quick: bool,
    reps: usize,
    warmup: Duration,
    unary_time: Duration,
    concurrency: Vec<usize>,
    /// (message size, messages per stream)
    streams: Vec<(usize, usize)>,
    cancel_samples: usize,
    open_streams: Vec<usize>,
    aborted_calls: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                reps: 1,
                warmup: Duration::from_millis(50),
                unary_time: Duration::from_millis(150),
                concurrency: vec![1, 16],
                streams: vec![(64, 2000), (1024, 1000), (65536, 20)],
                cancel_samples: 3,
                open_streams: vec![50, 200],
                aborted_calls: 300,
            }
        } else {
            Plan {
                quick,
                reps: 3,
                warmup: Duration::from_millis(500),
                unary_time: Duration::from_secs(2),
                concurrency: vec![1, 16, 64],
                streams: vec![(64, 100_000), (1024, 50_000), (65536, 2000)],
                cancel_samples: 100,
                open_streams: vec![1000, 10_000],
                aborted_calls: 100_000,
            }
        }
    }
}

/// A server process the harness started.
struct Proc {
    child: Child,
    pid: u32,
    url: String,
    webtransport: Option<WebTransportTarget>,
}

type Events = Arc<Mutex<mpsc::UnboundedReceiver<u64>>>;

/// Starts a child, waits for its `listening on` line, forwards its cancellation events.
async fn start(mut command: Command, what: &str) -> Result<(Proc, Events), String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let pid = child.id().ok_or_else(|| format!("{what} exited at once"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut webtransport = None;
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(target) = line.strip_prefix("webtransport ") {
                webtransport = Some(
                    WebTransportTarget::parse(target)
                        .ok_or_else(|| format!("{what}: bad line {line:?}"))?,
                );
            }
            if let Some(at) = line.find("listening on ") {
                return Ok(line[at + "listening on ".len()..].trim().to_owned());
            }
        }
        Err(format!("{what} exited before listening"))
    })
    .await
    .map_err(|_| format!("{what} did not start within 60 s"))??;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(micros) = line.strip_prefix("cancelled ") {
                let _ = tx.send(
                    micros
                        .trim()
                        .parse()
                        .unwrap_or_else(|_| serve::now_micros()),
                );
            } else if line.contains("\"event\":\"cancelled\"") {
                // connect-node's JSON event: timestamped when read.
                let _ = tx.send(serve::now_micros());
            }
        }
    });
    Ok((
        Proc {
            child,
            pid,
            url,
            webtransport,
        },
        Arc::new(Mutex::new(rx)),
    ))
}

fn self_command(kind: &str, upstream: Option<u16>) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.args(["serve", kind]);
    if let Some(port) = upstream {
        command.args(["--upstream", &port.to_string()]);
    }
    Ok(command)
}

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// Who is measured.
#[derive(Clone)]
struct Contender {
    name: &'static str,
    url: String,
    native: bool,
    events: Events,
    /// Where it serves gRPC over WebTransport, if it does.
    webtransport: Option<WebTransportTarget>,
    /// The process whose memory is the contender's (none for the native limit).
    pid: Option<u32>,
    /// The server process whose CPU time per call is reported: the contender's own, the
    /// upstream's for the native limit.
    cpu_pid: u32,
}

impl Contender {
    fn versions(&self) -> Vec<Wire> {
        if self.native {
            vec![Wire::Http2]
        } else if self.webtransport.is_some() {
            vec![Wire::Http1, Wire::Http2, Wire::WebTransport]
        } else {
            vec![Wire::Http1, Wire::Http2]
        }
    }

    async fn caller(&self, transport: Wire) -> Result<Caller, String> {
        match (transport, &self.webtransport) {
            _ if self.native => Caller::native(&self.url).await,
            (Wire::Http1, _) => Caller::web(&self.url, HttpVersion::Http1).await,
            (Wire::Http2, _) => Caller::web(&self.url, HttpVersion::Http2).await,
            (Wire::WebTransport, Some(wt)) => Caller::webtransport(&wt.url, &wt.hashes).await,
            (Wire::WebTransport, None) => Err(format!("{} serves no WebTransport", self.name)),
        }
    }
}

/// How a contender is called: gRPC-Web over HTTP/1.1 or HTTP/2 (native gRPC over HTTP/2 for
/// the limit), or gRPC over WebTransport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Http1,
    Http2,
    WebTransport,
}

fn proto(transport: Wire) -> &'static str {
    match transport {
        Wire::Http1 => "HTTP/1.1",
        Wire::Http2 => "HTTP/2",
        Wire::WebTransport => "WebTransport",
    }
}

/// A WebTransport listener of a contender: its session URL and development certificate.
#[derive(Debug, Clone)]
struct WebTransportTarget {
    url: String,
    hashes: Vec<[u8; 32]>,
}

impl WebTransportTarget {
    /// Reads `URL HEX[,HEX…]`, as `weir-bench serve` prints it after `webtransport `.
    fn parse(line: &str) -> Option<WebTransportTarget> {
        let (url, hashes) = line.trim().split_once(' ')?;
        let hashes = hashes
            .split(',')
            .map(|hex| {
                let bytes: Option<Vec<u8>> = (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    })
                    .collect();
                <[u8; 32]>::try_from(bytes?.as_slice()).ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(WebTransportTarget {
            url: url.to_owned(),
            hashes,
        })
    }
}

async fn bench(
    quick: bool,
    out: Option<PathBuf>,
    only: Vec<String>,
    soak_minutes: Option<f64>,
) -> Result<(), String> {
    let plan = Plan::new(quick);
    let wants = |section: &str| only.is_empty() || only.iter().any(|s| s == section);
    let soak_time = if only.iter().any(|s| s == "soak") || soak_minutes.is_some() || quick {
        let minutes = soak_minutes.unwrap_or(if quick { 0.05 } else { 30.0 });
        Some(Duration::from_secs_f64(minutes.max(0.0) * 60.0))
    } else {
        None
    };
    let mut report = String::new();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let _ = writeln!(
        report,
        "## Run\n\ncommand: `{command}` ({} mode)\n",
        if quick { "quick" } else { "full" }
    );
    report.push_str(&machine());

    // Start every contender.
    let mut procs = Vec::new();
    let (native, native_events) =
        start(self_command("tonic-native", None)?, "tonic-native").await?;
    let native_port = native
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("bad url")?;
    let (gateway, _) = start(
        self_command("weir-gateway", Some(native_port))?,
        "weir-gateway",
    )
    .await?;
    let native_events_for_log = native_events.clone();
    let (logging, _) = start(
        self_command("weir-gateway-access-log", Some(native_port))?,
        "weir-gateway-access-log",
    )
    .await?;
    let (layer, layer_events) = start(self_command("weir-layer", None)?, "weir-layer").await?;
    let (tonic_web, tonic_web_events) =
        start(self_command("tonic-web", None)?, "tonic-web").await?;
    let mut contenders = vec![
        Contender {
            name: "weir layer",
            url: layer.url.clone(),
            native: false,
            events: layer_events,
            webtransport: layer.webtransport.clone(),
            pid: Some(layer.pid),
            cpu_pid: layer.pid,
        },
        Contender {
            name: "tonic-web",
            url: tonic_web.url.clone(),
            native: false,
            events: tonic_web_events,
            webtransport: None,
            pid: Some(tonic_web.pid),
            cpu_pid: tonic_web.pid,
        },
        Contender {
            name: "weir gateway → tonic",
            url: gateway.url.clone(),
            native: false,
            events: native_events.clone(),
            webtransport: gateway.webtransport.clone(),
            pid: Some(gateway.pid),
            cpu_pid: gateway.pid,
        },
    ];
    let interop = web_dir().join("interop");
    if web_dir().join("node_modules/tsx").exists() {
        let mut command = Command::new("node");
        command
            .args([
                "--import",
                "tsx",
                "src/reference-server.ts",
                "--listen",
                "127.0.0.1:0",
                "--allow-origin",
                "*",
            ])
            .current_dir(&interop);
        // Its handlers log every aborted write; keep that out of the report.
        command.stderr(Stdio::null());
        let (node, events) = start(command, "connect-node reference server").await?;
        contenders.push(Contender {
            name: "connect-node",
            url: node.url.clone(),
            native: false,
            events,
            webtransport: None,
            pid: Some(node.pid),
            cpu_pid: node.pid,
        });
        procs.push(node);
    } else {
        required("web/node_modules is missing (`cd web && npm ci`)")?;
        let _ = writeln!(
            report,
            "connect-node: SKIPPED (web/node_modules missing; run `cd web && npm ci`)\n"
        );
    }
    contenders.push(Contender {
        name: "native gRPC, no gateway (limit)",
        url: native.url.clone(),
        native: true,
        events: native_events,
        webtransport: None,
        pid: None,
        cpu_pid: native.pid,
    });
    // The access log's cost shows in the unary table only, where per-call costs do.
    let mut unary_contenders = contenders.clone();
    let at = unary_contenders
        .iter()
        .position(|c| c.name.starts_with("weir gateway"))
        .map_or(unary_contenders.len(), |i| i + 1);
    unary_contenders.insert(
        at,
        Contender {
            name: "weir gateway + access log → tonic",
            url: logging.url.clone(),
            native: false,
            events: native_events_for_log,
            webtransport: logging.webtransport.clone(),
            pid: Some(logging.pid),
            cpu_pid: logging.pid,
        },
    );
    procs.extend([native, gateway, logging, layer, tonic_web]);

    // Each section is printed (and written) as soon as it is done.
    let emit = |report: &mut String, section: &str| -> Result<(), String> {
        println!("{section}");
        report.push_str(section);
        if let Some(path) = &out {
            std::fs::write(path, report.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    };
    let header = std::mem::take(&mut report);
    emit(&mut report, &header)?;
    let result = async {
        if wants("unary") {
            let section = unary(&plan, &unary_contenders).await?;
            emit(&mut report, &section)?;
        }
        if wants("stream") {
            let section = streaming(&plan, &contenders).await?;
            emit(&mut report, &section)?;
        }
        if wants("cancel") {
            let section = cancellation(&plan, &contenders).await?;
            emit(&mut report, &section)?;
        }
        if wants("memory") {
            let section = memory(&plan, &contenders).await?;
            emit(&mut report, &section)?;
        }
        if let Some(time) = soak_time {
            let section = soak(time, &contenders).await?;
            emit(&mut report, &section)?;
        }
        Ok::<(), String>(())
    }
    .await;

    // Stop everything we started, whatever happened.
    for proc in &mut procs {
        let _ = proc.child.start_kill();
    }
    for proc in &mut procs {
        let _ = tokio::time::timeout(Duration::from_secs(5), proc.child.wait()).await;
    }
    result?;
    if wants("browser") {
        let section = browser(&plan).await?;
        emit(&mut report, &section)?;
    }
    Ok(())
}

/// A peer the run cannot reach: skipped with a note in the report, unless `WEIR_REQUIRE` is
/// set (to anything but empty, `0` or `false`, as `scripts/test` does), which makes it an error.
fn required(problem: &str) -> Result<(), String> {
    let require = std::env::var("WEIR_REQUIRE")
        .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    if require {
        Err(format!("WEIR_REQUIRE is set but {problem}"))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Statistics

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    values[values.len() / 2]
}

/// Spread of repetitions: (max − min) / median, in percent.
fn spread(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    let m = median(&mut v);
    let (min, max) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    if m > 0.0 {
        (max - min) / m * 100.0
    } else {
        0.0
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index.min(sorted.len() - 1)])
}

fn ratio(value: f64, reference: f64) -> String {
    if reference > 0.0 && value.is_finite() {
        format!("{:.2}", value / reference)
    } else {
        "–".into()
    }
}

// ---------------------------------------------------------------------------------------
// Unary

fn unary_request() -> Bytes {
    SimpleRequest {
        response_size: 64,
        payload: Some(Payload {
            body: vec![1; 64],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

/// Runs `concurrency` loops of unary calls for `time`; returns (calls/s, latencies in µs).
async fn unary_run(
    caller: &Caller,
    concurrency: usize,
    time: Duration,
) -> Result<(f64, Vec<u32>), String> {
    let request = unary_request();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let caller = caller.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // Bounded by time and by count.
            while start.elapsed() < time && latencies.len() < 10_000_000 {
                let t = Instant::now();
                caller.unary(request.clone()).await?;
                latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((all.len() as f64 / elapsed, all))
}

/// Calls/s and server CPU µs per call of each repetition, and every latency (µs).
type UnaryCell = (Vec<f64>, Vec<f64>, Vec<u32>);

/// CPU time a process's threads have run so far, in µs (from `/proc/PID/task/*/schedstat`;
/// threads that exited are not counted, tokio's workers do not exit). Unlike wall-clock
/// throughput, this hardly depends on what else the machine runs.
fn cpu_micros(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos = 0u64;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanos as f64 / 1000.0)
}

async fn unary(plan: &Plan, contenders: &[Contender]) -> Result<String, String> {
    eprintln!("unary ...");
    // (contender, version, concurrency) → (rps per rep, latencies pooled)
    let mut cells: BTreeMap<(usize, usize, usize), UnaryCell> = BTreeMap::new();
    for _rep in 0..plan.reps {
        for (ci, contender) in contenders.iter().enumerate() {
            for (vi, version) in contender.versions().into_iter().enumerate() {
                let caller = contender.caller(version).await?;
                for (ki, &concurrency) in plan.concurrency.iter().enumerate() {
                    unary_run(&caller, concurrency, plan.warmup).await?;
                    let cpu_before = cpu_micros(contender.cpu_pid);
                    let (rps, latencies) = unary_run(&caller, concurrency, plan.unary_time).await?;
                    let cpu = cpu_before
                        .zip(cpu_micros(contender.cpu_pid))
                        .map_or(f64::NAN, |(a, b)| (b - a) / latencies.len().max(1) as f64);
                    let cell = cells.entry((ci, vi, ki)).or_default();
                    cell.0.push(rps);
                    cell.1.push(cpu);
                    cell.2.extend(latencies);
                }
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Unary calls\n\n`UnaryCall`, 64-byte payload each way, binary gRPC-Web (native gRPC for the limit; WebTransport: gRPC over WebTransport, every call of a cell on one session, so one QUIC connection). {} × {:?} per cell after a {:?} warm-up; calls/s is the median of the repetitions (± spread, max−min over median); latencies pooled over them. Ratio: calls/s over the native limit's at the same concurrency. Server CPU: CPU time of the server process per call (median of the repetitions; for the gateway its own process, without its upstream's; for the limit the upstream's), which depends far less on what else the machine runs than calls/s.\n",
        plan.reps, plan.unary_time, plan.warmup
    );
    let limit = contenders.iter().position(|c| c.native);
    for (ki, &concurrency) in plan.concurrency.iter().enumerate() {
        let _ = writeln!(
            out,
            "### concurrency {concurrency}\n\n| contender | HTTP | calls/s | ± | p50 µs | p99 µs | × limit | server CPU µs/call |\n|---|---|---:|---:|---:|---:|---:|---:|"
        );
        let limit_rps = limit
            .and_then(|li| cells.get(&(li, 0, ki)))
            .map_or(f64::NAN, |c| median(&mut c.0.clone()));
        for (ci, contender) in contenders.iter().enumerate() {
            for (vi, version) in contender.versions().into_iter().enumerate() {
                let Some((rps, cpu, latencies)) = cells.get_mut(&(ci, vi, ki)) else {
                    continue;
                };
                latencies.sort_unstable();
                let m = median(&mut rps.clone());
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.0}% | {:.0} | {:.0} | {} | {:.1} |",
                    contender.name,
                    proto(version),
                    m,
                    spread(rps),
                    percentile(latencies, 0.5),
                    percentile(latencies, 0.99),
                    ratio(m, limit_rps),
                    median(&mut cpu.clone())
                );
            }
        }
        out.push('\n');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Server streaming

fn stream_request(size: usize, count: usize, interval_us: i32) -> Bytes {
    StreamingOutputCallRequest {
        response_parameters: (0..count)
            .map(|_| ResponseParameters {
                size: size as i32,
                interval_us,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

/// A stream that sends one message at once, then nothing for `interval_us`.
fn idle_request(interval_us: i32) -> Bytes {
    StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 8,
                ..Default::default()
            },
            ResponseParameters {
                size: 8,
                interval_us,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

/// Opens an idle stream: returns once its first message arrived.
async fn open_idle(caller: Caller, request: Bytes) -> Result<Stream, String> {
    let mut stream = caller.server_stream(request).await?;
    stream.next().await?.ok_or("idle stream ended")?;
    Ok(stream)
}

async fn drain(caller: &Caller, request: Bytes) -> Result<(u64, u64, f64), String> {
    let start = Instant::now();
    let mut stream = caller.server_stream(request).await?;
    let (mut messages, mut bytes) = (0u64, 0u64);
    while let Some(message) = stream.next().await? {
        messages += 1;
        bytes += message.len() as u64;
    }
    Ok((messages, bytes, start.elapsed().as_secs_f64()))
}

async fn streaming(plan: &Plan, contenders: &[Contender]) -> Result<String, String> {
    eprintln!("server streaming ...");
    // (size index, contender, version) → (messages/s, MB/s) per rep
    let mut cells: BTreeMap<(usize, usize, usize), Vec<(f64, f64)>> = BTreeMap::new();
    for rep in 0..=plan.reps {
        for (si, &(size, count)) in plan.streams.iter().enumerate() {
            // Repetition 0 is the warm-up, with a tenth of the messages.
            let count = if rep == 0 { (count / 10).max(1) } else { count };
            let request = stream_request(size, count, 0);
            for (ci, contender) in contenders.iter().enumerate() {
                for (vi, version) in contender.versions().into_iter().enumerate() {
                    let caller = contender.caller(version).await?;
                    let (messages, bytes, secs) = drain(&caller, request.clone()).await?;
                    if messages != count as u64 {
                        return Err(format!(
                            "{}: {messages} of {count} messages",
                            contender.name
                        ));
                    }
                    if rep > 0 {
                        cells
                            .entry((si, ci, vi))
                            .or_default()
                            .push((messages as f64 / secs, bytes as f64 / secs / 1e6));
                    }
                }
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Server-streaming throughput\n\n`StreamingOutputCall`, one stream per repetition, binary gRPC-Web (WebTransport: gRPC over WebTransport); message size is the payload (plus 5 bytes of protobuf framing); MB/s counts message bytes (10^6). Median of {} repetitions after a warm-up stream. Ratio: messages/s over the native limit's.\n",
        plan.reps
    );
    let limit = contenders.iter().position(|c| c.native);
    for (si, &(size, count)) in plan.streams.iter().enumerate() {
        let _ = writeln!(
            out,
            "### {size}-byte messages, {count} per stream\n\n| contender | HTTP | messages/s | ± | MB/s | × limit |\n|---|---|---:|---:|---:|---:|"
        );
        let limit_rate = limit
            .and_then(|li| cells.get(&(si, li, 0)))
            .map_or(f64::NAN, |v| {
                median(&mut v.iter().map(|x| x.0).collect::<Vec<_>>())
            });
        for (ci, contender) in contenders.iter().enumerate() {
            for (vi, version) in contender.versions().into_iter().enumerate() {
                let Some(values) = cells.get(&(si, ci, vi)) else {
                    continue;
                };
                let rates: Vec<f64> = values.iter().map(|x| x.0).collect();
                let m = median(&mut rates.clone());
                let mb = median(&mut values.iter().map(|x| x.1).collect::<Vec<_>>());
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.0}% | {:.1} | {} |",
                    contender.name,
                    proto(version),
                    m,
                    spread(&rates),
                    mb,
                    ratio(m, limit_rate)
                );
            }
        }
        out.push('\n');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Cancellation

/// Cancellation latency in µs; `None` when the handler did not see it within the limit.
async fn cancel_once(caller: &Caller, events: &Events, busy: bool) -> Result<Option<u64>, String> {
    let mut events = events.lock().await;
    while events.try_recv().is_ok() {}
    let request = if busy {
        stream_request(1024, 100_000, 0)
    } else {
        idle_request(60_000_000)
    };
    let mut stream: Stream = caller.server_stream(request).await?;
    // Every stream is aborted after its first message (some servers send no headers before).
    stream.next().await?.ok_or("stream ended")?;
    let t0 = serve::now_micros();
    drop(stream);
    match tokio::time::timeout(CANCEL_LIMIT, events.recv()).await {
        Ok(Some(seen)) => Ok(Some(seen.saturating_sub(t0))),
        Ok(None) => Err("server gone".into()),
        Err(_) => Ok(None),
    }
}

/// How long the harness waits for a handler to see a cancellation.
const CANCEL_LIMIT: Duration = Duration::from_secs(3);

async fn cancellation(plan: &Plan, contenders: &[Contender]) -> Result<String, String> {
    eprintln!("cancellation ...");
    let cases = [
        (Wire::Http1, false),
        (Wire::Http1, true),
        (Wire::Http2, false),
        (Wire::Http2, true),
        (Wire::WebTransport, false),
        (Wire::WebTransport, true),
    ];
    let mut cells: BTreeMap<(usize, usize), Vec<u32>> = BTreeMap::new();
    let mut missed: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let rounds = plan.cancel_samples.div_ceil(10);
    for round in 0..rounds {
        for (ci, contender) in contenders.iter().enumerate() {
            for (xi, &(version, busy)) in cases.iter().enumerate() {
                if !contender.versions().contains(&version) {
                    continue;
                }
                let caller = contender.caller(version).await?;
                if missed.get(&(ci, xi)).is_some_and(|&n| n > 0) {
                    // Never seen before: do not spend every round waiting.
                    continue;
                }
                // One warm-up sample per cell.
                if round == 0
                    && cancel_once(&caller, &contender.events, busy)
                        .await?
                        .is_none()
                {
                    *missed.entry((ci, xi)).or_default() += 1;
                    continue;
                }
                for _ in 0..plan.cancel_samples.min(10) {
                    match cancel_once(&caller, &contender.events, busy).await? {
                        Some(micros) => cells
                            .entry((ci, xi))
                            .or_default()
                            .push(micros.min(u64::from(u32::MAX)) as u32),
                        None => *missed.entry((ci, xi)).or_default() += 1,
                    }
                }
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Cancellation latency\n\nFrom the client dropping a server stream (weir-client; weir's WebTransport client, which resets the stream; tonic for the limit) to the upstream TestService handler seeing the cancellation (its `CallObserver`, timestamp printed by the server process; connect-node: its `cancelled` event, timestamped when the harness reads it). Idle: the first message arrived, the next is 60 s away; busy: a 100 000 × 1 KiB stream, aborted after its first message. {} samples per cell, µs.\n\n| contender | HTTP/1.1 idle p50 / p99 | HTTP/1.1 busy p50 / p99 | HTTP/2 idle p50 / p99 | HTTP/2 busy p50 / p99 | WebTransport idle p50 / p99 | WebTransport busy p50 / p99 |\n|---|---:|---:|---:|---:|---:|---:|",
        rounds * plan.cancel_samples.min(10)
    );
    for (ci, contender) in contenders.iter().enumerate() {
        let _ = write!(out, "| {} |", contender.name);
        for xi in 0..cases.len() {
            match cells.get_mut(&(ci, xi)) {
                Some(v) => {
                    v.sort_unstable();
                    let _ = write!(
                        out,
                        " {:.0} / {:.0} |",
                        percentile(v, 0.5),
                        percentile(v, 0.99)
                    );
                }
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out.push_str("\n\"never seen\": the handler was still running when the harness gave up; the server had not noticed that the client went away.\n\n");
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Memory

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

/// Streams per HTTP/2 connection: below every server's default limit.
const STREAMS_PER_CONNECTION: usize = 100;

async fn memory(plan: &Plan, contenders: &[Contender]) -> Result<String, String> {
    eprintln!("memory ...");
    let mut out = String::new();
    let counts = &plan.open_streams;
    let _ = writeln!(
        out,
        "## Memory\n\nRSS of the server process (for the gateway: the gateway process alone, its upstream runs apart) while idle server streams (first message received, nothing more for 10 minutes) are open over HTTP/2 ({STREAMS_PER_CONNECTION} per connection), and after {} calls aborted right after their first message (64 at a time, HTTP/2) once every stream was closed. Baseline: RSS before this section (after the other sections' load); growth: after the aborted calls minus \"all closed\" (RSS once the open streams were closed, which keeps what the allocator retained).\n",
        plan.aborted_calls
    );
    let _ = write!(out, "| contender | baseline MiB |");
    for n in counts {
        let _ = write!(out, " KiB/stream at {n} |");
    }
    let _ = writeln!(
        out,
        " all closed MiB | after {} aborted calls MiB | growth MiB | failed calls |\n|---|---:|{}---:|---:|---:|---:|",
        plan.aborted_calls,
        "---:|".repeat(counts.len())
    );
    for contender in contenders {
        let Some(pid) = contender.pid else { continue };
        eprintln!("  {}", contender.name);
        let base = rss_kib(pid)?;
        let mut row = format!("| {} | {:.1} |", contender.name, base as f64 / 1024.0);
        let idle = idle_request(600_000_000);
        let mut open: Vec<Stream> = Vec::new();
        let mut callers: Vec<Caller> = Vec::new();
        for &n in counts {
            while open.len() < n {
                let batch = (n - open.len()).min(STREAMS_PER_CONNECTION);
                if open.len() / STREAMS_PER_CONNECTION >= callers.len() {
                    callers.push(contender.caller(Wire::Http2).await?);
                }
                let caller = callers[open.len() / STREAMS_PER_CONNECTION].clone();
                if open.len().is_multiple_of(1000) {
                    eprintln!("    {} open", open.len());
                }
                let batch = futures_util::future::join_all(
                    (0..batch).map(|_| open_idle(caller.clone(), idle.clone())),
                )
                .await;
                for stream in batch {
                    open.push(stream?);
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let rss = rss_kib(pid)?;
            let _ = write!(row, " {:.1} |", rss.saturating_sub(base) as f64 / n as f64);
        }
        drop(open);
        drop(callers);
        tokio::time::sleep(Duration::from_secs(if plan.quick { 1 } else { 3 })).await;
        // The allocator keeps much of what the open streams used: the aborted calls are
        // compared with this, not with the first baseline.
        let closed = rss_kib(pid)?;
        let _ = write!(row, " {:.1} |", closed as f64 / 1024.0);
        let caller = contender.caller(Wire::Http2).await?;
        let per_worker = plan.aborted_calls / 64;
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let caller = caller.clone();
                let idle = idle.clone();
                tokio::spawn(async move {
                    // Failed calls are counted, not fatal: a server may refuse a flood of
                    // resets (Node's rapid-reset protection answers with a reset).
                    let mut failed = 0usize;
                    for _ in 0..per_worker {
                        if let Ok(stream) = open_idle(caller.clone(), idle.clone()).await {
                            drop(stream);
                        } else {
                            failed += 1;
                        }
                    }
                    failed
                })
            })
            .collect();
        let mut failed = 0;
        for worker in workers {
            failed += worker.await.map_err(|e| e.to_string())?;
        }
        drop(caller);
        tokio::time::sleep(Duration::from_secs(if plan.quick { 1 } else { 3 })).await;
        let after = rss_kib(pid)?;
        let _ = writeln!(
            row,
            " {:.1} | {:+.1} | {failed} |",
            after as f64 / 1024.0,
            (after as f64 - closed as f64) / 1024.0
        );
        out.push_str(&row);
        // Let the servers settle before the next contender.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out.push('\n');
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Soak

/// What a server process holds at one moment.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss_kib: u64,
    open_files: usize,
    threads: usize,
}

fn footprint(pid: u32) -> Result<Footprint, String> {
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
        .count();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("/proc/{pid}/task: {e}"))?
        .count();
    Ok(Footprint {
        rss_kib: rss_kib(pid)?,
        open_files,
        threads,
    })
}

/// Counts of one soak worker kind: (ok, failed).
type Outcomes = (u64, u64);

/// Mixed load on each weir contender for `time`: unary calls over HTTP/1.1, HTTP/2 and
/// WebTransport, server streams read to their end, and streams cancelled after their first
/// message; the process's footprint before, after and once the load stopped.
async fn soak(time: Duration, contenders: &[Contender]) -> Result<String, String> {
    eprintln!(
        "soak ({:.1} min per contender) ...",
        time.as_secs_f64() / 60.0
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Soak

{:.1} minutes per contender of mixed load: 8 loops of unary calls per wire (HTTP/1.1, HTTP/2, WebTransport when served), 4 loops reading 100-message streams to their end, 4 loops cancelling streams after their first message (HTTP/2). The server process's footprint at the start, at the end of the load and 3 s after it; open files are its file descriptors (sockets included), threads its OS threads (tokio's tasks are not visible from outside the process).
",
        time.as_secs_f64() / 60.0
    );
    let _ = writeln!(
        out,
        "| contender | calls ok | failed | RSS MiB start → end → after | open files start → end → after | threads start → end → after |\n|---|---:|---:|---|---|---|"
    );
    for contender in contenders
        .iter()
        .filter(|c| c.name.starts_with("weir") && !c.name.contains("access log"))
    {
        let Some(pid) = contender.pid else { continue };
        eprintln!("  {}", contender.name);
        let start = footprint(pid)?;
        let deadline = Instant::now() + time;
        let mut workers: Vec<tokio::task::JoinHandle<Outcomes>> = Vec::new();
        for wire in contender.versions() {
            let caller = contender.caller(wire).await?;
            for _ in 0..8 {
                let caller = caller.clone();
                workers.push(tokio::spawn(async move {
                    let request = unary_request();
                    let (mut ok, mut failed) = (0, 0);
                    while Instant::now() < deadline {
                        match caller.unary(request.clone()).await {
                            Ok(_) => ok += 1,
                            Err(_) => failed += 1,
                        }
                    }
                    (ok, failed)
                }));
            }
        }
        let caller = contender.caller(Wire::Http2).await?;
        for kind in 0..8 {
            let caller = caller.clone();
            workers.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0, 0);
                let streams = stream_request(64, 100, 0);
                let idle = idle_request(600_000_000);
                while Instant::now() < deadline {
                    let outcome = if kind < 4 {
                        drain(&caller, streams.clone()).await.map(drop)
                    } else {
                        // Cancelled by dropping it after its first message.
                        open_idle(caller.clone(), idle.clone()).await.map(drop)
                    };
                    match outcome {
                        Ok(()) => ok += 1,
                        Err(_) => failed += 1,
                    }
                }
                (ok, failed)
            }));
        }
        let (mut ok, mut failed) = (0u64, 0u64);
        for worker in workers {
            let (o, f) = worker.await.map_err(|e| e.to_string())?;
            ok += o;
            failed += f;
        }
        let end = footprint(pid)?;
        drop(caller);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = footprint(pid)?;
        let mib = |f: &Footprint| f.rss_kib as f64 / 1024.0;
        let _ = writeln!(
            out,
            "| {} | {ok} | {failed} | {:.1} → {:.1} → {:.1} | {} → {} → {} | {} → {} → {} |",
            contender.name,
            mib(&start),
            mib(&end),
            mib(&after),
            start.open_files,
            end.open_files,
            after.open_files,
            start.threads,
            end.threads,
            after.threads,
        );
    }
    out.push('\n');
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Browser

async fn browser(plan: &Plan) -> Result<String, String> {
    eprintln!("browser ...");
    let mut out = String::from("## Browser (headless Chromium)\n\n");
    let script = web_dir().join("bench/src/browser.ts");
    if !web_dir().join("node_modules/playwright-core").exists() || !script.exists() {
        required("web/node_modules or web/bench is missing (`cd web && npm ci`)")?;
        out.push_str("SKIPPED: web/node_modules or web/bench missing (`cd web && npm ci`).\n\n");
        return Ok(out);
    }
    let weir = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            required(&format!("this executable's path is unknown: {e}"))?;
            return Ok(format!("{out}SKIPPED: {e}\n\n"));
        }
    };
    let mut command = Command::new("node");
    command
        .args(["--import", "tsx", "src/browser.ts"])
        .arg(if plan.quick { "--quick" } else { "--full" })
        .arg("--server")
        .arg(weir)
        .current_dir(web_dir().join("bench"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(900), command.output()).await {
        Ok(Ok(output)) if output.status.success() => {
            out.push_str(&String::from_utf8_lossy(&output.stdout));
            out.push('\n');
        }
        Ok(Ok(output)) => {
            let _ = writeln!(
                out,
                "FAILED ({}):\n\n```\n{}\n```\n",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Err(e)) => {
            let _ = writeln!(out, "FAILED: {e}\n");
        }
        Err(_) => out.push_str("FAILED: no result within 15 minutes\n\n"),
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Machine and versions

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.trim_start_matches("MemTotal:").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let run = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "not found".into())
    };
    let lock = include_str!("../../../Cargo.lock");
    let crate_version = |name: &str| {
        let needle = format!("name = \"{name}\"\nversion = \"");
        lock.find(&needle)
            .map(|at| {
                lock[at + needle.len()..]
                    .split('"')
                    .next()
                    .unwrap_or("?")
                    .to_owned()
            })
            .unwrap_or_else(|| "?".into())
    };
    let npm_version = |name: &str| {
        std::fs::read_to_string(
            web_dir()
                .join("node_modules")
                .join(name)
                .join("package.json"),
        )
        .ok()
        .and_then(|s| {
            s.split("\"version\"")
                .nth(1)
                .and_then(|v| v.split('"').nth(1))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "not installed".into())
    };
    let profile = if cfg!(debug_assertions) {
        "dev (unoptimized)"
    } else {
        "release"
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "machine: {cpu}, {cores} cores, {mem}, Linux {}; load generator and servers share these cores.\n",
        kernel.trim()
    );
    let _ = writeln!(
        out,
        "build: {profile}; {}; node {}\n",
        run("rustc", "-V"),
        run("node", "--version")
    );
    let _ = writeln!(
        out,
        "versions: weir {}, hyper {}, h2 {}, tonic {}, tonic-web {}; @connectrpc/connect-node {}, grpc-web {}, @connectrpc/connect-web {}\n",
        env!("CARGO_PKG_VERSION"),
        crate_version("hyper"),
        crate_version("h2"),
        crate_version("tonic"),
        crate_version("tonic-web"),
        npm_version("@connectrpc/connect-node"),
        npm_version("grpc-web"),
        npm_version("@connectrpc/connect-web"),
    );
    out
}
