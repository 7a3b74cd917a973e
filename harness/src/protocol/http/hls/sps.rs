//! The picture size an H.264 sequence parameter set declares (ITU-T H.264
//! §7.3.2.1.1), which an fMP4 init segment's track header and sample entry
//! state (players size their video element from them before decoding).

use super::ts::unescape;

/// Reads Exp-Golomb and fixed-width fields MSB first.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.at / 8)?;
        let b = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |v, _| Some((v << 1) | self.bit()?))
    }

    /// ue(v).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// se(v).
    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let magnitude = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { magnitude } else { -magnitude })
    }
}

/// Profiles whose SPS carries chroma format, bit depths and scaling lists.
const HIGH_PROFILES: [u32; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// The width and height (after cropping) of `sps`, a NAL unit with its
/// header byte; None if it is not a readable SPS.
pub fn dimensions(sps: &[u8]) -> Option<(u16, u16)> {
    if sps.first()? & 0x1f != 7 {
        return None;
    }
    let raw = unescape(&sps[1..]);
    let mut r = Bits { data: &raw, at: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    if HIGH_PROFILES.contains(&profile) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit depths
        r.ue()?;
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    // Crop units (Table 6-1): 4:2:0 halves both, 4:2:2 the width only.
    let (unit_x, unit_y) = match chroma {
        0 | 3 => (1, 1),
        1 => (2, 2),
        _ => (2, 1),
    };
    let unit_y = unit_y * (2 - frame_mbs_only);
    // Checked: the fields are up to 32 bits and come from the publisher.
    let crop = |unit: u32, a: u32, b: u32| unit.checked_mul(a.checked_add(b)?);
    let width = width_mbs
        .checked_mul(16)?
        .checked_sub(crop(unit_x, left, right)?)?;
    let height = height_units
        .checked_mul(16 * (2 - frame_mbs_only))?
        .checked_sub(crop(unit_y, top, bottom)?)?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

/// scaling_list(): its deltas, read and dropped.
fn skip_scaling_list(r: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_of_x264_parameter_sets() {
        // Glass's synthetic stream's SPS (x264, Constrained Baseline).
        let baseline = [
            0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03,
            0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf2, 0x3c, 0x58, 0xba, 0x80,
        ];
        assert_eq!(dimensions(&baseline), Some((640, 360)));
        // x264 High profile, 1280x720.
        let high = [
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
        ];
        assert_eq!(dimensions(&high), Some((1280, 720)));
        // x264 High 4:4:4 Predictive, 1920x1080 (from 1920x1088 by the
        // cropping rectangle): ffmpeg -f lavfi -i testsrc=s=1920x1080
        // -frames:v 1 -c:v libx264 -f h264.
        let high444 = [
            0x67, 0xf4, 0x00, 0x28, 0x91, 0x9b, 0x28, 0x0f, 0x00, 0x44, 0xfc, 0x4e, 0x02, 0x20,
            0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x81, 0xe3, 0x06, 0x32, 0xc0,
        ];
        assert_eq!(dimensions(&high444), Some((1920, 1080)));
    }

    #[test]
    fn refuses_what_is_not_an_sps() {
        assert_eq!(dimensions(&[]), None);
        assert_eq!(dimensions(&[0x68, 0xce, 0x0f, 0xc8]), None); // a PPS
        assert_eq!(dimensions(&[0x67, 0x42]), None); // cut short
        assert_eq!(dimensions(&[0x67, 0x64, 0, 0x1f, 0, 0, 0, 0]), None);
    }
}
