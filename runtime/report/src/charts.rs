//! The report's charts: equity, drawdown and price-with-trades, each as one inline `<svg>`.

use std::collections::HashSet;
use std::fmt::Write;

use super::fmt::{coord, escape_into, fmt_num, fmt_trim, fmt_ts, push_coord};
use super::svg::{
    Plot, axes, downsample, empty_chart, hover_data, left_margin, open_svg, plot_for, push_points,
    time_domain, time_ticks, value_domain, value_ticks, y_labels,
};
use qtm_core::model::{Bar, EquityPoint, Trade};

/// Height of the equity chart.
const EQUITY_H: f64 = 300.0;
/// Height of the drawdown chart.
const DRAWDOWN_H: f64 = 170.0;
/// Height of a price chart.
const PRICE_H: f64 = 340.0;
/// Trades per price chart beyond which markers are thinned out (every k-th trade).
pub(crate) const MAX_MARKED_TRADES: usize = 2_000;
/// Trades per price chart up to which each trade gets its own hover title.
const MAX_TITLED_TRADES: usize = 300;

/// Bottom margin: room for one or two lines of time labels.
fn bottom_margin(intraday_labels: bool) -> f64 {
    if intraday_labels { 40.0 } else { 26.0 }
}

/// Lay out a time/value plot: ticks, labels and the left margin they need.
struct Layout {
    plot: Plot,
    xt: Vec<i64>,
    x_intraday: bool,
    yt: Vec<f64>,
    ylabels: Vec<String>,
}

fn layout(
    h: f64,
    x: (i64, i64),
    y: (f64, f64),
    suffix: &str,
    keep_tick: impl Fn(f64) -> bool,
) -> Layout {
    let provisional = plot_for(h, 60.0, 26.0, x, y);
    let target = ((provisional.bottom - provisional.top) / 48.0).clamp(2.0, 8.0);
    let (yt, dec) = value_ticks(y.0, y.1, target);
    let yt: Vec<f64> = yt.into_iter().filter(|&v| keep_tick(v)).collect();
    let ylabels = y_labels(&yt, dec, suffix);
    let left = left_margin(&ylabels);
    let (xt, x_intraday) = time_ticks(x.0, x.1, super::svg::WIDTH - 18.0 - left);
    let plot = plot_for(h, left, bottom_margin(x_intraday), x, y);
    Layout {
        plot,
        xt,
        x_intraday,
        yt,
        ylabels,
    }
}

