//! Damage to a well-formed message, chosen by the fuzzer's input: the
//! mutations that find parser bugs behind valid headers (a length field at
//! its boundary, a flipped flag, a message cut short or grown).

use arbitrary::{Result, Unstructured};

/// Boundary values for a byte, a 16-bit and a 32-bit field.
const BYTES: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];
const U16S: [u16; 6] = [0, 1, 0x7fff, 0x8000, 0xfffe, 0xffff];
const U32S: [u32; 6] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

/// Applies 0 to 3 mutations to `bytes` (none a quarter of the time, so
/// the well-formed message reaches the code behind the parser too).
pub fn corrupt(bytes: &mut Vec<u8>, u: &mut Unstructured<'_>) -> Result<()> {
    let n = u.int_in_range(0..=3u8)?;
    for _ in 0..n {
        mutate_once(bytes, u)?;
    }
    Ok(())
}

/// One mutation at a position the input chooses.
pub fn mutate_once(bytes: &mut Vec<u8>, u: &mut Unstructured<'_>) -> Result<()> {
    let kind = u.int_in_range(0..=7u8)?;
    if bytes.is_empty() {
        let add: Vec<u8> = u.arbitrary()?;
        bytes.extend(add.into_iter().take(16));
        return Ok(());
    }
    let at = u.choose_index(bytes.len())?;
    match kind {
        0 => bytes[at] ^= 1 << u.int_in_range(0..=7u8)?,
        1 => bytes[at] = *u.choose(&BYTES)?,
        2 => put(bytes, at, &u.choose(&U16S)?.to_be_bytes()),
        3 => put(bytes, at, &u.choose(&U32S)?.to_be_bytes()),
        4 => bytes.truncate(at),
        5 => {
            let n = u.int_in_range(1..=16usize)?;
            let add = u.bytes(n.min(u.len()))?.to_vec();
            bytes.splice(at..at, add);
        }
        6 => {
            // Repeat a slice: duplicated headers, repeated fields.
            let end = (at + u.int_in_range(1..=32usize)?).min(bytes.len());
            let piece = bytes[at..end].to_vec();
            let to = u.choose_index(bytes.len())?;
            bytes.splice(to..to, piece);
        }
        _ => bytes[at] = u.arbitrary()?,
    }
    Ok(())
}

/// Overwrites `bytes[at..]` with `v` as far as it fits.
fn put(bytes: &mut [u8], at: usize, v: &[u8]) {
    let n = v.len().min(bytes.len() - at);
    bytes[at..at + n].copy_from_slice(&v[..n]);
}

/// An arbitrary byte string of up to `max` bytes, mostly short (up to
/// 32): long ones would use up the input in one field, and the messages
/// after it are where the state machines go deep.
pub fn small_bytes<'a>(u: &mut Unstructured<'a>, max: usize) -> Result<&'a [u8]> {
    let cap = if u.ratio(1, 8)? { max } else { max.min(32) };
    let n = u.int_in_range(0..=cap)?;
    u.bytes(n.min(u.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_input_makes_the_same_damage() {
        let data: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37)).collect();
        let run = || {
            let mut m = b"a well-formed message".to_vec();
            let mut u = Unstructured::new(&data);
            for _ in 0..5 {
                corrupt(&mut m, &mut u).unwrap();
            }
            m
        };
        assert_eq!(run(), run());
        assert_ne!(run(), b"a well-formed message".to_vec());
    }

    #[test]
    fn an_exhausted_input_leaves_the_message_alone() {
        let mut m = b"abc".to_vec();
        corrupt(&mut m, &mut Unstructured::new(&[])).unwrap();
        assert_eq!(m, b"abc");
    }
}
