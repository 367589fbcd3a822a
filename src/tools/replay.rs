//! File adapter: reads JSON lines (plain or gzip) and runs them through the pipeline, writing
//! decisions, alerts, commands and dead letters as JSON lines.
//!
//! Invalid lines never stop a replay: each becomes a dead letter (with its line number as the
//! offset and `file:<path>` as the topic) and is counted.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::engine::decision::Action;
use crate::engine::output;
use crate::engine::pipeline::{CommandKind, Engine, Removed, State};
use crate::engine::time::EpochMs;
use crate::engine::unit::Unit;

/// Longest line read into memory: the event limit plus a newline and a spare byte.
const MAX_LINE: usize = crate::engine::event::MAX_EVENT_BYTES + 2;

/// Errors of the file adapter.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input or output file could not be opened, read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// A line of a `--lists` file is not a list entry.
    #[error("{path}:{line}: {source}")]
    List {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        source: crate::engine::lists::ListError,
    },
}

/// Reads a lists file (`replay --lists`): one entry per line as on `walletguard.lists` (what
/// `--lists-out` writes); blank lines and lines starting with `#` are skipped. Entries are held
/// whatever their expiry: replay judges expiry by event time, never by the wall clock.
pub fn load_lists(path: &Path) -> Result<crate::engine::lists::Lists, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(io_err("cannot read", path))?;
    let mut lists = crate::engine::lists::Lists::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lists
            .apply_record(None, Some(line.as_bytes()), EpochMs::MIN)
            .map_err(|source| ReplayError::List {
                path: path.display().to_string(),
                line: i + 1,
                source,
            })?;
    }
    Ok(lists)
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ReplayError + 'a {
    move |source| ReplayError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Where replay writes. `None` skips that output.
#[derive(Debug, Default, Clone)]
pub struct Sinks {
    /// Decisions, one per valid event.
    pub decisions: Option<PathBuf>,
    /// Alerts, one per non-allow decision.
    pub alerts: Option<PathBuf>,
    /// Commands.
    pub commands: Option<PathBuf>,
    /// Dead letters.
    pub dlq: Option<PathBuf>,
    /// List entries feedback published (a confirmed fraud's blocks), one JSON object per
    /// line as on the lists topic.
    pub lists: Option<PathBuf>,
    /// The learned state at the end, as the changelog records the service would write for it
    /// ([`write_state`]).
    pub state: Option<PathBuf>,
}

/// Totals of a replay.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Lines read (blank lines excluded).
    pub events: u64,
    /// Lines that became dead letters.
    pub invalid: u64,
    /// Decisions by action, indexed like [`Action::ALL`].
    pub by_action: [u64; 4],
    /// `freeze_account` commands.
    pub freezes: u64,
    /// `require_step_up` commands.
    pub step_ups: u64,
    /// `notify_user` commands.
    pub notifications: u64,
    /// Events whose id was seen before.
    pub duplicates: u64,
    /// List entries published by feedback.
    pub list_entries: u64,
    /// Profiles removed by the lifecycle (idle, and evicted at the cap).
    pub removed: crate::engine::pipeline::Removed,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Summary {
    /// Events per second of wall time.
    pub fn events_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "events       {}", self.events)?;
        writeln!(f, "invalid      {}", self.invalid)?;
        writeln!(f, "duplicates   {}", self.duplicates)?;
        for (a, n) in Action::ALL.iter().zip(self.by_action) {
            writeln!(f, "{:<12} {}", a.as_str(), n)?;
        }
        writeln!(f, "freezes      {}", self.freezes)?;
        writeln!(f, "step-ups     {}", self.step_ups)?;
        writeln!(f, "notify-user  {}", self.notifications)?;
        writeln!(f, "list entries {}", self.list_entries)?;
        writeln!(f, "expired      {}", self.removed.ttl)?;
        writeln!(f, "evicted      {}", self.removed.cap)?;
        write!(f, "events/s     {:.0}", self.events_per_s())
    }
}

