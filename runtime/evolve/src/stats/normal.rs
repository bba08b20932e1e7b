//! The standard normal distribution to double precision, without a crate: every p-value and
//! every benchmark Sharpe ratio of this module goes through these two functions, and the
//! deflated Sharpe ratio evaluates Φ⁻¹ at 1 − 1/N for N in the millions, so a 1e-7
//! approximation (Abramowitz–Stegun 26.2.17, Acklam) would show in the results.
//!
//! Φ is W. J. Cody's rational Chebyshev approximation (Math. Comp. 23, 1969; the form of his
//! ANORM / CALERF, as in R's `pnorm`): three ranges, each relative-accurate to ~1e-16, with
//! the tail written as exp(−x²/2)·R(1/x²) so Φ(−37) keeps full relative precision instead of
//! losing it to 1 − Φ(37). Φ⁻¹ is Wichura's AS 241 (PPND16, Appl. Statist. 37, 1988),
//! accurate to about 1 part in 1e16 on (0, 1). Checked against scipy's `ndtr` / `ndtri`
//! in the reference tests (1e-13 relative).

// The coefficients are written with the digits their authors published, so they can be
// checked against the papers; the compiler rounds them to the nearest f64 all the same.
#![allow(clippy::excessive_precision)]

/// 1/√(2π).
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_677_939_946_059_934;
/// √32: where Cody's middle range ends.
const SQRT_32: f64 = 5.656_854_249_492_380_195_206_754_896_84;

/// Cody's first range |x| ≤ 0.67448975 (the upper quartile): Φ(x) = ½ + x·P(x²)/Q(x²).
const A: [f64; 5] = [
    2.235_252_035_460_683_928_7,
    161.028_231_068_555_878_81,
    1_067.689_485_460_370_958_2,
    18_154.981_253_343_561_249,
    0.065_682_337_918_207_449_113,
];
const B: [f64; 4] = [
    47.202_581_904_688_241_87,
    976.098_551_737_776_693_22,
    10_260.932_208_618_978_205,
    45_507.789_335_026_729_956,
];
/// Second range up to √32: the tail is exp(−x²/2)·P(|x|)/Q(|x|).
const C: [f64; 9] = [
    0.398_941_512_088_134_667_64,
    8.883_149_794_388_375_941_2,
    93.506_656_132_177_855_979,
    597.270_276_394_800_262_26,
    2_494.537_585_290_372_671_1,
    6_848.190_450_536_282_332_6,
    11_602.651_437_647_350_124,
    9_842.714_838_383_978_021_8,
    1.076_557_677_372_019_231_7e-8,
];
const D: [f64; 8] = [
    22.266_688_044_328_115_691,
    235.387_901_782_624_998_61,
    1_519.377_599_407_554_805,
    6_485.558_298_266_760_755,
    18_615.571_640_885_098_091,
    34_900.952_721_145_977_266,
    38_912.003_286_093_271_411,
    19_685.429_676_859_990_727,
];
/// Third range, |x| > √32: the tail is exp(−x²/2)/|x|·(1/√(2π) − R(1/x²)/x²).
const P: [f64; 6] = [
    0.215_898_534_057_956_99,
    0.127_401_161_160_247_363_9,
    0.022_235_277_870_649_807,
    0.001_421_619_193_227_893_466,
    2.911_287_495_116_879_2e-5,
    0.023_073_441_764_940_173_03,
];
const Q: [f64; 5] = [
    1.284_260_096_144_911_21,
    0.468_238_212_480_865_118,
    0.065_988_137_868_928_551_5,
    0.003_782_396_332_027_582_44,
    7.297_515_550_839_662_05e-5,
];

/// exp(−x²/2)·factor, with x² split as xs² + (x − xs)(x + xs) where xs is x rounded down to
/// a multiple of 1/16: xs² is exact, so the large exponent carries no rounding error (Cody).
fn gaussian_tail(x: f64, factor: f64) -> f64 {
    let xs = (x * 16.0).trunc() / 16.0;
    let del = (x - xs) * (x + xs);
    (-xs * xs * 0.5).exp() * (-del * 0.5).exp() * factor
}

/// (Φ(x), 1 − Φ(x)), each computed directly where it is the small one, so neither loses
/// relative precision to cancellation.
fn cdf_pair(x: f64) -> (f64, f64) {
    if x.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    let y = x.abs();
    if y <= 0.674_489_75 {
        let (mut num, mut den) = (0.0, 0.0);
        if y > f64::EPSILON * 0.5 {
            let xsq = x * x;
            num = A[4] * xsq;
            den = xsq;
            for i in 0..3 {
                num = (num + A[i]) * xsq;
                den = (den + B[i]) * xsq;
            }
        }
        let t = x * (num + A[3]) / (den + B[3]);
        return (0.5 + t, 0.5 - t);
    }
    // The smaller tail, P(Z > |x|); Φ(−37.5) is still a normal double, Φ(−38.5) underflows.
    let small = if y <= SQRT_32 {
        let mut num = C[8] * y;
        let mut den = y;
        for i in 0..7 {
            num = (num + C[i]) * y;
            den = (den + D[i]) * y;
        }
        gaussian_tail(y, (num + C[7]) / (den + D[7]))
    } else if y < 38.5 {
        let xsq = 1.0 / (x * x);
        let mut num = P[5] * xsq;
        let mut den = xsq;
        for i in 0..4 {
            num = (num + P[i]) * xsq;
            den = (den + Q[i]) * xsq;
        }
        let r = xsq * (num + P[4]) / (den + Q[4]);
        gaussian_tail(y, (FRAC_1_SQRT_2PI - r) / y)
    } else {
        0.0
    };
    if x > 0.0 {
        (1.0 - small, small)
    } else {
        (small, 1.0 - small)
    }
}

