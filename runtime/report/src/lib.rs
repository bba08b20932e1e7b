//! HTML backtest report: one self-contained file (inline CSS, charts as inline SVG drawn here,
//! a few lines of optional JS for hover read-outs) with the summary metrics, the parameters,
//! equity and drawdown charts, a price chart with trade markers per symbol and the trade list.
//!
//! Long series are reduced to at most 2,000 x-buckets per chart with min/max
//! downsampling, so a million points still make a file of a few hundred kilobytes. All text
//! that comes from users (title, metric names, parameters, symbols) is escaped.

// `println!`/`eprintln!` panic when their reader has gone (`qtm … | head`); the binary's
// commands print through its `cli::out`, and the server ignores a closed stdout.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod charts;
mod fmt;
mod svg;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

use fmt::{
    decimals_for_magnitude, escape, escape_into, fmt_num, fmt_trim, fmt_ts, looks_intraday,
    price_decimals,
};
use qtm_backtest::metrics::EquitySeries;
use qtm_core::model::{Bar, EquityPoint, Trade};

/// Rows of the trade table; the rest are counted in a note.
pub const MAX_TRADE_ROWS: usize = 500;

/// Buckets [`chart_curve`] reduces a long curve to: twice the charts' x-buckets, so the
/// drawing's own downsampling still sees the extremes of each of its buckets.
pub const CHART_BUCKETS: usize = 4_000;

/// The points of `series` a chart needs: up to `buckets` equal runs of points, each reduced to
/// its lowest and highest point in time order, plus the last point. Peaks, troughs and so the
/// deepest drawdown survive; a million-point curve (possibly on disk) becomes a few thousand.
pub fn chart_curve<S: EquitySeries + ?Sized>(series: &S, buckets: usize) -> Vec<EquityPoint> {
    let n = series.len();
    let per = n.div_ceil(buckets.max(1)).max(1);
    if per == 1 {
        return series.points().collect();
    }
    let mut out = Vec::with_capacity(2 * buckets + 1);
    let mut run: Option<(EquityPoint, EquityPoint)> = None;
    let mut last = None;
    for (i, p) in series.points().enumerate() {
        last = Some(p);
        let (lo, hi) = run.get_or_insert((p, p));
        if p.equity < lo.equity {
            *lo = p;
        }
        if p.equity > hi.equity {
            *hi = p;
        }
        if (i + 1).is_multiple_of(per)
            && let Some((lo, hi)) = run.take()
        {
            push_extremes(&mut out, lo, hi);
        }
    }
    if let Some((lo, hi)) = run {
        push_extremes(&mut out, lo, hi);
    }
    if let Some(p) = last
        && out.last() != Some(&p)
    {
        out.push(p);
    }
    out
}

fn push_extremes(out: &mut Vec<EquityPoint>, lo: EquityPoint, hi: EquityPoint) {
    let (a, b) = if lo.ts <= hi.ts { (lo, hi) } else { (hi, lo) };
    out.push(a);
    if b != a {
        out.push(b);
    }
}

/// Everything a report shows.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// Page heading, e.g. `sma-cross on GOOG`.
    pub title: &'a str,
    /// Metric name → formatted value, shown as a table in this order.
    pub summary: &'a [(String, String)],
    /// Strategy parameters and run settings, shown as a table in this order.
    pub params: &'a [(String, String)],
    /// The equity curve (any length; downsampled for drawing).
    pub equity: &'a [EquityPoint],
    /// Bars per symbol for the price-with-trades charts, one chart per entry.
    pub prices: &'a [(String, Vec<Bar>)],
    /// Round trips, listed in this order and marked on their symbol's price chart.
    pub trades: &'a [Trade],
}

