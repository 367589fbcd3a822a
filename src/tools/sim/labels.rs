//! The labels file `simulate` writes beside its events (CSV: `event_id,user_id,label,scenario`),
//! row by row; [`crate::tools::eval::labels`] reads it.

use std::io::{self, Write};

/// The header row.
pub const HEADER: [&str; 4] = ["event_id", "user_id", "label", "scenario"];

/// Writes a labels file row by row.
pub struct LabelWriter<W: Write> {
    w: csv::Writer<W>,
}

impl<W: Write> LabelWriter<W> {
    /// Starts a labels file: writes the header.
    pub fn new(w: W) -> io::Result<Self> {
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(w);
        w.write_record(HEADER).map_err(io::Error::from)?;
        Ok(LabelWriter { w })
    }

    /// Writes one row (`label` is 0 or 1; `scenario` may be empty).
    pub fn write_raw(
        &mut self,
        event_id: &[u8],
        user_id: &[u8],
        label: u8,
        scenario: &[u8],
    ) -> io::Result<()> {
        let l: &[u8] = if label != 0 { b"1" } else { b"0" };
        self.w
            .write_record([event_id, user_id, l, scenario])
            .map_err(io::Error::from)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.w.into_inner().map_err(|e| e.into_error())
    }
}
