//! Measures an event-store engine the way the proxy uses it: records a few million events in
//! batches, then times `latest`, `history`, `replay`, a reopen, a trim and explicit syncs.
//!
//! ```text
//! cargo run --release -p xbus-store --example store_bench -- run --engine fjall --dir /var/tmp/sb
//! cargo run --release -p xbus-store --example store_bench -- crash --engine redb --dir /var/tmp/sb
//! ```
//!
//! `--last-value record` creates the store with copies of the last records in its last-value
//! table (the engine is then reported as `redb+lv` / `fjall+lv`).
//!
//! `run` prints one line of `key=value` figures; `crash` SIGKILLs a writer mid-stream, reopens
//! the store and prints what survived. `store/examples/store_bench.sh` runs both engines
//! several times, interleaved, under `/usr/bin/time -v`, and prints the medians.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use xbus_store::{
    Backend, EventStore, HistoryQuery, LastValue, LatestQuery, Order, Record, Retention,
    StoreOptions,
};

type Error = Box<dyn std::error::Error>;

struct Args {
    mode: String,
    engine: Backend,
    dir: PathBuf,
    events: u64,
    topics: u64,
    payload: usize,
    batch: usize,
    seconds: u64,
    last_value: LastValue,
}

fn parse() -> Result<Args, Error> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("usage: store_bench run|crash|child [--engine E] [--dir D] [--events N] [--topics N] [--payload BYTES] [--batch N] [--seconds S]")?;
    let mut a = Args {
        mode,
        engine: Backend::Fjall,
        dir: std::env::temp_dir().join("xbus-store-bench"),
        events: 3_000_000,
        topics: 1_000,
        payload: 100,
        batch: 1_000,
        seconds: 3,
        last_value: LastValue::Seq,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--engine" => a.engine = value.parse()?,
            "--dir" => a.dir = PathBuf::from(value),
            "--events" => a.events = value.parse()?,
            "--topics" => a.topics = value.parse()?,
            "--payload" => a.payload = value.parse()?,
            "--batch" => a.batch = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            "--last-value" => {
                a.last_value = match value.as_str() {
                    "seq" => LastValue::Seq,
                    "record" => LastValue::Record,
                    other => return Err(format!("--last-value seq|record, not {other}").into()),
                }
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(a)
}

/// xorshift64*: reproducible, incompressible payloads and topic choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn topic_names(n: u64) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("Temperature.lab{:02}.rack{:04}.", i % 10, i)))
        .collect()
}