/// Opens a JSON-lines input: `-` is stdin; gzip is detected by its magic bytes.
pub fn open_input(path: &Path) -> Result<(Box<dyn BufRead>, Option<u64>), ReplayError> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(BufReader::new(io::stdin())), None));
    }
    let mut f = File::open(path).map_err(io_err("cannot open", path))?;
    let len = f.metadata().ok().map(|m| m.len());
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(io_err("cannot read", path))?;
    let f = File::open(path).map_err(io_err("cannot open", path))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, f));
        Ok((Box::new(BufReader::with_capacity(1 << 16, gz)), len))
    } else {
        Ok((Box::new(BufReader::with_capacity(1 << 16, f)), len))
    }
}

/// A gzip output whose `flush` completes the stream (trailer included) and reports any error,
/// instead of leaving that to `Drop`, which would swallow a full disk. Write nothing after
/// flushing.
struct GzOut(flate2::write::GzEncoder<BufWriter<File>>);

impl Write for GzOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.try_finish()?;
        self.0.get_mut().flush()
    }
}

/// Creates a JSON-lines output; a `.gz` name writes gzip. Call `flush` once at the end: for
/// gzip it writes the trailer.
pub fn create_output(path: &Path) -> Result<Box<dyn Write>, ReplayError> {
    let f = File::create(path).map_err(io_err("cannot create", path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(GzOut(flate2::write::GzEncoder::new(
            BufWriter::with_capacity(1 << 16, f),
            flate2::Compression::fast(),
        ))))
    } else {
        Ok(Box::new(BufWriter::with_capacity(1 << 16, f)))
    }
}

struct Out {
    path: PathBuf,
    w: Box<dyn Write>,
}

impl Out {
    fn open(p: &Option<PathBuf>) -> Result<Option<Out>, ReplayError> {
        p.as_ref()
            .map(|path| {
                Ok(Out {
                    w: create_output(path)?,
                    path: path.clone(),
                })
            })
            .transpose()
    }

    fn line(&mut self, buf: &mut Vec<u8>) -> Result<(), ReplayError> {
        buf.push(b'\n');
        let r = self
            .w
            .write_all(buf)
            .map_err(io_err("cannot write", &self.path));
        buf.clear();
        r
    }
}

/// The partition Kafka's default partitioner (the Java client's, and librdkafka's
/// `murmur2_random`) gives a record keyed by `key` in a topic of `partitions` partitions.
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (seed 0x9747b28c), as the Java client hashes keys.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The states of one engine over an emulated input topic of N partitions, as
/// [`replay`] drives them: each event goes to the state of the partition [`kafka_partition`]
/// gives its `user_id`; memory is kept bounded as in the service (a state at its cap is swept
/// at once, every state every 1M events); list entries a state's feedback publishes reach the
/// other states at once, like the lists topic read back by every instance. `replay`, `compare`
/// and `calibrate` share it, so they decide alike.
pub struct Partitioned {
    /// One unit of work per emulated partition.
    pub units: Vec<Unit>,
    newest_ts: EpochMs,
    events: u64,
}

impl Partitioned {
    /// `partitions` fresh states of `engine` (at least one) scoring against `lists`.
    pub fn new(
        engine: &Engine,
        partitions: u32,
        lists: std::sync::Arc<crate::engine::lists::Lists>,
    ) -> Partitioned {
        Partitioned::from_states(
            (0..partitions.max(1))
                .map(|_| State {
                    lists: lists.clone(),
                    ..engine.new_state()
                })
                .collect(),
        )
    }

    /// Wraps states already built (tests; `replay` with states of its caller).
    pub fn from_states(states: Vec<State>) -> Partitioned {
        Partitioned {
            units: states.into_iter().map(Unit::new).collect(),
            newest_ts: 0,
            events: 0,
        }
    }

    /// Counts a line that was not a valid event (it still advances the idle sweep count).
    pub fn skip(&mut self, engine: &Engine, now_ms: EpochMs) {
        self.tick(engine, now_ms);
    }

