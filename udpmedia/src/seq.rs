//! Extending 32-bit wire counters (sequence numbers, µs clocks) to 64 bits
//! relative to the last value seen, so they never wrap inside the state
//! machines.

/// The 64-bit value nearest `reference` whose low 32 bits are `wire`.
pub fn unwrap(reference: u64, wire: u32) -> u64 {
    let diff = i64::from(wire.wrapping_sub(reference as u32) as i32);
    (reference as i64).saturating_add(diff).max(0) as u64
}

/// Extends a 32-bit counter that mostly moves forward.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unwrapper {
    last: Option<u64>,
}

impl Unwrapper {
    pub fn extend(&mut self, wire: u32) -> u64 {
        let v = match self.last {
            None => u64::from(wire),
            Some(r) => unwrap(r, wire),
        };
        self.last = Some(self.last.map_or(v, |l| l.max(v)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_across_the_32_bit_boundary() {
        assert_eq!(unwrap(10, 12), 12);
        assert_eq!(unwrap(10, 8), 8);
        assert_eq!(unwrap(u64::from(u32::MAX) - 1, 3), u64::from(u32::MAX) + 4);
        assert_eq!(unwrap((1 << 32) + 2, u32::MAX), u64::from(u32::MAX));
        let mut u = Unwrapper::default();
        assert_eq!(u.extend(u32::MAX), u64::from(u32::MAX));
        assert_eq!(u.extend(0), 1 << 32);
        assert_eq!(u.extend(u32::MAX), u64::from(u32::MAX));
    }
}
