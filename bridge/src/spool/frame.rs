//! The on-disk record frame, pure (no I/O): `len u32 LE | crc32 u32 LE |
//! payload`, where the payload is `seq u64 LE | kind len u16 | kind | key
//! len u16 | key | body`. The CRC covers the payload, so a torn or
//! overwritten frame is detected rather than replayed as garbage.

use super::Record;

/// Bytes before the payload: length and checksum.
pub const HEADER: usize = 8;
/// Smallest payload: seq and the two string lengths.
const MIN_PAYLOAD: usize = 8 + 2 + 2;

/// Largest frame the `u32` length can describe.
pub const MAX_FRAME: u64 = HEADER as u64 + u32::MAX as u64;

/// The size `encode` will produce.
pub fn frame_len(kind: &str, key: &str, body: &[u8]) -> u64 {
    (HEADER + MIN_PAYLOAD + kind.len() + key.len() + body.len()) as u64
}

/// The frame of one record, ready to be written. `kind` and `key` must fit
/// a `u16` length and the frame `MAX_FRAME`.
pub fn encode(seq: u64, kind: &str, key: &str, body: &[u8]) -> Vec<u8> {
    let payload_len = MIN_PAYLOAD + kind.len() + key.len() + body.len();
    let mut frame = Vec::with_capacity(HEADER + payload_len);
    frame.extend_from_slice(&(payload_len as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.extend_from_slice(&(kind.len() as u16).to_le_bytes());
    frame.extend_from_slice(kind.as_bytes());
    frame.extend_from_slice(&(key.len() as u16).to_le_bytes());
    frame.extend_from_slice(key.as_bytes());
    frame.extend_from_slice(body);
    let crc = crc32(&frame[HEADER..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// What the bytes at the start of `data` hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, intact record and the length of its frame.
    Record(Record, usize),
    /// The data ends inside a frame (a write cut short by a crash).
    Truncated,
    /// A whole frame whose checksum or layout is wrong.
    Corrupt,
}

/// Decodes the frame at the start of `data` (which must not be empty).
pub fn decode(data: &[u8]) -> Decoded {
    if data.len() < HEADER {
        return Decoded::Truncated;
    }
    let len = u32::from_le_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if len < MIN_PAYLOAD {
        return Decoded::Corrupt;
    }
    let Some(payload) = data.get(HEADER..HEADER + len) else {
        return Decoded::Truncated;
    };
    if crc32(payload) != crc {
        return Decoded::Corrupt;
    }
    match parse_payload(payload) {
        Some(record) => Decoded::Record(record, HEADER + len),
        None => Decoded::Corrupt,
    }
}

fn parse_payload(payload: &[u8]) -> Option<Record> {
    let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let (kind, rest) = take_str(&payload[8..])?;
    let (key, body) = take_str(rest)?;
    Some(Record {
        seq,
        kind,
        key,
        body: body.to_vec(),
    })
}

fn take_str(data: &[u8]) -> Option<(String, &[u8])> {
    let len = u16::from_le_bytes(data.get(0..2)?.try_into().ok()?) as usize;
    let text = std::str::from_utf8(data.get(2..2 + len)?).ok()?;
    Some((text.to_owned(), &data[2 + len..]))
}

/// CRC-32 (IEEE 802.3, the zlib/PNG polynomial), table-driven. Kept here
/// rather than taken from a crate: it is a few lines, fast enough for the
/// spool (hundreds of MB/s against a disk that fsyncs), and keeps the spool
/// free of dependencies.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[((crc ^ byte as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_frame_round_trips() {
        let frame = encode(7, "facts", "web01.example.com", b"{\"a\":1}");
        assert_eq!(
            frame.len() as u64,
            frame_len("facts", "web01.example.com", b"{\"a\":1}")
        );
        let mut data = frame.clone();
        data.extend_from_slice(b"next");
        match decode(&data) {
            Decoded::Record(record, len) => {
                assert_eq!(len, frame.len());
                assert_eq!(record.seq, 7);
                assert_eq!(record.kind, "facts");
                assert_eq!(record.key, "web01.example.com");
                assert_eq!(record.body, b"{\"a\":1}");
            }
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn cut_and_flipped_frames_are_told_apart() {
        let frame = encode(1, "report", "db01", b"body");
        for cut in 1..frame.len() {
            assert_eq!(decode(&frame[..cut]), Decoded::Truncated, "cut at {cut}");
        }
        let mut flipped = frame.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        assert_eq!(decode(&flipped), Decoded::Corrupt);
        assert_eq!(decode(&[0u8; 16]), Decoded::Corrupt);
    }
}