    fn tick(&mut self, engine: &Engine, now_ms: EpochMs) {
        self.events += 1;
        // Idle sweeps every 1M events (a replay may cover years), all at the clock of the
        // newest event in the whole stream.
        if self.events % 1_000_000 == 0 {
            let clock = crate::engine::pipeline::sweep_clock(self.newest_ts, now_ms);
            for u in self.units.iter_mut() {
                u.upkeep_at(engine, clock, true);
            }
        }
    }

    /// Scores `ev` in its partition's state at `now_ms`; appends the list entries its
    /// feedback published (already shared with every state) to `published`. `None` only when
    /// there are no states.
    pub fn process(
        &mut self,
        engine: &Engine,
        ev: &crate::engine::event::Event<'_>,
        now_ms: EpochMs,
        published: &mut Vec<crate::engine::lists::ListEntry>,
    ) -> Option<crate::engine::pipeline::Outcome> {
        let n = self.units.len() as u32;
        let i = if n > 1 {
            kafka_partition(ev.user_id.as_bytes(), n) as usize
        } else {
            0
        };
        self.newest_ts = self.newest_ts.max(ev.ts_ms);
        let clock = crate::engine::pipeline::sweep_clock(self.newest_ts, now_ms);
        let out = self.units.get_mut(i).map(|u| {
            let out = u.process(engine, ev, now_ms);
            // Memory stays bounded as in the service: at the cap at once.
            u.upkeep_at(engine, clock, false);
            out
        });
        self.tick(engine, now_ms);
        let from = published.len();
        for u in self.units.iter_mut() {
            published.append(&mut u.take_blocks());
        }
        if published.len() > from {
            if let Some(first) = self.units.first() {
                let mut shared = first.state.lists.clone();
                let table = std::sync::Arc::make_mut(&mut shared);
                for e in &published[from..] {
                    let _ = table.upsert(&e.key(), e, EpochMs::MIN);
                }
                for u in self.units.iter_mut() {
                    u.state.lists = shared.clone();
                }
            }
        }
        out
    }

    /// Removals so far across the states.
    pub fn removed(&self) -> Removed {
        self.units.iter().fold(Removed::default(), |a, u| Removed {
            ttl: a.ttl + u.state.removed.ttl,
            cap: a.cap + u.state.removed.cap,
        })
    }

    /// Profiles held across the states.
    pub fn profiles(&self) -> usize {
        self.units.iter().map(|u| u.state.profiles.len()).sum()
    }
}

/// A bar over the bytes of `input` on stderr (hidden unless `show`), for the commands that
/// stream a file: `replay`, `compare`, `calibrate`.
pub fn progress_bar(input: &Path, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let total = std::fs::metadata(input).ok().map(|m| m.len());
    let b = indicatif::ProgressBar::new(total.unwrap_or(0));
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b
}

/// `walletguard replay`: [`replay`] through fresh state of `engine` (one per emulated
/// partition) scoring against `lists`, with the wall clock, and a progress bar on stderr when `progress`. Returns the
/// summary and the profiles held at the end.
pub fn replay_file(
    engine: &Engine,
    input: &Path,
    sinks: &Sinks,
    partitions: u32,
    lists: std::sync::Arc<crate::engine::lists::Lists>,
    progress: bool,
) -> Result<(Summary, usize), ReplayError> {
    let mut router = Partitioned::new(engine, partitions, lists);
    let total = std::fs::metadata(input).ok().map(|m| m.len());
    let bar = progress_bar(input, progress);
    // Compressed input advances faster than the bar's byte total; cap it.
    let summary = replay(
        engine,
        &mut router,
        input,
        sinks,
        &mut crate::engine::time::now_ms,
        &mut |b| bar.set_position(b.min(total.unwrap_or(u64::MAX))),
    )?;
    bar.finish_and_clear();
    if let Some(path) = &sinks.state {
        write_state(engine, &router, path)?;
    }
    Ok((summary, router.profiles()))
}

