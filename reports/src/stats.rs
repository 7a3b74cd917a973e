//! Statistics over repeats: mean and a 95 % confidence interval.
//!
//! Method: Student's t interval on the repeats' values (each repeat is one
//! independent run with its own seed): half-width = t(0.975, n−1) · s / √n,
//! with s the sample standard deviation. With one repeat the interval is
//! unknown (reported as `None`): comparisons then fall back on tolerances.

use serde::{Deserialize, Serialize};

#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Half-width of the 95 % interval of the mean; `None` for n < 2.
    pub ci95: Option<f64>,
}

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        31..=60 => 2.021,
        61..=120 => 2.000,
        _ => 1.960,
    }
}

pub fn summarize(values: &[f64]) -> Summary {
    let n = values.len();
    if n == 0 {
        return Summary {
            n,
            mean: f64::NAN,
            ci95: None,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let ci95 = (n >= 2).then(|| {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        t975(n - 1) * (var / n as f64).sqrt()
    });
    Summary { n, mean, ci95 }
}

/// Whether two summaries differ beyond their noise: the difference of the
/// means exceeds the combined half-width √(a² + b²) (a conservative
/// stand-in for Welch's interval), and when either interval is unknown,
/// `fallback` (an absolute tolerance).
pub fn differs(a: &Summary, b: &Summary, fallback: f64) -> bool {
    let noise = match (a.ci95, b.ci95) {
        (Some(x), Some(y)) => (x * x + y * y).sqrt(),
        _ => fallback,
    };
    (a.mean - b.mean).abs() > noise
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_matches_a_worked_example() {
        // 5 values: mean 10, s = 1.5811; t(4) = 2.776 → 2.776 · 1.5811/√5 = 1.963.
        let s = summarize(&[8.0, 9.0, 10.0, 11.0, 12.0]);
        assert_eq!(s.mean, 10.0);
        assert!((s.ci95.unwrap() - 1.963).abs() < 0.001, "{s:?}");
        assert_eq!(summarize(&[3.0]).ci95, None);
        assert!(summarize(&[]).mean.is_nan());
    }

    #[test]
    fn noise_is_not_a_difference() {
        let a = summarize(&[100.0, 104.0, 96.0]);
        let b = summarize(&[101.0, 99.0, 103.0]);
        assert!(!differs(&a, &b, 0.0));
        let c = summarize(&[150.0, 152.0, 148.0]);
        assert!(differs(&a, &c, 0.0));
        // Unknown intervals: the fallback decides.
        let one = summarize(&[105.0]);
        assert!(!differs(&a, &one, 10.0) && differs(&a, &one, 1.0));
    }
}