/// Render the report as one self-contained HTML document.
pub fn render_html(input: &ReportInput) -> String {
    let equity = sorted_by_ts(input.equity, |e| e.ts);
    let prices: Vec<(&str, Cow<'_, [Bar]>)> = input
        .prices
        .iter()
        .map(|(s, bars)| (s.as_str(), sorted_by_ts(bars, |b| b.ts)))
        .collect();

    // Times get HH:MM when any series (or, without series, any trade) is intraday.
    let intraday = {
        let mut flags = vec![looks_intraday(equity.iter().map(|e| e.ts))];
        flags.extend(
            prices
                .iter()
                .map(|(_, b)| looks_intraday(b.iter().map(|b| b.ts))),
        );
        let known: Vec<bool> = flags.into_iter().flatten().collect();
        if known.is_empty() {
            input
                .trades
                .iter()
                .take(5_000)
                .any(|t| t.entry_ts % 86_400 != 0 || t.exit_ts.is_some_and(|x| x % 86_400 != 0))
        } else {
            known.into_iter().any(|b| b)
        }
    };

    // Price decimals per symbol, learned from its bars.
    let mut decimals: HashMap<&str, usize> = HashMap::new();
    for (sym, bars) in &prices {
        if let Some(d) = price_decimals(bars.iter().map(|b| b.close)) {
            decimals.insert(sym, d);
        }
    }
    let decimals_of = |sym: &str, px: f64| {
        decimals
            .get(sym)
            .copied()
            .unwrap_or_else(|| decimals_for_magnitude(px))
    };

    let mut out = String::with_capacity(256 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
    );
    escape_into(&mut out, input.title);
    out.push_str(" · qtm backtest report</title>\n<style>");
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n<main>\n<header><h1>");
    escape_into(&mut out, input.title);
    out.push_str("</h1><p class=\"sub\">");
    out.push_str(&subtitle(&equity, &prices, input.trades.len(), intraday));
    out.push_str("</p></header>\n");

    out.push_str("<div class=\"cols\">\n");
    kv_section(&mut out, "Summary", input.summary, "No metrics.");
    kv_section(&mut out, "Parameters", input.params, "No parameters.");
    out.push_str("</div>\n");

    out.push_str("<section><h2>Equity</h2>\n<figure>");
    out.push_str(&charts::equity_chart(&equity, intraday));
    out.push_str("</figure>\n");
    if !equity.is_empty() {
        out.push_str(
            "<p class=\"legend\"><span class=\"k eq\"></span>equity <span class=\"k base\"></span>starting equity \
             <span class=\"k mkt\"></span>in the market</p>\n",
        );
    }
    out.push_str("</section>\n");

    out.push_str("<section><h2>Drawdown</h2>\n<figure>");
    let (dd_svg, dd) = charts::drawdown_chart(&equity, intraday);
    out.push_str(&dd_svg);
    out.push_str("</figure>\n");
    if let Some((m, t)) = dd.max {
        let _ = writeln!(
            out,
            "<p class=\"legend\">Percent below the running peak. Deepest: <b>{}%</b> on {}.</p>",
            fmt_num(m, 2, true),
            fmt_ts(t, intraday)
        );
    }
    out.push_str("</section>\n");

    for (sym, bars) in &prices {
        let trades: Vec<&Trade> = input.trades.iter().filter(|t| t.symbol == *sym).collect();
        let d = decimals_of(sym, bars.first().map_or(f64::NAN, |b| b.close));
        let (svg, info) = charts::price_chart(sym, bars, &trades, d, intraday);
        out.push_str("<section><h2>Price · ");
        escape_into(&mut out, sym);
        out.push_str("</h2>\n<figure>");
        out.push_str(&svg);
        out.push_str("</figure>\n<p class=\"legend\"><span class=\"k px\"></span>close \
             <span class=\"g\">▲</span> long entry <span class=\"r\">▼</span> short entry \
             ✕ exit, joined to its entry; <span class=\"g\">green</span> win, <span class=\"r\">red</span> loss");
        let _ = write!(
            out,
            " · {} trade{}",
            fmt_num(info.trades as f64, 0, true),
            plural(info.trades)
        );
        if info.stride > 1 {
            let _ = write!(
                out,
                " (markers for 1 in {} trades: {} shown)",
                info.stride,
                fmt_num(info.trades.div_ceil(info.stride) as f64, 0, true)
            );
        }
        out.push_str("</p>\n</section>\n");
    }

    trade_section(&mut out, input.trades, intraday, &decimals_of);

    out.push_str("</main>\n<script>");
    out.push_str(JS);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

/// Render the report and write it to `path`.
pub fn write_html(input: &ReportInput, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render_html(input))
}

/// `items` sorted by `key`, borrowed when already in order.
fn sorted_by_ts<T: Clone>(items: &[T], key: impl Fn(&T) -> i64) -> Cow<'_, [T]> {
    if items.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
        Cow::Borrowed(items)
    } else {
        let mut v = items.to_vec();
        v.sort_by_key(|x| key(x));
        Cow::Owned(v)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `Backtest report · period · counts` under the heading.
fn subtitle(
    equity: &[EquityPoint],
    prices: &[(&str, Cow<'_, [Bar]>)],
    trades: usize,
    intraday: bool,
) -> String {
    let mut parts = vec!["Backtest report".to_string()];
    let span = match (equity.first(), equity.last()) {
        (Some(a), Some(b)) => Some((a.ts, b.ts)),
        _ => prices
            .iter()
            .filter_map(|(_, b)| Some((b.first()?.ts, b.last()?.ts)))
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1))),
    };
    if let Some((a, b)) = span {
        parts.push(format!("{} → {}", fmt_ts(a, intraday), fmt_ts(b, intraday)));
    }
    if !equity.is_empty() {
        parts.push(format!(
            "{} equity point{}",
            fmt_num(equity.len() as f64, 0, true),
            plural(equity.len())
        ));
    }
    parts.push(format!(
        "{} trade{}",
        fmt_num(trades as f64, 0, true),
        plural(trades)
    ));
    escape(&parts.join(" · "))
}

