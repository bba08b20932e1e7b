//! SVG building blocks: plot frame and scales, min/max downsampling, time and value ticks,
//! axes and polylines. Coordinates are written with at most one decimal.

use std::fmt::Write;

use super::fmt::{
    civil_from_days, days_from_civil, escape_into, fmt_date, fmt_hm, fmt_num, push_coord,
};

const DAY: i64 = 86_400;

/// Upper bound on x-buckets per series.
pub(crate) const MAX_BUCKETS: usize = 2_000;

/// Width of every chart in SVG user units (it scales to the page width).
pub(crate) const WIDTH: f64 = 1_000.0;

/// Approximate width of one character of 11px tick-label text.
const CHAR_W: f64 = 6.4;

/// A point with its position in the input: (seq, x, y).
type Seen = (usize, i64, f64);

/// Min/max downsampling: split `[x0, x1]` into `buckets` equal x ranges and keep, per bucket,
/// the lowest and the highest point in their original order (one point when they coincide).
/// Non-finite values are skipped. The input should be sorted by x; the output then has at
/// most `2 * buckets` points.
pub(crate) fn downsample<I>(points: I, x0: i64, x1: i64, buckets: usize) -> Vec<(i64, f64)>
where
    I: IntoIterator<Item = (i64, f64)>,
{
    let buckets = buckets.max(1);
    let span = (x1 as f64 - x0 as f64).max(1.0);
    let scale = buckets as f64 / span;
    let mut out = Vec::with_capacity(2 * buckets + 2);
    // Current bucket and its lowest and highest point.
    let mut cur: Option<(usize, Seen, Seen)> = None;
    let flush = |out: &mut Vec<(i64, f64)>, lo: Seen, hi: Seen| {
        if lo.0 == hi.0 {
            out.push((lo.1, lo.2));
        } else if lo.0 < hi.0 {
            out.push((lo.1, lo.2));
            out.push((hi.1, hi.2));
        } else {
            out.push((hi.1, hi.2));
            out.push((lo.1, lo.2));
        }
    };
    for (seq, (x, y)) in points.into_iter().enumerate() {
        if !y.is_finite() {
            continue;
        }
        // Saturating float-to-int cast: points left of x0 land in bucket 0.
        let b = (((x as f64 - x0 as f64) * scale) as usize).min(buckets - 1);
        let p = (seq, x, y);
        match &mut cur {
            Some((cb, lo, hi)) if *cb == b => {
                if y < lo.2 {
                    *lo = p;
                }
                if y > hi.2 {
                    *hi = p;
                }
            }
            _ => {
                if let Some((_, lo, hi)) = cur {
                    flush(&mut out, lo, hi);
                }
                cur = Some((b, p, p));
            }
        }
    }
    if let Some((_, lo, hi)) = cur {
        flush(&mut out, lo, hi);
    }
    out
}

/// A chart's drawing area and its data→SVG scales.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plot {
    /// Full SVG height.
    pub h: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub x0: f64,
    pub x1: f64,
    pub y0: f64,
    pub y1: f64,
}

impl Plot {
    /// SVG x of unix seconds `t`.
    pub fn sx(&self, t: i64) -> f64 {
        self.left + (t as f64 - self.x0) / (self.x1 - self.x0) * (self.right - self.left)
    }

    /// SVG y of value `v`.
    pub fn sy(&self, v: f64) -> f64 {
        self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)
    }

    /// Number of x-buckets for downsampling a series across this plot.
    pub fn buckets(&self) -> usize {
        (((self.right - self.left) * 2.0) as usize).clamp(1, MAX_BUCKETS)
    }
}

/// An x (time) domain that is never empty.
pub(crate) fn time_domain(lo: i64, hi: i64) -> (i64, i64) {
    if hi > lo {
        (lo, hi)
    } else {
        (lo.saturating_sub(DAY / 2), hi.saturating_add(DAY / 2))
    }
}

/// A y domain around `[lo, hi]` with some head room; never empty.
pub(crate) fn value_domain(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let range = hi - lo;
    if range <= hi.abs().max(lo.abs()) * 1e-9 || range <= f64::MIN_POSITIVE {
        let pad = if hi.abs() > 0.0 { hi.abs() * 0.01 } else { 1.0 };
        return (lo - pad, hi + pad);
    }
    (lo - range * 0.05, hi + range * 0.05)
}