/// Writes the learned state of every emulated partition as the changelog records the service
/// would write for it: one JSON line per record, `{"partition", "key", "value"}`, key and
/// value in hex, each partition's profiles in key order and then its population (key
/// `walletguard.population`). The values are exactly the bytes of `walletguard.profiles`, so a
/// replay's file shows whether a change moved what a restore would read (and a history can be
/// turned into a changelog to start from).
pub fn write_state(engine: &Engine, router: &Partitioned, path: &Path) -> Result<(), ReplayError> {
    let mut out = create_output(path)?;
    let params = engine.params();
    let mut value = Vec::with_capacity(crate::engine::baseline::codec::ENCODED_LEN + 64);
    let mut line = String::new();
    let mut write = |out: &mut Box<dyn Write>, p: usize, key: &[u8], value: &[u8]| {
        line.clear();
        line.push_str(&format!("{{\"partition\":{p},\"key\":\""));
        hex_into(&mut line, key);
        line.push_str("\",\"value\":\"");
        hex_into(&mut line, value);
        line.push_str("\"}\n");
        out.write_all(line.as_bytes())
            .map_err(io_err("cannot write", path))
    };
    for (p, state) in router.units.iter().map(|u| &u.state).enumerate() {
        let mut held: Vec<(u64, &crate::engine::baseline::Profile)> =
            state.profiles.iter().collect();
        held.sort_unstable_by_key(|(key, _)| *key);
        for (key, prof) in held {
            value.clear();
            crate::engine::feedback::record::encode_record(
                prof,
                state.cases.get(&key),
                params,
                &mut value,
            );
            write(&mut out, p, &key.to_be_bytes(), &value)?;
        }
        value.clear();
        state.population.encode(&mut value);
        write(
            &mut out,
            p,
            crate::service::kafka::stamp::POPULATION_KEY,
            &value,
        )?;
    }
    out.flush().map_err(io_err("cannot write", path))
}

