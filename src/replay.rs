//! File adapter: reads JSON lines (plain or gzip) and runs them through the pipeline, writing
//! decisions, alerts, commands and dead letters as JSON lines.
//!
//! Invalid lines never stop a replay: each becomes a dead letter (with its line number as the
//! offset and `file:<path>` as the topic) and is counted.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::decision::Action;
use crate::output;
use crate::pipeline::{CommandKind, Engine, State};
use crate::time::EpochMs;

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
    /// Events whose id was seen before.
    pub duplicates: u64,
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

/// Creates a JSON-lines output; a `.gz` name writes gzip.
pub fn create_output(path: &Path) -> Result<Box<dyn Write>, ReplayError> {
    let f = File::create(path).map_err(io_err("cannot create", path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::write::GzEncoder::new(
            BufWriter::with_capacity(1 << 16, f),
            flate2::Compression::fast(),
        )))
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

/// Replays `input` through `engine`, writing to `sinks`. `clock` gives `now` for each event
/// (wall time in the CLI, fixed in tests); `progress` is called with bytes read so far.
pub fn replay(
    engine: &Engine,
    state: &mut State,
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
    let mut sum = Summary::default();
    let started = Instant::now();
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut lineno: i64 = 0;
    let mut read_bytes = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err("cannot read", input))?;
        if n == 0 {
            break;
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
        match engine.process_bytes(state, raw, clock()) {
            Ok((ev, out)) => {
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
                if let Some(kind) = out.command {
                    match kind {
                        CommandKind::FreezeAccount => sum.freezes += 1,
                        CommandKind::RequireStepUp => sum.step_ups += 1,
                    }
                    if let Some(o) = commands.as_mut() {
                        output::write_command(&mut buf, &ev, &out, kind);
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
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}
