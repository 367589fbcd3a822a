//! Fast path for the common event shape: one pass over the bytes, no serde machinery.
//!
//! Accepts only a flat JSON object whose values are unescaped strings, numbers, `true`,
//! `false`, `null`, or (for `geo`) an object of two numbers. Anything else (escapes, nested
//! unknown values, type mismatches, trailing data, bad number syntax) returns `None` and the
//! caller falls back to serde_json, which decodes the rare case and words the error. So the
//! scanner never has to produce an error message, only to be right when it says `Some`.

use std::borrow::Cow;

use super::{Geo, RawEvent, RawTs};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Offset of the first `"`, `\\` or control character (< 0x20) in `b`.
///
/// Eight bytes at a time with SWAR bit tricks: ids and keys are short, and a plain loop or a
/// `memchr` call per string cost more than the scan itself. In each mask only the lowest
/// flagged byte is guaranteed exact (borrows can flag bytes above it), which is the one used.
#[inline]
fn find_special(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        let quote = x ^ (ONES * b'"' as u64);
        let slash = x ^ (ONES * b'\\' as u64);
        let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
        let ctrl = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        let m = zero(quote) | zero(slash) | ctrl;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|c| *c == b'"' || *c == b'\\' || *c < 0x20)
        .map(|p| i + p)
}

struct Cur<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

impl<'a> Cur<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// An unescaped string; `None` on escapes or control characters (serde handles those).
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + find_special(self.b.get(start..)?)?;
        // The first special byte must be the closing quote: a backslash means escapes and a
        // control character is invalid JSON; either way serde decides.
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.s.get(start..end)
    }

    /// A JSON number token, checked against the JSON grammar. Returns the text and whether it
    /// is an integer (no fraction, no exponent).
    #[inline]
    fn number(&mut self) -> Option<(&'a str, bool)> {
        self.ws();
        let start = self.i;
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let d = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == d {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let d = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == d {
                return None;
            }
        }
        self.i = i;
        Some((self.s.get(start..i)?, integer))
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// `null` → Some(None); a string → Some(Some(s)); anything else → None (fall back).
    #[inline]
    fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        self.ws();
        match self.peek()? {
            b'n' => self.literal(b"null").map(|_| None),
            b'"' => self.string().map(|s| Some(Cow::Borrowed(s))),
            _ => None,
        }
    }

    #[inline]
    fn opt_f64(&mut self) -> Option<Option<f64>> {
        self.ws();
        match self.peek()? {
            b'n' => self.literal(b"null").map(|_| None),
            _ => {
                let (t, _) = self.number()?;
                let v: f64 = t.parse().ok()?;
                // serde_json rejects numbers that overflow to infinity; let it word the error.
                v.is_finite().then_some(Some(v))
            }
        }
    }

    fn opt_ts(&mut self) -> Option<Option<RawTs<'a>>> {
        self.ws();
        match self.peek()? {
            b'n' => self.literal(b"null").map(|_| None),
            b'"' => self.string().map(|s| Some(RawTs::Text(Cow::Borrowed(s)))),
            _ => {
                let (t, integer) = self.number()?;
                // serde_json reads `-0` as a float, which `ts` rejects: let it say so.
                if !integer || t == "-0" {
                    return None;
                }
                t.parse::<i64>().ok().map(|v| Some(RawTs::Millis(v)))
            }
        }
    }

    fn opt_geo(&mut self) -> Option<Option<Geo>> {
        self.ws();
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|_| None);
        }
        self.eat(b'{')?;
        let (mut lat, mut lon) = (None, None);
        for n in 0..2 {
            if n == 1 {
                self.eat(b',')?;
            }
            let k = self.string()?;
            self.eat(b':')?;
            let v = self.opt_f64()??;
            match k {
                "lat" if lat.is_none() => lat = Some(v),
                "lon" if lon.is_none() => lon = Some(v),
                _ => return None,
            }
        }
        self.eat(b'}')?;
        Some(Some(Geo {
            lat: lat?,
            lon: lon?,
        }))
    }

    /// Skips a scalar value of an unknown key; nested values fall back.
    fn skip_scalar(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            _ => self.number().map(|_| ()),
        }
    }
}