/// A 1/2/2.5/5 × 10^k step near `range / target`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = range / target.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let n = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// Decimals needed to write multiples of `step` exactly.
fn step_decimals(step: f64) -> usize {
    (0..10)
        .find(|&d| {
            let s = step * 10f64.powi(d);
            (s - s.round()).abs() < 1e-6 * s.abs().max(1.0)
        })
        .unwrap_or(10) as usize
}

/// Value ticks inside `[y0, y1]` and the decimals their labels need.
pub(crate) fn value_ticks(y0: f64, y1: f64, target: f64) -> (Vec<f64>, usize) {
    let range = y1 - y0;
    if !(range.is_finite() && range > 0.0) {
        return (vec![y0], 2);
    }
    let step = nice_step(range, target);
    let first = (y0 / step).ceil();
    let mut ticks = Vec::new();
    for i in 0..100 {
        let v = (first + i as f64) * step;
        if v > y1 + step * 1e-9 {
            break;
        }
        // Avoid "-0".
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
    }
    (ticks, step_decimals(step))
}

/// A time-axis step: a fixed number of seconds, or calendar months.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeStep {
    Secs(i64),
    Months(i64),
}

impl TimeStep {
    fn approx_secs(self) -> f64 {
        match self {
            TimeStep::Secs(s) => s as f64,
            TimeStep::Months(m) => m as f64 * 30.44 * DAY as f64,
        }
    }
}

const TIME_STEPS: &[TimeStep] = &[
    TimeStep::Secs(60),
    TimeStep::Secs(120),
    TimeStep::Secs(300),
    TimeStep::Secs(600),
    TimeStep::Secs(900),
    TimeStep::Secs(1800),
    TimeStep::Secs(3600),
    TimeStep::Secs(2 * 3600),
    TimeStep::Secs(3 * 3600),
    TimeStep::Secs(6 * 3600),
    TimeStep::Secs(12 * 3600),
    TimeStep::Secs(DAY),
    TimeStep::Secs(2 * DAY),
    TimeStep::Secs(7 * DAY),
    TimeStep::Secs(14 * DAY),
    TimeStep::Months(1),
    TimeStep::Months(2),
    TimeStep::Months(3),
    TimeStep::Months(6),
    TimeStep::Months(12),
    TimeStep::Months(24),
    TimeStep::Months(60),
    TimeStep::Months(120),
    TimeStep::Months(240),
    TimeStep::Months(600),
    TimeStep::Months(1200),
];

/// Time ticks inside `[x0, x1]` for a plot `plot_w` units wide, and whether their labels need
/// the time of day.
pub(crate) fn time_ticks(x0: i64, x1: i64, plot_w: f64) -> (Vec<i64>, bool) {
    let span = (x1 as f64 - x0 as f64).max(1.0);
    let max_ticks = (plot_w / (10.0 * CHAR_W + 30.0)).floor().max(2.0);
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / s.approx_secs() <= max_ticks)
        .unwrap_or_else(|| {
            let mut m = 1200i64;
            while span / TimeStep::Months(m).approx_secs() > max_ticks && m < i64::MAX / 100 {
                m *= 10;
            }
            TimeStep::Months(m)
        });
    let mut ticks = Vec::new();
    match step {
        TimeStep::Secs(s) => {
            // Weeks start on Mondays (1970-01-05 was one).
            let offset = if s % (7 * DAY) == 0 { 4 * DAY } else { 0 };
            let mut t = (x0 - offset).div_euclid(s) * s + offset;
            if t < x0 {
                t = t.saturating_add(s);
            }
            while t <= x1 && ticks.len() < 100 {
                ticks.push(t);
                t = t.saturating_add(s);
            }
        }
        TimeStep::Months(k) => {
            let (y, m, _) = civil_from_days(x0.div_euclid(DAY));
            let mut mi = y * 12 + i64::from(m) - 1;
            let month_start = |mi: i64| {
                days_from_civil(mi.div_euclid(12), (mi.rem_euclid(12) + 1) as u32, 1)
                    .saturating_mul(DAY)
            };
            if month_start(mi) < x0 {
                mi += 1;
            }
            mi += (k - mi.rem_euclid(k)) % k;
            while ticks.len() < 100 {
                let t = month_start(mi);
                if t > x1 {
                    break;
                }
                ticks.push(t);
                mi += k;
            }
        }
    }
    let intraday = step.approx_secs() < DAY as f64;
    (ticks, intraday)
}