/// Batch `b` of the workload: `batch` records from sequence number `first`.
fn make_batch(
    rng: &mut Rng,
    topics: &[Bytes],
    first: u64,
    n: usize,
    payload: usize,
) -> Vec<Record> {
    let base_time = 1_700_000_000_000_000u64;
    (0..n as u64)
        .map(|i| {
            let seq = first + i;
            let topic = topics[(rng.next() % topics.len() as u64) as usize].clone();
            let mut body = Vec::with_capacity(payload + 8);
            while body.len() < payload {
                body.extend_from_slice(&rng.next().to_le_bytes());
            }
            body.truncate(payload);
            Record::new(seq, base_time + seq, topic, body)
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn open(a: &Args) -> Result<Box<dyn EventStore>, Error> {
    let options = StoreOptions {
        last_value: a.last_value,
        ..StoreOptions::default()
    };
    Ok(xbus_store::open(a.engine, &a.dir, options)?)
}

fn fresh_dir(dir: &Path) -> Result<(), Error> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn run(a: &Args) -> Result<(), Error> {
    fresh_dir(&a.dir)?;
    let topics = topic_names(a.topics);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let store = open(a)?;
    let engine = match a.last_value {
        LastValue::Seq => a.engine.to_string(),
        LastValue::Record => format!("{}+lv", a.engine),
    };
    let mut out: Vec<(String, String)> = vec![("engine".into(), engine)];
    let mut put = |k: &str, v: String| out.push((k.to_string(), v));

    // Append: the proxy's recorder, batches of `batch`, syncing every second (the default).
    let mut seq = 1;
    let mut logical = 0u64;
    let mut gen_time = Duration::ZERO;
    let mut append_time = Duration::ZERO;
    while seq <= a.events {
        let n = a.batch.min((a.events - seq + 1) as usize);
        let t = Instant::now();
        let records = make_batch(&mut rng, &topics, seq, n, a.payload);
        gen_time += t.elapsed();
        logical += records
            .iter()
            .map(|r| (r.topic.len() + r.payload.len()) as u64)
            .sum::<u64>();
        let t = Instant::now();
        store.append(&records)?;
        append_time += t.elapsed();
        seq += n as u64;
    }
    let t = Instant::now();
    store.sync()?;
    let final_sync = t.elapsed();
    append_time += final_sync;
    let secs = append_time.as_secs_f64();
    put("events", a.events.to_string());
    put("append_s", format!("{secs:.2}"));
    put("append_ev_s", format!("{:.0}", a.events as f64 / secs));
    put("append_mb_s", format!("{:.1}", logical as f64 / secs / 1e6));
    put("gen_s", format!("{:.2}", gen_time.as_secs_f64()));
    let stats = store.stats()?;
    put("disk_bytes", stats.disk_bytes.to_string());
    put(
        "disk_b_per_ev",
        format!("{:.1}", stats.disk_bytes as f64 / a.events as f64),
    );
    put(
        "logical_b_per_ev",
        format!("{:.1}", stats.logical_bytes as f64 / a.events as f64),
    );

    // Explicit syncs after one more batch each: what an fsync costs the writer.
    let mut syncs = Vec::new();
    for _ in 0..10 {
        let records = make_batch(&mut rng, &topics, seq, a.batch, a.payload);
        seq += a.batch as u64;
        store.append(&records)?;
        let t = Instant::now();
        store.sync()?;
        syncs.push(t.elapsed());
    }
    syncs.sort();
    put("sync_p50_us", format!("{:.0}", percentile(&syncs, 0.5)));
    put("sync_max_us", format!("{:.0}", percentile(&syncs, 1.0)));

    // latest over every topic.
    let mut lat = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let page = store.latest(&LatestQuery::new([""]).limit(a.topics as usize))?;
        lat.push(t.elapsed());
        assert_eq!(page.records.len() as u64, a.topics);
    }
    lat.sort();
    put("latest_all_p50_us", format!("{:.0}", percentile(&lat, 0.5)));
    put(
        "latest_all_p99_us",
        format!("{:.0}", percentile(&lat, 0.99)),
    );

    // history: one topic's newest 100 (index merge), and everything's newest 100 (scan).
    let mut hist = Vec::new();
    for i in 0..1_000u64 {
        let topic = topics[((i * 7919) % a.topics) as usize].clone();
        let t = Instant::now();
        let page = store.history(
            &HistoryQuery::new([topic])
                .order(Order::NewestFirst)
                .limit(100),
        )?;
        hist.push(t.elapsed());
        // A topic may have fewer than 100 records when there are many topics.
        assert!(!page.records.is_empty());
    }
    hist.sort();
    put(
        "history_topic_p50_us",
        format!("{:.0}", percentile(&hist, 0.5)),
    );
    put(
        "history_topic_p99_us",
        format!("{:.0}", percentile(&hist, 0.99)),
    );
    let mut hist = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let page = store.history(&HistoryQuery::new([""]).order(Order::NewestFirst).limit(100))?;
        hist.push(t.elapsed());
        assert_eq!(page.records.len(), 100);
    }
    hist.sort();
    put(
        "history_all_p50_us",
        format!("{:.0}", percentile(&hist, 0.5)),
    );

    // replay: everything from the start, pages of 10,000; then one topic.
    let t = Instant::now();
    let mut n = 0u64;
    let mut after = 0;
    loop {
        let page = store.replay(after, &[], 10_000)?;
        n += page.records.len() as u64;
        match page.records.last() {
            Some(last) if page.next.is_some() => after = last.seq,
            _ => break,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n, seq - 1);
    put("replay_ev_s", format!("{:.0}", n as f64 / secs));
    let t = Instant::now();
    let mut n = 0u64;
    let mut after = 0;
    let one = [topics[0].clone()];
    loop {
        let page = store.replay(after, &one, 10_000)?;
        n += page.records.len() as u64;
        match page.records.last() {
            Some(last) if page.next.is_some() => after = last.seq,
            _ => break,
        }
    }
    put(
        "replay_topic_ev_s",
        format!("{:.0}", n as f64 / t.elapsed().as_secs_f64()),
    );

    // Reopen (the drop syncs; timed separately).
    let epoch = store.epoch();
    let t = Instant::now();
    drop(store);
    put(
        "close_ms",
        format!("{:.1}", t.elapsed().as_secs_f64() * 1e3),
    );
    let t = Instant::now();
    let store = open(a)?;
    put(
        "reopen_ms",
        format!("{:.1}", t.elapsed().as_secs_f64() * 1e3),
    );
    let disk = store.stats()?.disk_bytes as f64 / (seq - 1) as f64;
    put("disk_reopen_b_per_ev", format!("{disk:.1}"));
    assert_eq!(store.epoch(), epoch);
    assert_eq!(store.last_seq(), Some(seq - 1));
    let t = Instant::now();
    store.latest(&LatestQuery::new([""]).limit(a.topics as usize))?;
    put(
        "latest_cold_us",
        format!("{:.0}", t.elapsed().as_secs_f64() * 1e6),
    );

    // Trim a tenth by size.
    let stats = store.stats()?;
    let t = Instant::now();
    let report = store.trim(
        &Retention {
            max_age: None,
            max_bytes: Some(stats.logical_bytes / 10 * 9),
        },
        0,
    )?;
    let secs = t.elapsed().as_secs_f64();
    put("trim_ev_s", format!("{:.0}", report.records as f64 / secs));
    store.sync()?;
    put("disk_after_trim", store.stats()?.disk_bytes.to_string());
    drop(store);
    put("dir_bytes", dir_bytes(&a.dir).to_string());
    put("vm_hwm_kb", vm_hwm_kb().to_string());

    let line: Vec<String> = out.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{}", line.join(" "));
    Ok(())
}

/// The writer a crash test kills: appends until killed, printing each batch's last sequence
/// number once `append` has returned.
fn child(a: &Args) -> Result<(), Error> {
    let topics = topic_names(a.topics);
    let mut rng = Rng(42);
    let store = open(a)?;
    let mut seq = store.next_seq();
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    writeln!(stdout, "epoch {}", store.epoch())?;
    loop {
        let records = make_batch(&mut rng, &topics, seq, a.batch, a.payload);
        seq += a.batch as u64;
        store.append(&records)?;
        writeln!(stdout, "{}", seq - 1)?;
        stdout.flush()?;
    }
}

fn crash(a: &Args) -> Result<(), Error> {
    fresh_dir(&a.dir)?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["child", "--engine", &a.engine.to_string(), "--dir"])
        .arg(&a.dir)
        .args([
            "--topics",
            &a.topics.to_string(),
            "--batch",
            &a.batch.to_string(),
        ])
        .args(["--payload", &a.payload.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut epoch = String::new();
    let mut acked = 0u64;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(10)) {
            if let Some(e) = line.strip_prefix("epoch ") {
                epoch = e.to_string();
            } else if let Ok(s) = line.parse() {
                acked = s;
            }
        }
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    // Lines already written before the kill count as acknowledged.
    let _ = reader.join();
    while let Ok(line) = rx.try_recv() {
        if let Ok(s) = line.parse() {
            acked = s;
        }
    }
    let t = Instant::now();
    let store = open(a)?;
    let reopen = t.elapsed();
    let last = store.last_seq().unwrap_or(0);
    // Every record up to `last` is there, in order, nothing else.
    let mut n = 0u64;
    let mut after = 0;
    loop {
        let page = store.replay(after, &[], 50_000)?;
        for r in &page.records {
            n += 1;
            if r.seq != n {
                return Err(format!("record {} where {} was expected", r.seq, n).into());
            }
        }
        match page.records.last() {
            Some(l) if page.next.is_some() => after = l.seq,
            _ => break,
        }
    }
    if n != last {
        return Err(format!("{n} records but last_seq {last}").into());
    }
    println!(
        "engine={} acked={} recovered={} lost={} same_epoch={} reopen_ms={:.1} next_seq={}",
        a.engine,
        acked,
        last,
        acked.saturating_sub(last),
        store.epoch().to_string() == epoch,
        reopen.as_secs_f64() * 1e3,
        store.next_seq(),
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let a = parse()?;
    match a.mode.as_str() {
        "run" => run(&a),
        "child" => child(&a),
        "crash" => crash(&a),
        other => Err(format!("unknown mode {other}").into()),
    }
}