/// Min and max of the finite values.
fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// The equity curve (`equity` sorted by time), with the starting value as a dashed line and a
/// band along the bottom where a position was open.
pub(crate) fn equity_chart(equity: &[EquityPoint], intraday: bool) -> String {
    let label = "Equity curve";
    let Some((lo, hi)) = finite_range(equity.iter().map(|p| p.equity)) else {
        return empty_chart(EQUITY_H, label, "No equity data");
    };
    let x = time_domain(equity[0].ts, equity[equity.len() - 1].ts);
    let l = layout(EQUITY_H, x, value_domain(lo, hi), "", |_| true);
    let p = &l.plot;
    let pts = downsample(
        equity.iter().map(|e| (e.ts, e.equity)),
        x.0,
        x.1,
        p.buckets(),
    );

    let mut out = String::with_capacity(pts.len() * 30 + 4_096);
    open_svg(&mut out, p.h, label, &hover_data(&pts, 2, "", intraday, p));
    axes(&mut out, p, &l.xt, l.x_intraday, &l.yt, &l.ylabels);

    // Exposure band: runs of buckets in which any point was in the market.
    let buckets = p.buckets();
    let mut in_mkt = vec![false; buckets];
    let scale = buckets as f64 / (x.1 as f64 - x.0 as f64).max(1.0);
    for e in equity.iter().filter(|e| e.in_market) {
        let b = (((e.ts as f64 - x.0 as f64) * scale) as usize).min(buckets - 1);
        in_mkt[b] = true;
    }
    let bw = (p.right - p.left) / buckets as f64;
    let mut band = String::new();
    let mut b = 0;
    while b < buckets {
        if !in_mkt[b] {
            b += 1;
            continue;
        }
        let start = b;
        while b < buckets && in_mkt[b] {
            b += 1;
        }
        band.push('M');
        push_coord(&mut band, p.left + start as f64 * bw);
        band.push(' ');
        push_coord(&mut band, p.bottom - 5.0);
        band.push('h');
        push_coord(&mut band, ((b - start) as f64 * bw).max(0.5));
        band.push_str("v5H");
        push_coord(&mut band, p.left + start as f64 * bw);
        band.push('z');
    }
    if !band.is_empty() {
        let _ = write!(
            out,
            r#"<path class="mkt" d="{band}"><title>in the market</title></path>"#
        );
    }

    if let Some(&(_, first)) = pts.first() {
        let y = coord(p.sy(first));
        let _ = write!(
            out,
            r#"<path class="base" d="M{} {y}H{}"/>"#,
            coord(p.left),
            coord(p.right)
        );
    }
    out.push_str(r#"<polyline class="s line eq" points=""#);
    push_points(&mut out, p, &pts);
    out.push_str("\"/></svg>");
    out
}

/// What the drawdown chart found.
pub(crate) struct DrawdownInfo {
    /// Deepest drawdown in percent (≤ 0) and when it happened.
    pub max: Option<(f64, i64)>,
}

/// Percent below the running peak of `equity` (sorted by time), as a filled area.
pub(crate) fn drawdown_chart(equity: &[EquityPoint], intraday: bool) -> (String, DrawdownInfo) {
    let label = "Drawdown";
    let series = || {
        let mut peak = f64::NEG_INFINITY;
        equity
            .iter()
            .filter(|e| e.equity.is_finite())
            .map(move |e| {
                peak = peak.max(e.equity);
                let dd = if peak > 0.0 {
                    (e.equity / peak - 1.0) * 100.0
                } else {
                    0.0
                };
                (e.ts, if dd.is_finite() { dd.min(0.0) } else { 0.0 })
            })
    };
    let mut max: Option<(f64, i64)> = None;
    for (t, dd) in series() {
        if max.is_none_or(|(m, _)| dd < m) {
            max = Some((dd, t));
        }
    }
    let Some((lo, _)) = max else {
        return (
            empty_chart(DRAWDOWN_H, label, "No equity data"),
            DrawdownInfo { max: None },
        );
    };
    let x = time_domain(equity[0].ts, equity[equity.len() - 1].ts);
    let y0 = if lo < 0.0 { lo * 1.08 } else { -1.0 };
    let y = (y0, -y0 * 0.04);
    let l = layout(DRAWDOWN_H, x, y, "%", |v| v <= 0.0);
    let p = &l.plot;
    let pts = downsample(series(), x.0, x.1, p.buckets());

    let mut out = String::with_capacity(pts.len() * 40 + 4_096);
    open_svg(&mut out, p.h, label, &hover_data(&pts, 2, "%", intraday, p));
    axes(&mut out, p, &l.xt, l.x_intraday, &l.yt, &l.ylabels);
    if let (Some(&(t0, _)), Some(&(t1, _))) = (pts.first(), pts.last()) {
        let zero = coord(p.sy(0.0));
        let _ = write!(out, r#"<path class="dda" d="M{} {zero}L"#, coord(p.sx(t0)));
        push_points(&mut out, p, &pts);
        let _ = write!(out, r#"L{} {zero}Z"/>"#, coord(p.sx(t1)));
    }
    out.push_str(r#"<polyline class="s line dd" points=""#);
    push_points(&mut out, p, &pts);
    out.push_str("\"/></svg>");
    (out, DrawdownInfo { max })
}

/// What a price chart drew.
pub(crate) struct PriceInfo {
    /// Trades of the symbol.
    pub trades: usize,
    /// Every `stride`-th trade got markers (1 = all).
    pub stride: usize,
}

/// Close prices of one symbol (`bars` sorted by time) with its trades marked: entry ▲ (long,
/// green) / ▼ (short, red), exit ✕ and a thin entry→exit line coloured by win/loss.
pub(crate) fn price_chart(
    symbol: &str,
    bars: &[Bar],
    trades: &[&Trade],
    decimals: usize,
    intraday: bool,
) -> (String, PriceInfo) {
    let label = format!("{symbol} price with trades");
    let mut info = PriceInfo {
        trades: trades.len(),
        stride: 1,
    };
    if bars.is_empty() {
        return (
            empty_chart(PRICE_H, &label, &format!("No price data for {symbol}")),
            info,
        );
    }
    let trade_ts = trades
        .iter()
        .flat_map(|t| std::iter::once(t.entry_ts).chain(t.exit_ts));
    let x_lo = trade_ts.clone().fold(bars[0].ts, i64::min);
    let x_hi = trade_ts.fold(bars[bars.len() - 1].ts, i64::max);
    let x = time_domain(x_lo, x_hi);
    let trade_px = trades
        .iter()
        .flat_map(|t| std::iter::once(t.entry_price).chain(t.exit_price));
    let Some((lo, hi)) = finite_range(bars.iter().map(|b| b.close).chain(trade_px)) else {
        return (
            empty_chart(PRICE_H, &label, &format!("No price data for {symbol}")),
            info,
        );
    };
    let l = layout(PRICE_H, x, value_domain(lo, hi), "", |_| true);
    let p = &l.plot;
    let pts = downsample(bars.iter().map(|b| (b.ts, b.close)), x.0, x.1, p.buckets());

    let mut out =
        String::with_capacity(pts.len() * 30 + trades.len().min(MAX_MARKED_TRADES) * 120 + 4_096);
    open_svg(
        &mut out,
        p.h,
        &label,
        &hover_data(&pts, decimals, "", intraday, p),
    );
    axes(&mut out, p, &l.xt, l.x_intraday, &l.yt, &l.ylabels);
    out.push_str(r#"<polyline class="s line px" points=""#);
    push_points(&mut out, p, &pts);
    out.push_str("\"/>");

    info.stride = trades.len().div_ceil(MAX_MARKED_TRADES).max(1);
    let marked = trades.iter().step_by(info.stride);
    if trades.len() <= MAX_TITLED_TRADES {
        for t in marked {
            let m = Markers::of(t, p);
            out.push_str("<g><title>");
            escape_into(&mut out, &trade_title(t, decimals, intraday));
            out.push_str("</title>");
            if let Some(line) = &m.line {
                let _ = write!(out, r#"<path class="tl {}" d="{line}"/>"#, m.result);
            }
            let _ = write!(out, r#"<path class="{}" d="{}"/>"#, m.entry_class, m.entry);
            if let Some(x) = &m.exit {
                let _ = write!(out, r#"<path class="x {}" d="{x}"/>"#, m.result);
            }
            out.push_str("</g>");
        }
    } else {
        // One path per kind; markers that would land on the same half-unit are drawn once.
        let mut seen: HashSet<(u8, i32, i32, i32, i32)> = HashSet::new();
        let q = |v: f64| (v * 2.0).round() as i32;
        let mut paths: [String; 6] = Default::default();
        for t in marked {
            let m = Markers::of(t, p);
            let res = usize::from(m.result == "loss");
            if let (Some(line), Some((ex, ey))) = (&m.line, m.exit_at) {
                let key = (res as u8, q(m.at.0), q(m.at.1), q(ex), q(ey));
                if seen.insert(key) {
                    paths[res].push_str(line);
                }
            }
            let kind = if m.entry_class == "el" { 2 } else { 3 };
            if seen.insert((kind as u8, q(m.at.0), q(m.at.1), -1, -1)) {
                paths[kind].push_str(&m.entry);
            }
            if let (Some(x), Some((ex, ey))) = (&m.exit, m.exit_at)
                && seen.insert((4 + res as u8, q(ex), q(ey), -1, -1))
            {
                paths[4 + res].push_str(x);
            }
        }
        let classes = ["tl win", "tl loss", "el", "es", "x win", "x loss"];
        for (class, d) in classes.iter().zip(&paths) {
            if !d.is_empty() {
                let _ = write!(out, r#"<path class="{class}" d="{d}"/>"#);
            }
        }
    }
    out.push_str("</svg>");
    (out, info)
}

/// Path data of one trade's marks.
struct Markers {
    at: (f64, f64),
    exit_at: Option<(f64, f64)>,
    entry: String,
    entry_class: &'static str,
    exit: Option<String>,
    line: Option<String>,
    result: &'static str,
}

impl Markers {
    fn of(t: &Trade, p: &Plot) -> Markers {
        let (x, y) = (p.sx(t.entry_ts), p.sy(t.entry_price));
        let long = t.quantity >= 0.0;
        let mut entry = String::with_capacity(24);
        entry.push('M');
        push_coord(&mut entry, x);
        entry.push(' ');
        if long {
            push_coord(&mut entry, y - 5.0);
            entry.push_str("l4.5 8h-9z");
        } else {
            push_coord(&mut entry, y + 5.0);
            entry.push_str("l4.5 -8h-9z");
        }
        let exit_at = match (t.exit_ts, t.exit_price) {
            (Some(ts), Some(px)) if px.is_finite() => Some((p.sx(ts), p.sy(px))),
            _ => None,
        };
        let exit = exit_at.map(|(ex, ey)| {
            let mut s = String::with_capacity(28);
            s.push('M');
            push_coord(&mut s, ex - 3.5);
            s.push(' ');
            push_coord(&mut s, ey - 3.5);
            s.push_str("l7 7m0 -7l-7 7");
            s
        });
        let line = exit_at.map(|(ex, ey)| {
            let mut s = String::with_capacity(28);
            s.push('M');
            push_coord(&mut s, x);
            s.push(' ');
            push_coord(&mut s, y);
            s.push('L');
            push_coord(&mut s, ex);
            s.push(' ');
            push_coord(&mut s, ey);
            s
        });
        Markers {
            at: (x, y),
            exit_at,
            entry,
            entry_class: if long { "el" } else { "es" },
            exit,
            line,
            result: if t.pnl > 0.0 { "win" } else { "loss" },
        }
    }
}

/// One-line description of a trade for hover titles.
fn trade_title(t: &Trade, decimals: usize, intraday: bool) -> String {
    let side = if t.quantity >= 0.0 { "Long" } else { "Short" };
    let mut s = format!(
        "{side} {} @ {} on {}",
        fmt_trim(t.quantity.abs(), 6),
        fmt_num(t.entry_price, decimals, true),
        fmt_ts(t.entry_ts, intraday)
    );
    match (t.exit_ts, t.exit_price) {
        (Some(ts), Some(px)) => {
            let _ = write!(
                s,
                " → {} on {}; PnL {}",
                fmt_num(px, decimals, true),
                fmt_ts(ts, intraday),
                fmt_num(t.pnl, 2, true)
            );
        }
        _ => {
            let _ = write!(s, " (open); PnL {}", fmt_num(t.pnl, 2, true));
        }
    }
    s
}
