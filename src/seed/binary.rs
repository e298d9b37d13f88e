//! Binary wire encodings for COPY without extra crates: `uuid`, `numeric` (fixed scale 6) and
//! `jsonb` from pre-serialised text.

use bytes::{BufMut as _, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A UUID as 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parse the canonical text form (`8-4-4-4-12` hex digits).
    #[must_use]
    pub fn parse(text: &str) -> Option<Uuid> {
        let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(Uuid(out))
    }

    /// A version-4 UUID from 16 random bytes.
    #[must_use]
    pub fn v4(mut bytes: [u8; 16]) -> Uuid {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid(bytes)
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl ToSql for Uuid {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }

    to_sql_checked!();
}

/// A non-negative decimal with 6 fractional digits, held as millionths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Micros(pub u64);

impl ToSql for Micros {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        // NUMERIC's binary form: base-10000 digits with a weight (the power of the first one).
        let integer = self.0 / 1_000_000;
        let fraction = self.0 % 1_000_000 * 100; // 8 decimal digits = two base-10000 digits
        let mut int_digits = Vec::new();
        let mut n = integer;
        while n > 0 {
            int_digits.push(i16::try_from(n % 10_000).expect("< 10000"));
            n /= 10_000;
        }
        int_digits.reverse();
        let mut digits = int_digits.clone();
        digits.push(i16::try_from(fraction / 10_000).expect("< 10000"));
        digits.push(i16::try_from(fraction % 10_000).expect("< 10000"));
        let mut weight = i16::try_from(int_digits.len()).expect("few digits") - 1;
        while digits.first() == Some(&0) {
            digits.remove(0);
            weight -= 1;
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            weight = 0;
        }
        out.put_i16(i16::try_from(digits.len()).expect("few digits"));
        out.put_i16(weight);
        out.put_u16(0x0000); // positive
        out.put_i16(6); // display scale
        for d in digits {
            out.put_i16(d);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

/// A `jsonb` value from text that is already valid JSON.
#[derive(Debug, Clone)]
pub struct RawJson(pub String);

impl ToSql for RawJson {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_u8(1); // jsonb binary format version
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_round_trip() {
        let u = Uuid::parse("0123abcd-0000-4000-8000-00000000ffff").expect("valid");
        assert_eq!(u.0[0], 0x01);
        assert_eq!(u.0[15], 0xff);
        assert!(Uuid::parse("nope").is_none());
        assert_eq!(u.to_string(), "0123abcd-0000-4000-8000-00000000ffff");
        let v = Uuid::v4([0xff; 16]);
        assert_eq!(v.0[6] >> 4, 4);
        assert_eq!(v.0[8] >> 6, 2);
    }

    fn encode(m: u64) -> Vec<i16> {
        let mut buf = BytesMut::new();
        Micros(m).to_sql(&Type::NUMERIC, &mut buf).expect("encode");
        buf.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_encoding() {
        // 0 -> no digits
        assert_eq!(encode(0), [0, 0, 0, 6]);
        // 1.5 -> digits [1, 5000], weight 0
        assert_eq!(encode(1_500_000), [2, 0, 0, 6, 1, 5000]);
        // 0.000123 -> 0.0001|2300 -> digits [1, 2300] weight -1
        assert_eq!(encode(123), [2, -1, 0, 6, 1, 2300]);
        // 12345.000001 -> [1, 2345, 0, 100], weight 1
        assert_eq!(encode(12_345_000_001), [4, 1, 0, 6, 1, 2345, 0, 100]);
    }
}