/// Appends `bytes` to `s` in lowercase hex.
fn hex_into(s: &mut String, bytes: &[u8]) {
    use std::fmt::Write as _;
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

/// Replays `input` through `engine`, writing to `sinks`. `clock` gives `now` for each event
/// (wall time in the CLI, fixed in tests); `progress` is called with bytes read so far.
///
/// `router` holds one state per emulated input partition ([`Partitioned`]): each event is
/// scored against the state of the partition [`kafka_partition`] gives its `user_id` (the
/// input's key), so with N states the decisions equal those of the service on a topic of N
/// partitions fed in file order. One state is a topic of one partition.
pub fn replay(
    engine: &Engine,
    router: &mut Partitioned,
    input: &Path,
    sinks: &Sinks,
    clock: &mut dyn FnMut() -> EpochMs,
    progress: &mut dyn FnMut(u64),
) -> Result<Summary, ReplayError> {
    let (mut reader, _) = open_input(input)?;
    let topic = format!("file:{}", input.display());
    let mut decisions = Out::open(&sinks.decisions)?;
    let mut alerts = Out::open(&sinks.alerts)?;
    let mut commands = Out::open(&sinks.commands)?;
    let mut dlq = Out::open(&sinks.dlq)?;
    let mut lists = Out::open(&sinks.lists)?;
    let mut sum = Summary::default();
    let removed_before: Removed = router.removed();
    let mut published = Vec::new();
    let started = Instant::now();
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut lineno: i64 = 0;
    let mut read_bytes = 0u64;
    loop {
        line.clear();
        // Read at most one byte past the event limit: a runaway line without a newline must
        // not be buffered whole.
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .map_err(io_err("cannot read", input))?;
        if n == 0 {
            break;
        }
        let mut skipped = 0u64;
        if line.last() != Some(&b'\n') && n == MAX_LINE {
            // Too long: drop the rest of the line; the kept prefix is dead-lettered as too large.
            let mut sink = Vec::new();
            loop {
                sink.clear();
                let m = (&mut reader)
                    .take(1 << 16)
                    .read_until(b'\n', &mut sink)
                    .map_err(io_err("cannot read", input))?;
                skipped += m as u64;
                if m == 0 || sink.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        lineno += 1;
        read_bytes += n as u64;
        if lineno % 8192 == 0 {
            progress(read_bytes);
        }
        let mut raw: &[u8] = &line;
        while let [rest @ .., b'\n' | b'\r'] = raw {
            raw = rest;
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        sum.events += 1;
        let result = if skipped > 0 {
            Err(crate::engine::event::EventError::TooLarge {
                size: raw.len() + skipped as usize,
                max: crate::engine::event::MAX_EVENT_BYTES,
            })
        } else {
            crate::engine::event::parse_event(raw)
        };
        let result = result.map(|ev| {
            let out = router.process(engine, &ev, clock(), &mut published);
            (ev, out)
        });
        if result.is_err() {
            router.skip(engine, clock());
        }
        match result {
            Ok((_, None)) => {} // no state at all: `states` was empty
            Ok((ev, Some(out))) => {
                sum.by_action[out.decision.action as usize] += 1;
                sum.duplicates += out.duplicate as u64;
                if let Some(o) = decisions.as_mut() {
                    output::write_decision(&mut buf, &ev, &out);
                    o.line(&mut buf)?;
                }
                if out.alert() {
                    if let Some(o) = alerts.as_mut() {
                        output::write_alert(&mut buf, &ev, &out);
                        o.line(&mut buf)?;
                    }
                }
                for e in published.drain(..) {
                    sum.list_entries += 1;
                    if let Some(o) = lists.as_mut() {
                        buf.extend_from_slice(&e.to_json());
                        o.line(&mut buf)?;
                    }
                }
                if let Some(kind) = out.command {
                    match kind {
                        CommandKind::FreezeAccount => sum.freezes += 1,
                        CommandKind::RequireStepUp => sum.step_ups += 1,
                        CommandKind::NotifyUser => sum.notifications += 1,
                    }
                    if let Some(o) = commands.as_mut() {
                        crate::engine::output::write_command(
                            &mut buf,
                            &ev,
                            &out,
                            kind,
                            engine.command_message(&ev, &out, kind).as_deref(),
                        );
                        o.line(&mut buf)?;
                    }
                }
            }
            Err(err) => {
                sum.invalid += 1;
                tracing::debug!(line = lineno, error = %err, "invalid event");
                if let Some(o) = dlq.as_mut() {
                    output::write_dead_letter(&mut buf, &err, &topic, 0, lineno, raw);
                    o.line(&mut buf)?;
                }
            }
        }
    }
    for (o, _) in [(decisions, 0), (alerts, 1), (commands, 2), (dlq, 3)] {
        if let Some(mut o) = o {
            o.w.flush().map_err(io_err("cannot write", &o.path))?;
        }
    }
    progress(read_bytes);
    let removed_after = router.removed();
    sum.removed = Removed {
        ttl: removed_after.ttl - removed_before.ttl,
        cap: removed_after.cap - removed_before.cap,
    };
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}

/// `walletguard replay`: scores `--input` under `cfg` into the files the arguments name and
/// prints the summary.
pub fn command(a: &ReplayArgs, cfg: crate::service::config::Config) -> Result<(), ReplayError> {
    let sinks = Sinks {
        decisions: a.decisions.clone(),
        alerts: a.alerts.clone(),
        commands: a.commands.clone(),
        dlq: a.dlq.clone(),
        lists: a.lists_out.clone(),
        state: a.state_out.clone(),
    };
    let table = match &a.lists {
        Some(path) => load_lists(path)?,
        None => Default::default(),
    };
    let (summary, profiles) = replay_file(
        &Engine::new(cfg),
        &a.input,
        &sinks,
        a.partitions,
        std::sync::Arc::new(table),
        io::IsTerminal::is_terminal(&io::stderr()),
    )?;
    println!("{summary}");
    println!("profiles     {profiles}");
    Ok(())
}

/// Arguments of `walletguard replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Input events.
    #[arg(long)]
    pub input: std::path::PathBuf,
    /// Write one decision per valid event here.
    #[arg(long)]
    pub decisions: Option<std::path::PathBuf>,
    /// Write alerts here.
    #[arg(long)]
    pub alerts: Option<std::path::PathBuf>,
    /// Write commands here.
    #[arg(long)]
    pub commands: Option<std::path::PathBuf>,
    /// Write dead letters (invalid lines) here.
    #[arg(long)]
    pub dlq: Option<std::path::PathBuf>,
    /// Write the list entries feedback publishes (a confirmed fraud's blocks) here.
    #[arg(long)]
    pub lists_out: Option<std::path::PathBuf>,
    /// Write the learned state at the end here, as the changelog records the service would
    /// write (JSON lines: partition, key and value in hex).
    #[arg(long)]
    pub state_out: Option<std::path::PathBuf>,
    /// Score against these allow and block lists: one `walletguard.lists` entry (JSON) per
    /// line, as `--lists-out` writes them.
    #[arg(long)]
    pub lists: Option<std::path::PathBuf>,
    /// Config files, laid over the built-in defaults in order (repeat `--config` for
    /// overlays: a later file's keys win).
    #[arg(long, env = "WALLETGUARD_CONFIG")]
    pub config: Vec<std::path::PathBuf>,
    /// Emulate an input topic of this many partitions: each user is routed by Kafka's
    /// default key hashing (murmur2 of the user id) to a partition with its own learned
    /// population, so the decisions equal the service's on such a topic.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub partitions: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::Config;

    #[test]
    fn murmur2_is_kafkas() {
        // Apache Kafka's UtilsTest.testMurmur2 vectors (signed 32-bit in Java).
        for (key, want) in [
            ("21", -973_932_308i32),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()) as i32, want, "{key}");
        }
        assert_eq!(
            kafka_partition(b"21", 7),
            ((-973_932_308i32 as u32) & 0x7fff_ffff) % 7
        );
    }

    #[test]
    fn n_partitions_decide_like_n_separate_replays_of_each_partitions_events() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::tools::sim::SimParams {
            users: 300,
            days: 20,
            seed: 5,
            ..crate::tools::sim::SimParams::default()
        };
        let mut lines: Vec<(String, String)> = Vec::new();
        for ev in crate::tools::sim::Simulator::new(&opts).unwrap() {
            let mut buf = Vec::new();
            ev.write_json(&mut buf);
            let mut key = Vec::new();
            ev.write_user_id(&mut key);
            lines.push((
                String::from_utf8(key).unwrap(),
                String::from_utf8(buf).unwrap(),
            ));
        }
        let all = dir.path().join("all.jsonl");
        std::fs::write(
            &all,
            lines
                .iter()
                .map(|(_, l)| format!("{l}\n"))
                .collect::<String>(),
        )
        .unwrap();
        let engine = Engine::new(Config::default());
        let run = |input: &Path, out: &str, n: u32| {
            let sinks = Sinks {
                decisions: Some(dir.path().join(out)),
                ..Sinks::default()
            };
            let mut router = Partitioned::from_states((0..n).map(|_| engine.new_state()).collect());
            replay(&engine, &mut router, input, &sinks, &mut || 0, &mut |_| {}).unwrap();
            std::fs::read_to_string(dir.path().join(out)).unwrap()
        };
        let together = run(&all, "d4.jsonl", 4);
        let mut want: Vec<String> = Vec::new();
        for p in 0..4 {
            let part = dir.path().join(format!("p{p}.jsonl"));
            let text: String = lines
                .iter()
                .filter(|(k, _)| kafka_partition(k.as_bytes(), 4) == p)
                .map(|(_, l)| format!("{l}\n"))
                .collect();
            std::fs::write(&part, text).unwrap();
            want.extend(
                run(&part, &format!("d{p}.jsonl"), 1)
                    .lines()
                    .map(String::from),
            );
        }
        let mut got: Vec<String> = together.lines().map(String::from).collect();
        assert_eq!(got.len(), lines.len());
        got.sort();
        want.sort();
        assert!(
            got == want,
            "decisions of 4 emulated partitions differ from 4 separate replays"
        );
        // And the populations matter: one partition decides some event differently.
        let one = run(&all, "d1.jsonl", 1);
        let mut one: Vec<String> = one.lines().map(String::from).collect();
        one.sort();
        assert_ne!(one, got, "a partition's population is its own");
    }

    #[test]
    fn the_state_file_holds_what_a_restore_would_read() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        let opts = crate::tools::sim::SimParams {
            users: 200,
            days: 10,
            seed: 7,
            ..crate::tools::sim::SimParams::default()
        };
        let mut text = Vec::new();
        for ev in crate::tools::sim::Simulator::new(&opts).unwrap() {
            ev.write_json(&mut text);
            text.push(b'\n');
        }
        std::fs::write(&input, text).unwrap();
        let engine = Engine::new(Config::default());
        let sinks = Sinks {
            state: Some(dir.path().join("state.jsonl")),
            ..Sinks::default()
        };
        let (_, profiles) =
            replay_file(&engine, &input, &sinks, 3, Default::default(), false).unwrap();
        let unhex = |s: &str| -> Vec<u8> {
            (0..s.len() / 2)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        };
        let text = std::fs::read_to_string(dir.path().join("state.jsonl")).unwrap();
        let (mut users, mut pops, mut last) = (0, 0, (0u64, Vec::new()));
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let p = v["partition"].as_u64().unwrap();
            let key = unhex(v["key"].as_str().unwrap());
            let value = unhex(v["value"].as_str().unwrap());
            if key == b"walletguard.population" {
                crate::engine::baseline::Population::decode(&value).unwrap();
                pops += 1;
            } else {
                let k = u64::from_be_bytes(key.as_slice().try_into().unwrap());
                let (prof, _) =
                    crate::engine::feedback::record::decode_record(&value, engine.params())
                        .unwrap();
                assert!(prof.last_seen > 0, "a held profile has been seen");
                assert!((p, key.clone()) > last, "partition, then key order");
                last = (p, key);
                assert!(k != 0);
                users += 1;
            }
        }
        assert_eq!(users, profiles, "one record per profile held");
        assert_eq!(pops, 3, "one population per partition");
    }

    #[test]
    fn oversized_lines_are_dead_lettered_and_gzip_outputs_are_complete() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        let ok = r#"{"event_id":"e1","user_id":"u","ts":1790000000000,"type":"login"}"#;
        let huge = format!(r#"{{"event_id":"big","pad":"{}"}}"#, "x".repeat(200_000));
        let ok2 = r#"{"event_id":"e2","user_id":"u","ts":1790000001000,"type":"login"}"#;
        std::fs::write(&input, format!("{ok}\n{huge}\n{ok2}\n")).unwrap();
        let sinks = Sinks {
            decisions: Some(dir.path().join("d.jsonl.gz")),
            dlq: Some(dir.path().join("dlq.jsonl")),
            ..Sinks::default()
        };
        let engine = Engine::new(Config::default());
        let mut router = Partitioned::from_states(vec![engine.new_state()]);
        let sum = replay(&engine, &mut router, &input, &sinks, &mut || 0, &mut |_| {}).unwrap();
        assert_eq!((sum.events, sum.invalid), (3, 1));
        let dlq = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(dlq.trim()).unwrap();
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("over the 65536-byte limit"),
            "{v}"
        );
        assert_eq!(v["offset"], 2);
        // The gzip file is complete (trailer written) and holds both decisions.
        let (mut r, _) = open_input(&dir.path().join("d.jsonl.gz")).unwrap();
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
