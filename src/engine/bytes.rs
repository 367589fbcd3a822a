//! A cursor over encoded bytes, shared by the changelog codecs (profiles in
//! [`crate::engine::baseline::codec`], populations in [`crate::engine::baseline::Population`], feedback cases
//! in [`crate::engine::feedback::case`]): each read takes the next bytes, little-endian, or fails with
//! the codec's own "too short" error. Never panics.

/// See the module docs. `E` is what a read past the end returns.
#[derive(Debug, Clone)]
pub struct Reader<'a, E> {
    bytes: &'a [u8],
    short: E,
}

impl<'a, E: Clone> Reader<'a, E> {
    /// A cursor at the start of `bytes`; a read past their end fails with `short`.
    pub fn new(bytes: &'a [u8], short: E) -> Self {
        Reader { bytes, short }
    }

    /// The next `N` bytes.
    #[inline]
    pub fn take<const N: usize>(&mut self) -> Result<[u8; N], E> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or_else(|| self.short.clone())?;
        self.bytes = rest;
        Ok(*head)
    }

    /// The next `n` bytes, borrowed.
    pub fn slice(&mut self, n: usize) -> Result<&'a [u8], E> {
        if self.bytes.len() < n {
            return Err(self.short.clone());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, E> {
        self.take::<1>().map(|[b]| b)
    }

    /// The next little-endian `u16`.
    #[inline]
    pub fn u16(&mut self) -> Result<u16, E> {
        self.take().map(u16::from_le_bytes)
    }

    /// The next little-endian `u32`.
    #[inline]
    pub fn u32(&mut self) -> Result<u32, E> {
        self.take().map(u32::from_le_bytes)
    }

    /// The next little-endian `u64`.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, E> {
        self.take().map(u64::from_le_bytes)
    }

    /// The next `f32`, from its little-endian bits.
    #[inline]
    pub fn f32(&mut self) -> Result<f32, E> {
        self.u32().map(f32::from_bits)
    }

    /// The next `f64`, from its little-endian bits.
    #[inline]
    pub fn f64(&mut self) -> Result<f64, E> {
        self.u64().map(f64::from_bits)
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// Keeps only the next `n` bytes (all of them if fewer remain).
    pub fn limit(&mut self, n: usize) {
        self.bytes = &self.bytes[..n.min(self.bytes.len())];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_fails_past_the_end() {
        let bytes = [1u8, 2, 0, 3, 0, 0, 0, 9, 8];
        let mut r = Reader::new(&bytes, "short");
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.rest(), &[9, 8]);
        assert_eq!(r.u32(), Err("short"), "too few bytes left");
        assert_eq!(r.rest(), &[9, 8], "a failed read takes nothing");
        assert_eq!(r.slice(2), Ok(&[9u8, 8][..]));
        assert_eq!(r.slice(1), Err("short"));
        let b = 1.5f64.to_le_bytes();
        let mut r = Reader::new(&b, ());
        assert_eq!(r.f64(), Ok(1.5));
        let mut r = Reader::new(&[1, 2, 3], ());
        r.limit(2);
        assert_eq!(r.rest(), &[1, 2]);
    }
}