/// Horizontal layout shared by all charts, so their time axes line up when the domains match.
pub(crate) fn plot_for(
    h: f64,
    left: f64,
    bottom_margin: f64,
    x: (i64, i64),
    y: (f64, f64),
) -> Plot {
    Plot {
        h,
        left,
        right: WIDTH - 18.0,
        top: 12.0,
        bottom: h - bottom_margin,
        x0: x.0 as f64,
        x1: x.1 as f64,
        y0: y.0,
        y1: y.1,
    }
}

/// Left margin wide enough for the longest y label.
pub(crate) fn left_margin(labels: &[String]) -> f64 {
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f64;
    (chars * CHAR_W + 16.0).max(48.0)
}

/// Y tick labels for `ticks` with `decimals` (and `suffix`, e.g. `%`), using a true minus sign.
pub(crate) fn y_labels(ticks: &[f64], decimals: usize, suffix: &str) -> Vec<String> {
    ticks
        .iter()
        .map(|&v| {
            let s = fmt_num(v, decimals, v.abs() >= 10_000.0);
            format!("{}{suffix}", s.replacen('-', "\u{2212}", 1))
        })
        .collect()
}

/// Open the `<svg>` element. `data` is extra attributes (already escaped).
pub(crate) fn open_svg(out: &mut String, h: f64, label: &str, data: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label=""#,
        w = WIDTH,
        h = h
    );
    escape_into(out, label);
    out.push('"');
    out.push_str(data);
    out.push('>');
}

/// Grid lines, axis line and tick labels.
pub(crate) fn axes(
    out: &mut String,
    p: &Plot,
    xt: &[i64],
    x_intraday: bool,
    yt: &[f64],
    ylabels: &[String],
) {
    out.push_str(r#"<path class="grid" d=""#);
    for &v in yt {
        let y = p.sy(v);
        out.push('M');
        push_coord(out, p.left);
        out.push(' ');
        push_coord(out, y);
        out.push('H');
        push_coord(out, p.right);
    }
    for &t in xt {
        let x = p.sx(t);
        out.push('M');
        push_coord(out, x);
        out.push(' ');
        push_coord(out, p.top);
        out.push('V');
        push_coord(out, p.bottom);
    }
    out.push_str("\"/>");
    let _ = write!(out, r#"<path class="axis" d="M"#);
    push_coord(out, p.left);
    out.push(' ');
    push_coord(out, p.top);
    out.push('V');
    push_coord(out, p.bottom);
    out.push('H');
    push_coord(out, p.right);
    out.push_str("\"/>");

    out.push_str(r#"<g class="yl" text-anchor="end">"#);
    for (&v, l) in yt.iter().zip(ylabels) {
        out.push_str("<text x=\"");
        push_coord(out, p.left - 6.0);
        out.push_str("\" y=\"");
        push_coord(out, p.sy(v) + 3.8);
        out.push_str("\">");
        escape_into(out, l);
        out.push_str("</text>");
    }
    out.push_str("</g>");

    out.push_str(r#"<g class="xl" text-anchor="middle">"#);
    let mut prev_day: Option<i64> = None;
    for &t in xt {
        let half = if x_intraday { 5.0 } else { 10.0 } * CHAR_W / 2.0;
        let x = p.sx(t).clamp(half + 2.0, WIDTH - half - 2.0);
        let (line1, line2) = if x_intraday {
            let day = t.div_euclid(DAY);
            let date = (prev_day != Some(day)).then(|| fmt_date(t));
            prev_day = Some(day);
            (fmt_hm(t), date)
        } else {
            (fmt_date(t), None)
        };
        out.push_str("<text x=\"");
        push_coord(out, x);
        out.push_str("\" y=\"");
        push_coord(out, p.bottom + 16.0);
        out.push_str("\">");
        out.push_str(&line1);
        out.push_str("</text>");
        if let Some(d) = line2 {
            out.push_str("<text x=\"");
            push_coord(out, x);
            out.push_str("\" y=\"");
            push_coord(out, p.bottom + 30.0);
            out.push_str("\">");
            out.push_str(&d);
            out.push_str("</text>");
        }
    }
    out.push_str("</g>");
}

/// Append `x,y x,y …` of `pts`.
pub(crate) fn push_points(out: &mut String, p: &Plot, pts: &[(i64, f64)]) {
    for (i, &(t, v)) in pts.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_coord(out, p.sx(t));
        out.push(',');
        push_coord(out, p.sy(v));
    }
}

/// Attributes for the hover script: timestamps (first absolute, then deltas), values as
/// displayed, whether times need HH:MM, value suffix and the plot's vertical extent.
pub(crate) fn hover_data(
    pts: &[(i64, f64)],
    decimals: usize,
    suffix: &str,
    intraday: bool,
    p: &Plot,
) -> String {
    let mut s = String::with_capacity(pts.len() * 16 + 64);
    s.push_str(" data-t=\"");
    let mut prev = 0i64;
    for (i, &(t, _)) in pts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}", t.wrapping_sub(prev));
        prev = t;
    }
    s.push_str("\" data-v=\"");
    for (i, &(_, v)) in pts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&fmt_num(v, decimals, false));
    }
    let _ = write!(
        s,
        "\" data-i=\"{}\" data-u=\"{}\" data-top=\"{}\" data-bot=\"{}\"",
        u8::from(intraday),
        suffix,
        super::fmt::coord(p.top),
        super::fmt::coord(p.bottom)
    );
    s
}