/// Scans `text` if it has the common shape; `None` means "use the general decoder".
pub(super) fn scan(text: &str) -> Option<RawEvent<'_>> {
    let mut c = Cur {
        b: text.as_bytes(),
        s: text,
        i: 0,
    };
    let mut r = RawEvent::default();
    c.eat(b'{')?;
    c.ws();
    if c.peek()? == b'}' {
        c.i += 1;
    } else {
        loop {
            let key = c.string()?;
            c.eat(b':')?;
            match key {
                "event_id" => r.event_id = c.opt_string()?,
                "user_id" => r.user_id = c.opt_string()?,
                "ts" => r.ts = c.opt_ts()?,
                "type" => r.kind = c.opt_string()?,
                "amount" => r.amount = c.opt_f64()?,
                "currency" => r.currency = c.opt_string()?,
                "status" => r.status = c.opt_string()?,
                "failure_reason" => r.failure_reason = c.opt_string()?,
                "counterparty" => r.counterparty = c.opt_string()?,
                "channel" => r.channel = c.opt_string()?,
                "device_id" => r.device_id = c.opt_string()?,
                "ip" => r.ip = c.opt_string()?,
                "geo" => r.geo = c.opt_geo()?,
                "balance_after" => r.balance_after = c.opt_f64()?,
                "ref_event_id" => r.ref_event_id = c.opt_string()?,
                "result" => r.result = c.opt_string()?,
                "verdict" => r.verdict = c.opt_string()?,
                "note" => r.note = c.opt_string()?,
                _ => c.skip_scalar()?,
            }
            c.ws();
            match c.peek()? {
                b',' => c.i += 1,
                b'}' => {
                    c.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    c.ws();
    (c.i == c.b.len()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::super::parse_raw_serde;
    use super::*;

    const SAMPLES: &[&str] = &[
        r#"{"event_id":"e-1","user_id":"u-42","ts":"2026-10-01T08:15:30.123Z","type":"transfer","amount":250.0,"currency":"CNY","counterparty":"p-991","channel":"app","device_id":"d-7f3a","ip":"203.0.113.7","geo":{"lat":31.23,"lon":121.47},"balance_after":1000.0}"#,
        r#" { "event_id" : "e-2" , "user_id":"u","ts":1790842530123,"type":"login","geo":null,"extra":true,"n":-1.5e3,"z":null,"f":false } "#,
        r#"{"event_id":"e-3","user_id":"用户","ts":"2026-10-01T08:15:30+08:00","type":"payment","amount":0,"counterparty":"m","status":"failed","failure_reason":"insufficient_funds","geo":{"lon":-0.1,"lat":51.5}}"#,
        r#"{}"#,
    ];

    #[test]
    fn find_special_matches_a_plain_search() {
        let mut rng = crate::fuzz::XorShift(0x2545_f491_4f6c_dd1d);
        for len in 0..40 {
            for _ in 0..500 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        let x = rng.next();
                        // Mostly ordinary text, sometimes a special or a high byte.
                        match x % 16 {
                            0 => b'"',
                            1 => b'\\',
                            2 => (x >> 8) as u8 % 0x20,
                            3 => 0x80 | (x >> 8) as u8,
                            _ => b'a' + (x >> 8) as u8 % 26,
                        }
                    })
                    .collect();
                let plain = v
                    .iter()
                    .position(|c| *c == b'"' || *c == b'\\' || *c < 0x20);
                assert_eq!(find_special(&v), plain, "{v:?}");
            }
        }
    }

    #[test]
    fn accepts_the_common_shape() {
        for s in SAMPLES {
            let fast = scan(s).unwrap_or_else(|| panic!("scanner refused {s}"));
            assert_eq!(Some(fast), parse_raw_serde(s).ok(), "{s}");
        }
    }

    #[test]
    fn falls_back_on_unusual_input() {
        for s in [
            r#"{"event_id":"e\u0031"}"#,
            r#"{"x":{"a":1}}"#,
            r#"{"x":[1]}"#,
            r#"{"ts":1.5}"#,
            r#"{"ts":-0}"#,
            r#"{"amount":"10"}"#,
            r#"{"amount":01}"#,
            r#"{"amount":1.}"#,
            r#"{"amount":1e999}"#,
            r#"{"geo":{"lat":1}}"#,
            r#"{"geo":{"lat":1,"lat":2}}"#,
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "{\"a\":\"tab\there\"}",
            r#"[1]"#,
            "",
        ] {
            assert!(scan(s).is_none(), "scanner should refuse {s}");
        }
    }

    /// Differential check: mutate valid events at random; whenever the scanner accepts a
    /// mutant, serde must decode it to exactly the same thing.
    #[test]
    fn agrees_with_serde_on_random_mutants() {
        let mut rng = crate::fuzz::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next();
        let alphabet = b"{}[]\":,.-+eE0123456789 \\nulltruefalse\x01";
        let mut accepted = 0;
        let cases = 200_000 * crate::fuzz::scale();
        for _ in 0..cases {
            let base = SAMPLES[(next() % SAMPLES.len() as u64) as usize].as_bytes();
            let mut m = base.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() % (m.len() as u64 + 1)) as usize;
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 if at < m.len() => m[at] = c,
                    1 if at < m.len() => {
                        m.remove(at);
                    }
                    _ => m.insert(at, c),
                }
            }
            let Ok(s) = std::str::from_utf8(&m) else {
                continue;
            };
            if let Some(fast) = scan(s) {
                accepted += 1;
                assert_eq!(parse_raw_serde(s).ok(), Some(fast), "disagreement on {s}");
            }
        }
        assert!(
            accepted > 1_000,
            "the mutants should often stay valid ({accepted})"
        );
        eprintln!("{cases} event mutants checked, {accepted} accepted");
    }
}