/// Φ(x), the standard normal distribution function. NaN for NaN; 0 and 1 at the infinities.
pub fn normal_cdf(x: f64) -> f64 {
    cdf_pair(x).0
}

/// 1 − Φ(x) = Φ(−x), computed without cancellation: a one-sided p-value far in the upper tail
/// keeps its digits.
pub fn normal_sf(x: f64) -> f64 {
    cdf_pair(x).1
}

/// AS 241 coefficients. Central region |p − ½| ≤ 0.425.
const A241: [f64; 8] = [
    3.387_132_872_796_366_608,
    133.141_667_891_784_377_45,
    1_971.590_950_306_551_442_7,
    13_731.693_765_509_461_125,
    45_921.953_931_549_871_457,
    67_265.770_927_008_700_853,
    33_430.575_583_588_128_105,
    2_509.080_928_730_122_672_7,
];
const B241: [f64; 8] = [
    1.0,
    42.313_330_701_600_911_252,
    687.187_007_492_057_908_3,
    5_394.196_021_424_751_107_7,
    21_213.794_301_586_595_867,
    39_307.895_800_092_710_61,
    28_729.085_735_721_942_674,
    5_226.495_278_852_854_561,
];
/// Intermediate tail, r = √(−ln min(p, 1−p)) ≤ 5.
const C241: [f64; 8] = [
    1.423_437_110_749_683_577_34,
    4.630_337_846_156_545_295_9,
    5.769_497_221_460_691_405_5,
    3.647_848_324_763_204_605_04,
    1.270_458_252_452_368_382_58,
    0.241_780_725_177_450_611_77,
    0.022_723_844_989_269_184_583_3,
    7.745_450_142_783_414_076_4e-4,
];
const D241: [f64; 8] = [
    1.0,
    2.053_191_626_637_758_821_87,
    1.676_384_830_183_803_849_4,
    0.689_767_334_985_100_004_55,
    0.148_103_976_427_480_074_59,
    0.015_198_666_563_616_457_196_6,
    5.475_938_084_995_344_946e-4,
    1.050_750_071_644_416_843_24e-9,
];
/// Far tail, r > 5 (min(p, 1−p) < 1.4e-11).
const E241: [f64; 8] = [
    6.657_904_643_501_103_777_2,
    5.463_784_911_164_114_369_9,
    1.784_826_539_917_291_335_8,
    0.296_560_571_828_504_891_23,
    0.026_532_189_526_576_123_093,
    0.001_242_660_947_388_078_438_6,
    2.711_555_568_743_487_578_15e-5,
    2.010_334_399_292_288_132_65e-7,
];
const F241: [f64; 8] = [
    1.0,
    0.599_832_206_555_887_937_69,
    0.136_929_880_922_735_805_31,
    0.014_875_361_290_850_614_852_5,
    7.868_691_311_456_132_591e-4,
    1.846_318_317_510_054_681_8e-5,
    1.421_511_758_316_445_888_7e-7,
    2.044_263_103_389_939_785_64e-15,
];

/// num(r)/den(r) with both polynomials of degree 7, coefficients lowest first (Horner).
fn ratio(num: &[f64; 8], den: &[f64; 8], r: f64) -> f64 {
    let n = num.iter().rev().fold(0.0, |acc, c| acc * r + c);
    let d = den.iter().rev().fold(0.0, |acc, c| acc * r + c);
    n / d
}

/// Φ⁻¹(p), the standard normal quantile (Wichura's AS 241). −∞ at 0, +∞ at 1, NaN outside
/// [0, 1] or for NaN.
pub fn normal_inv_cdf(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180_625 - q * q;
        return q * ratio(&A241, &B241, r);
    }
    // The tail's own probability, taken from the side where it is exact.
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = (-tail.ln()).sqrt();
    let z = if r <= 5.0 {
        ratio(&C241, &D241, r - 1.6)
    } else {
        ratio(&E241, &F241, r - 5.0)
    };
    if q < 0.0 { -z } else { z }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetry_and_round_trip() {
        for &x in &[-9.0, -5.0, -2.0, -0.5, 0.0, 0.3, 1.7, 4.0, 6.5] {
            let (c, s) = (normal_cdf(x), normal_sf(x));
            assert!((c + s - 1.0).abs() < 1e-15, "{x}");
            assert_eq!(normal_cdf(-x), normal_sf(x));
            // Invert through the smaller tail: near 1, Φ itself has no digits left.
            let back = if x > 0.0 {
                -normal_inv_cdf(s)
            } else {
                normal_inv_cdf(c)
            };
            assert!((back - x).abs() < 1e-13 * x.abs().max(1.0), "{x} {back}");
        }
    }

    #[test]
    fn degenerate_inputs() {
        assert!(normal_cdf(f64::NAN).is_nan());
        assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
        assert_eq!(normal_cdf(-40.0), 0.0);
        assert!(normal_inv_cdf(f64::NAN).is_nan());
        assert!(normal_inv_cdf(-0.1).is_nan());
        assert!(normal_inv_cdf(1.1).is_nan());
        assert_eq!(normal_inv_cdf(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_inv_cdf(1.0), f64::INFINITY);
        assert_eq!(normal_inv_cdf(0.5), 0.0);
    }
}
