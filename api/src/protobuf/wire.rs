//! The protobuf wire format: varints and tagged records, read from a byte slice. Errors read as Go's
//! generated unmarshalers word them, since that is what kube-apiserver answers.

use super::DecodeError;

/// One record's payload, by wire type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    pub fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32(_) => 5,
        }
    }
}

/// Iterates over the `(tag, value)` records of one message.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::UnexpectedEof);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn record(&mut self) -> Result<(u32, Value<'a>), DecodeError> {
        let key = varint(&mut self.rest)?;
        let tag = u32::try_from(key >> 3).map_err(|_| DecodeError::IntOverflow)?;
        let wire_type = (key & 7) as u8;
        if tag == 0 {
            return Err(DecodeError::IllegalTag { wire_type });
        }
        let value = match wire_type {
            0 => Value::Varint(varint(&mut self.rest)?),
            1 => Value::Fixed64(u64::from_le_bytes(fixed(self.take(8)?))),
            2 => {
                let len = varint(&mut self.rest)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| i64::try_from(*l).is_ok())
                    .ok_or(DecodeError::NegativeLength)?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(fixed(self.take(4)?))),
            _ => return Err(DecodeError::IllegalWireType { wire_type }),
        };
        Ok((tag, value))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u32, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let record = self.record();
        if record.is_err() {
            self.rest = &[];
        }
        Some(record)
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

/// Reads one base-128 varint off the front of `bytes`.
pub fn varint(bytes: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        if i == 10 {
            return Err(DecodeError::IntOverflow);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(value);
        }
    }
    Err(DecodeError::UnexpectedEof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_and_records() {
        let mut b: &[u8] = &[0xac, 0x02, 0x01];
        assert_eq!(varint(&mut b), Ok(300));
        assert_eq!(b, &[0x01]);
        // field 1 varint 150, field 2 bytes "hi", field 3 fixed64 1.0
        let mut bytes = vec![0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19];
        bytes.extend(1.0f64.to_le_bytes());
        let records: Result<Vec<_>, _> = Records::new(&bytes).collect();
        assert_eq!(
            records,
            Ok(vec![
                (1, Value::Varint(150)),
                (2, Value::Bytes(b"hi")),
                (3, Value::Fixed64(1.0f64.to_bits())),
            ])
        );
    }

    #[test]
    fn refuses_truncated_and_malformed_records() {
        fn first(b: &[u8]) -> Result<(u32, Value<'_>), DecodeError> {
            Records::new(b).next().expect("one record")
        }
        assert_eq!(first(&[0x12, 0x05, b'a']), Err(DecodeError::UnexpectedEof));
        assert_eq!(first(&[0x08, 0x80]), Err(DecodeError::UnexpectedEof));
        assert!(Records::new(&[]).next().is_none());
        assert_eq!(
            first(&[0x0b]),
            Err(DecodeError::IllegalWireType { wire_type: 3 })
        );
        assert_eq!(
            first(&[0x02, 0x00]),
            Err(DecodeError::IllegalTag { wire_type: 2 })
        );
        assert_eq!(
            first(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            Err(DecodeError::IntOverflow)
        );
    }
}