/// A two-column name/value table in its own section.
fn kv_section(out: &mut String, heading: &str, rows: &[(String, String)], empty: &str) {
    let _ = writeln!(out, "<section><h2>{heading}</h2>");
    if rows.is_empty() {
        let _ = writeln!(out, "<p class=\"muted\">{empty}</p>");
    } else {
        out.push_str("<table class=\"kv\"><tbody>\n");
        for (k, v) in rows {
            out.push_str("<tr><th>");
            escape_into(out, k);
            out.push_str("</th><td>");
            escape_into(out, v);
            out.push_str("</td></tr>\n");
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");
}

/// The first [`MAX_TRADE_ROWS`] trades as a table, and a note about the rest.
fn trade_section(
    out: &mut String,
    trades: &[Trade],
    intraday: bool,
    decimals_of: &dyn Fn(&str, f64) -> usize,
) {
    out.push_str("<section><h2>Trades</h2>\n");
    if trades.is_empty() {
        out.push_str("<p class=\"muted\">No trades.</p>\n</section>\n");
        return;
    }
    let wins = trades.iter().filter(|t| t.pnl > 0.0).count();
    let closed = trades.iter().filter(|t| t.exit_ts.is_some()).count();
    let total: f64 = trades.iter().map(|t| t.pnl).sum();
    let _ = writeln!(
        out,
        "<p class=\"legend\">{} trade{} ({} closed), {} winning; total PnL <span class=\"{}\">{}</span>.</p>",
        fmt_num(trades.len() as f64, 0, true),
        plural(trades.len()),
        fmt_num(closed as f64, 0, true),
        fmt_num(wins as f64, 0, true),
        if total > 0.0 {
            "g"
        } else if total < 0.0 {
            "r"
        } else {
            ""
        },
        fmt_num(total, 2, true)
    );
    out.push_str(
        "<div class=\"scroll\"><table class=\"trades\">\n<thead><tr><th class=\"n\">#</th><th>Symbol</th><th>Side</th>\
         <th class=\"n\">Quantity</th><th>Entry</th><th class=\"n\">Entry price</th><th>Exit</th>\
         <th class=\"n\">Exit price</th><th class=\"n\">Return</th><th class=\"n\">PnL</th><th class=\"n\">Fees</th></tr></thead>\n<tbody>\n",
    );
    for (i, t) in trades.iter().take(MAX_TRADE_ROWS).enumerate() {
        let d = decimals_of(&t.symbol, t.entry_price);
        let long = t.quantity >= 0.0;
        let _ = write!(out, "<tr><td class=\"n\">{}</td><td>", i + 1);
        escape_into(out, &t.symbol);
        let _ = write!(
            out,
            "</td><td class=\"{}\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td>",
            if long { "g" } else { "r" },
            if long { "▲ long" } else { "▼ short" },
            fmt_trim(t.quantity.abs(), 6),
            fmt_ts(t.entry_ts, intraday),
            fmt_num(t.entry_price, d, true)
        );
        match (t.exit_ts, t.exit_price) {
            (Some(ts), Some(px)) => {
                let ret = if t.entry_price > 0.0 {
                    let r = (px / t.entry_price - 1.0) * 100.0;
                    format!("{}%", fmt_num(if long { r } else { -r }, 2, true))
                } else {
                    "n/a".to_string()
                };
                let _ = write!(
                    out,
                    "<td>{}</td><td class=\"n\">{}</td><td class=\"n\">{ret}</td>",
                    fmt_ts(ts, intraday),
                    fmt_num(px, d, true)
                );
            }
            _ => out.push_str(
                "<td class=\"muted\">open</td><td class=\"n\"></td><td class=\"n\"></td>",
            ),
        }
        let _ = writeln!(
            out,
            "<td class=\"n {}\">{}</td><td class=\"n\">{}</td></tr>",
            if t.pnl > 0.0 {
                "g"
            } else if t.pnl < 0.0 {
                "r"
            } else {
                ""
            },
            fmt_num(t.pnl, 2, true),
            fmt_num(t.fees, 2, true)
        );
    }
    out.push_str("</tbody></table></div>\n");
    if trades.len() > MAX_TRADE_ROWS {
        let rest = trades.len() - MAX_TRADE_ROWS;
        let _ = writeln!(
            out,
            "<p class=\"note\">{} more trade{} not shown (the table lists the first {}).</p>",
            fmt_num(rest as f64, 0, true),
            plural(rest),
            MAX_TRADE_ROWS
        );
    }
    out.push_str("</section>\n");
}

const CSS: &str = r#"
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--win:#15803d;--loss:#dc2626}
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:24px;margin:0 0 2px;overflow-wrap:anywhere}
h2{font-size:15px;margin:0 0 10px;font-weight:600;overflow-wrap:anywhere}
.sub{color:var(--muted);margin:0 0 18px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin:0 0 16px;min-width:0}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:0 16px;align-items:start}
figure{margin:0}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
.kv th{font-weight:normal;color:var(--muted);overflow-wrap:anywhere}
.kv td{text-align:right;font-weight:600;overflow-wrap:anywhere}
.kv tr:last-child th,.kv tr:last-child td{border-bottom:0}
.trades{font-size:13px;white-space:nowrap}
.trades thead th{position:sticky;top:0;background:#f9fafb;font-weight:600;border-bottom:1px solid #d1d5db}
.trades tbody tr:nth-child(even){background:#fafafa}
.trades td:nth-child(2){white-space:normal;overflow-wrap:anywhere}
.n{text-align:right}
.scroll{overflow:auto;max-height:640px;border:1px solid var(--line);border-radius:6px}
.g{color:var(--win)}.r{color:var(--loss)}.muted{color:var(--muted)}
.legend,.note{color:var(--muted);font-size:12.5px;margin:6px 0 0}
.k{display:inline-block;width:14px;height:0;border-top:2px solid;vertical-align:middle;margin:0 4px 0 8px}
.k:first-child{margin-left:0}
.k.eq{border-color:#2563eb}.k.base{border-top:2px dashed #9ca3af}.k.px{border-color:#334155}
.k.mkt{height:6px;border:0;background:rgba(37,99,235,.3)}
svg.chart{display:block;width:100%;height:auto;overflow:visible}
svg.chart text{font-size:11px;fill:#6b7280}
.grid{stroke:#eef0f3;fill:none}
.axis{stroke:#9ca3af;fill:none}
.line{fill:none;stroke-width:1.4;stroke-linejoin:round;stroke-linecap:round}
.eq{stroke:#2563eb}.px{stroke:#334155;stroke-width:1.1}.dd{stroke:#b91c1c;stroke-width:1.1}
.dda{fill:#ef4444;fill-opacity:.22}
.base{stroke:#9ca3af;stroke-dasharray:5 4;fill:none}
.mkt{fill:#2563eb;fill-opacity:.3}
.tl{fill:none;stroke-width:1.3;stroke-opacity:.7}
.x{fill:none;stroke-width:1.8}
.tl.win,.x.win{stroke:#15803d}.tl.loss,.x.loss{stroke:#dc2626}
.el{fill:#16a34a}.es{fill:#dc2626}
.empty{fill:#f9fafb;stroke:#e5e7eb}
svg.chart text.msg{font-size:14px;fill:#9ca3af}
.xh{stroke:#6b7280;stroke-dasharray:3 3;pointer-events:none}
.xd{fill:#111827;pointer-events:none}
.tip{position:absolute;pointer-events:none;background:#111827;color:#fff;font-size:12px;padding:3px 7px;border-radius:4px;white-space:nowrap;display:none;z-index:9}
@media print{body{background:#fff}.scroll{max-height:none;overflow:visible}}
"#;

/// Hover read-out: nearest drawn point of a chart's series, with its exact time and value.
const JS: &str = r#"
(function(){
var tip=document.createElement('div');tip.className='tip';document.body.appendChild(tip);
var NS='http://www.w3.org/2000/svg';
function when(t,i){var s=new Date(t*1000).toISOString();return i?s.slice(0,16).replace('T',' '):s.slice(0,10);}
document.querySelectorAll('svg.chart[data-t]').forEach(function(svg){
 var line=svg.querySelector('.s');if(!line)return;
 var pts=line.getAttribute('points').trim().split(' ').map(function(p){return p.split(',').map(Number);});
 var acc=0,ts=svg.dataset.t.split(',').map(function(d){return acc+=Number(d);});
 var vs=svg.dataset.v.split(','),u=svg.dataset.u||'',intra=svg.dataset.i==='1';
 if(pts.length!==ts.length||!pts.length)return;
 var xh=document.createElementNS(NS,'line');xh.setAttribute('class','xh');
 xh.setAttribute('y1',svg.dataset.top);xh.setAttribute('y2',svg.dataset.bot);
 var dot=document.createElementNS(NS,'circle');dot.setAttribute('class','xd');dot.setAttribute('r','3');
 function hide(){xh.remove();dot.remove();tip.style.display='none';}
 svg.addEventListener('mousemove',function(e){
  var m=svg.getScreenCTM();if(!m)return;
  var p=svg.createSVGPoint();p.x=e.clientX;p.y=e.clientY;var q=p.matrixTransform(m.inverse());
  var lo=0,hi=pts.length-1;
  while(lo<hi){var mid=(lo+hi)>>1;if(pts[mid][0]<q.x)lo=mid+1;else hi=mid;}
  if(lo>0&&q.x-pts[lo-1][0]<pts[lo][0]-q.x)lo--;
  var x=pts[lo][0],y=pts[lo][1];
  xh.setAttribute('x1',x);xh.setAttribute('x2',x);dot.setAttribute('cx',x);dot.setAttribute('cy',y);
  svg.appendChild(xh);svg.appendChild(dot);
  tip.textContent=when(ts[lo],intra)+'  '+vs[lo]+u;
  tip.style.display='block';tip.style.left=(e.pageX+14)+'px';tip.style.top=(e.pageY-30)+'px';
 });
 svg.addEventListener('mouseleave',hide);
});
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64, close: f64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
        }
    }

    fn trade(sym: &str, i: i64, qty: f64, pnl: f64) -> Trade {
        Trade {
            symbol: sym.to_string(),
            entry_ts: i * 86_400,
            exit_ts: Some((i + 3) * 86_400),
            entry_price: 100.0,
            exit_price: Some(100.0 + pnl / qty),
            quantity: qty,
            pnl,
            fees: 0.5,
        }
    }

    fn daily(n: i64) -> (Vec<EquityPoint>, Vec<(String, Vec<Bar>)>) {
        let eq = (0..n)
            .map(|i| EquityPoint {
                ts: i * 86_400,
                equity: 10_000.0 + (i as f64 / 7.0).sin() * 500.0 + i as f64,
                in_market: i % 10 < 6,
            })
            .collect();
        let bars = (0..n)
            .map(|i| bar(i * 86_400, 100.0 + (i as f64 / 5.0).sin() * 10.0))
            .collect();
        (eq, vec![("GOOG".to_string(), bars)])
    }

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    fn trade_rows(html: &str) -> usize {
        match html.find("<table class=\"trades\">") {
            Some(start) => {
                let end = start + html[start..].find("</table>").unwrap();
                count(&html[start..end], "<tr>") - 1
            }
            None => 0,
        }
    }

    #[test]
    fn user_text_is_escaped() {
        let summary = vec![("<b>x</b>".to_string(), "\"1\" & 2".to_string())];
        let params = vec![(
            "p".to_string(),
            "</td><script>alert(1)</script>".to_string(),
        )];
        let (eq, _) = daily(30);
        let prices = vec![(
            "<svg onload=alert(1)>".to_string(),
            vec![bar(0, 1.0), bar(86_400, 2.0)],
        )];
        let trades = vec![trade("<svg onload=alert(1)>", 0, 1.0, 1.0)];
        let html = render_html(&ReportInput {
            title: "<script>alert('x')</script> & co",
            summary: &summary,
            params: &params,
            equity: &eq,
            prices: &prices,
            trades: &trades,
        });
        assert!(html.contains("<h1>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</h1>"));
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<svg onload"));
        assert!(html.contains("&lt;svg onload=alert(1)&gt;"));
        assert!(html.contains("<th>&lt;b&gt;x&lt;/b&gt;</th><td>&quot;1&quot; &amp; 2</td>"));
        assert_eq!(count(&html, "<script"), 1, "only the report's own script");
    }

    #[test]
    fn one_svg_per_chart_and_trade_rows() {
        let (eq, mut prices) = daily(400);
        prices.push(("MSFT".to_string(), prices[0].1.clone()));
        let trades: Vec<Trade> = (0..40)
            .map(|i| {
                trade(
                    if i % 2 == 0 { "GOOG" } else { "MSFT" },
                    i * 9,
                    if i % 3 == 0 { -2.0 } else { 3.0 },
                    i as f64 - 20.0,
                )
            })
            .collect();
        let html = render_html(&ReportInput {
            title: "sma-cross on GOOG",
            summary: &[("Total return".into(), "12.3%".into())],
            params: &[("fast".into(), "10".into())],
            equity: &eq,
            prices: &prices,
            trades: &trades,
        });
        assert_eq!(count(&html, "<svg"), 4, "equity, drawdown, two symbols");
        assert_eq!(trade_rows(&html), 40);
        assert!(!html.contains("more trade"));
        // Markers: GOOG has 20 trades, 7 of them short (i % 3 == 0 among even i).
        assert!(html.contains("class=\"el\"") && html.contains("class=\"es\""));
        assert!(html.contains("class=\"x win\"") && html.contains("class=\"x loss\""));
        assert!(html.contains("1970-01-01"));
        assert!(!html.contains("00:00"), "daily data has no times");
    }

    #[test]
    fn long_trade_lists_are_cut_with_a_note() {
        let (eq, prices) = daily(3_000);
        let trades: Vec<Trade> = (0..1_234).map(|i| trade("GOOG", i * 2, 1.0, 1.0)).collect();
        let html = render_html(&ReportInput {
            title: "t",
            summary: &[],
            params: &[],
            equity: &eq,
            prices: &prices,
            trades: &trades,
        });
        assert_eq!(trade_rows(&html), MAX_TRADE_ROWS);
        assert!(html.contains("734 more trades not shown"), "note missing");
    }

    #[test]
    fn empty_inputs_render() {
        let html = render_html(&ReportInput {
            title: "",
            summary: &[],
            params: &[],
            equity: &[],
            prices: &[],
            trades: &[],
        });
        assert_eq!(count(&html, "<svg"), 2);
        assert!(html.contains("No equity data") && html.contains("No trades."));
        assert!(html.ends_with("</html>\n"));

        // A symbol without bars, a single equity point, open and odd trades.
        let eq = [EquityPoint {
            ts: 5,
            equity: f64::NAN,
            in_market: false,
        }];
        let prices = vec![
            ("X".to_string(), vec![]),
            ("Y".to_string(), vec![bar(60, 1.5)]),
        ];
        let mut open = trade("Y", 0, 1.0, 0.0);
        open.exit_ts = None;
        open.exit_price = None;
        let mut odd = trade("Z", 0, 0.0, f64::NAN);
        odd.entry_price = f64::INFINITY;
        let html = render_html(&ReportInput {
            title: "x",
            summary: &[],
            params: &[],
            equity: &eq,
            prices: &prices,
            trades: &[open, odd],
        });
        assert_eq!(count(&html, "<svg"), 4);
        assert!(html.contains("No price data for X"));
        assert_eq!(trade_rows(&html), 2);
    }

    #[test]
    fn million_points_render_fast_and_small() {
        let n = 1_000_000i64;
        let eq: Vec<EquityPoint> = (0..n)
            .map(|i| EquityPoint {
                ts: 1_294_045_260 + i * 60,
                equity: 100_000.0 + (i as f64 / 3_000.0).sin() * 5_000.0 + (i % 97) as f64,
                in_market: (i / 500) % 3 != 0,
            })
            .collect();
        let bars: Vec<Bar> = eq.iter().map(|e| bar(e.ts, e.equity / 1_000.0)).collect();
        let prices = vec![("SPY".to_string(), bars)];
        let trades: Vec<Trade> = (0..20_000)
            .map(|i| {
                let e = &eq[i * 49];
                let x = &eq[i * 49 + 30];
                Trade {
                    symbol: "SPY".into(),
                    entry_ts: e.ts,
                    exit_ts: Some(x.ts),
                    entry_price: e.equity / 1_000.0,
                    exit_price: Some(x.equity / 1_000.0),
                    quantity: if i % 2 == 0 { 10.0 } else { -10.0 },
                    pnl: (x.equity - e.equity) / 100.0,
                    fees: 0.1,
                }
            })
            .collect();
        let start = std::time::Instant::now();
        let html = render_html(&ReportInput {
            title: "big",
            summary: &[],
            params: &[],
            equity: &eq,
            prices: &prices,
            trades: &trades,
        });
        let took = start.elapsed();
        assert!(html.len() < 1_000_000, "{} bytes", html.len());
        assert!(took.as_secs_f64() < 10.0, "{took:?}");
        assert_eq!(count(&html, "<svg"), 3);
        assert!(html.contains("2011-01-03 09:01"), "intraday times");
        assert!(html.contains("19,500 more trades"));
        assert!(html.contains("markers for 1 in 10 trades: 2,000 shown"));
    }

    /// Renders the bundled SPY minute bars with a few fake trades to `report.html` in the
    /// temporary directory (`$TMPDIR/report.html`) for a visual check:
    /// `cargo test -p qtm-report tests::render_real_data -- --ignored`.
    #[test]
    #[ignore]
    fn render_real_data() {
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/spy_1m_2011.csv");
        let text = std::fs::read_to_string(bundled).unwrap();
        let bars: Vec<Bar> = text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<f64> = l
                    .split(',')
                    .map(|x| x.trim().parse().ok())
                    .collect::<Option<_>>()?;
                Some(Bar {
                    ts: f[0] as i64,
                    open: f[1],
                    high: f[2],
                    low: f[3],
                    close: f[4],
                    volume: f[5],
                })
            })
            .collect();
        let mut trades = Vec::new();
        let mut cash = 10_000.0;
        let mut equity = Vec::new();
        let mut open: Option<(usize, f64)> = None;
        for (i, b) in bars.iter().enumerate() {
            let mark = open.map_or(cash, |(j, q)| cash + q * (b.close - bars[j].close));
            equity.push(EquityPoint {
                ts: b.ts,
                equity: mark,
                in_market: open.is_some(),
            });
            if i % 60 == 10 && open.is_none() {
                open = Some((i, if (i / 60) % 3 == 2 { -20.0 } else { 20.0 }));
            } else if i % 60 == 45
                && let Some((j, q)) = open.take()
            {
                let pnl = q * (b.close - bars[j].close) - 2.0;
                cash += pnl;
                trades.push(Trade {
                    symbol: "SPY".into(),
                    entry_ts: bars[j].ts,
                    exit_ts: Some(b.ts),
                    entry_price: bars[j].close,
                    exit_price: Some(b.close),
                    quantity: q,
                    pnl,
                    fees: 2.0,
                });
            }
        }
        if let Some((j, q)) = open {
            trades.push(Trade {
                symbol: "SPY".into(),
                entry_ts: bars[j].ts,
                exit_ts: None,
                entry_price: bars[j].close,
                exit_price: None,
                quantity: q,
                pnl: 0.0,
                fees: 1.0,
            });
        }
        let summary = vec![
            ("Total return".to_string(), "+42.0%".to_string()),
            ("Max drawdown".to_string(), "-18.3%".to_string()),
            ("Sharpe".to_string(), "0.87".to_string()),
            ("Trades".to_string(), trades.len().to_string()),
        ];
        let params = vec![
            ("fast".to_string(), "10".to_string()),
            ("slow".to_string(), "30".to_string()),
            ("note".to_string(), "<b>not bold</b>".to_string()),
        ];
        let prices = vec![("SPY".to_string(), bars)];
        let input = ReportInput {
            title: "sma-cross on SPY <script>",
            summary: &summary,
            params: &params,
            equity: &equity,
            prices: &prices,
            trades: &trades,
        };
        let out = std::env::temp_dir().join("report.html");
        write_html(&input, &out).unwrap();
        assert!(out.is_file(), "{}", out.display());
    }

    #[test]
    fn chart_curve_keeps_extremes_in_order_within_its_budget() {
        let eq: Vec<EquityPoint> = (0..100_000)
            .map(|i| EquityPoint {
                ts: i * 60,
                equity: 10_000.0 + ((i * 7919) % 1_000) as f64
                    - if i == 54_321 { 5_000.0 } else { 0.0 },
                in_market: false,
            })
            .collect();
        let c = chart_curve(&eq, 1_000);
        assert!(c.len() <= 2_001, "{}", c.len());
        assert!(c.windows(2).all(|w| w[0].ts < w[1].ts));
        assert!(c.iter().any(|p| p.ts == 54_321 * 60), "the trough is kept");
        assert_eq!(c.first(), eq.first());
        assert_eq!(c.last(), eq.last());
        let short = &eq[..500];
        assert_eq!(chart_curve(short, 1_000), short);
    }
}