/// A chart that only says there is nothing to draw.
pub(crate) fn empty_chart(h: f64, label: &str, message: &str) -> String {
    let mut out = String::new();
    open_svg(&mut out, h, label, "");
    let _ = write!(
        out,
        r#"<rect class="empty" x="1" y="1" width="{}" height="{}"/><text class="msg" x="{}" y="{}" text-anchor="middle">"#,
        WIDTH - 2.0,
        h - 2.0,
        WIDTH / 2.0,
        h / 2.0
    );
    escape_into(&mut out, message);
    out.push_str("</text></svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_spikes_and_bounds_size() {
        let n = 1_000_000i64;
        let pts = (0..n).map(|i| {
            let y = match i {
                123_457 => 1_000.0,
                876_543 => -1_000.0,
                _ => (i as f64 / 5_000.0).sin(),
            };
            (i * 60, y)
        });
        let out = downsample(pts, 0, (n - 1) * 60, MAX_BUCKETS);
        assert!(out.len() <= 2 * MAX_BUCKETS, "{}", out.len());
        assert!(out.contains(&(123_457 * 60, 1_000.0)));
        assert!(out.contains(&(876_543 * 60, -1_000.0)));
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "order kept");
        // Sparse series pass through unchanged.
        let few: Vec<(i64, f64)> = (0..10).map(|i| (i * DAY, i as f64)).collect();
        assert_eq!(downsample(few.iter().copied(), 0, 9 * DAY, 100), few);
        // Non-finite values are skipped, empty input is fine.
        assert_eq!(
            downsample([(0, f64::NAN), (1, 2.0)], 0, 1, 10),
            vec![(1, 2.0)]
        );
        assert!(downsample(std::iter::empty(), 0, 0, 10).is_empty());
    }

    #[test]
    fn time_ticks_are_aligned_and_readable() {
        // 2004-08-19 .. 2013-03-28, daily: yearly ticks on Jan 1.
        let (t, intraday) = time_ticks(1_092_873_600, 1_364_428_800, 900.0);
        assert!(!intraday);
        assert!((3..=10).contains(&t.len()), "{t:?}");
        assert!(t.iter().all(|&x| fmt_date(x).ends_with("-01-01")), "{t:?}");
        // One trading day of minute bars: hourly-ish ticks with HH:MM.
        let (t, intraday) = time_ticks(1_294_045_260, 1_294_045_260 + 6 * 3600, 900.0);
        assert!(intraday);
        assert!(t.len() >= 3 && t.iter().all(|x| x % 1800 == 0), "{t:?}");
        // Degenerate spans.
        let (x0, x1) = time_domain(5, 5);
        assert!(!time_ticks(x0, x1, 900.0).0.is_empty());
        let _ = time_ticks(i64::MIN / 2, i64::MAX / 2, 900.0);
    }

    #[test]
    fn value_ticks_are_nice() {
        let (t, d) = value_ticks(93.0, 812.0, 5.0);
        assert_eq!(t, vec![200.0, 400.0, 600.0, 800.0]);
        assert_eq!(d, 0);
        let (t, d) = value_ticks(1.0701, 1.0733, 5.0);
        assert_eq!(d, 3);
        assert!(t.len() >= 3);
        let (t, _) = value_ticks(-23.4, 0.0, 4.0);
        assert_eq!(t.last(), Some(&0.0));
        assert_eq!(y_labels(&[-5.0], 0, "%"), vec!["\u{2212}5%".to_string()]);
    }
}
