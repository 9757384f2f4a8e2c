//! The report's pictures as self-contained SVG: line charts with error bars (the α sweep, the
//! training curves by batch kind) drawn by one small routine.

use std::fmt::Write as _;

use rosetta_eval::document::escape;

/// Colours of successive series.
pub const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

/// One point: x, y and an optional half-width of its interval.
pub type Point = (f64, f64, Option<f64>);

/// A series of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Colour.
    pub color: String,
    /// Points in x order.
    pub points: Vec<Point>,
    /// Draw markers only (no line): single reference points such as x-y at α = 0.
    pub markers_only: bool,
}

/// A chart's frame and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Series.
    pub series: Vec<Series>,
}

fn nice_range(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.08;
    (lo - pad, hi + pad)
}

fn tick_label(value: f64, span: f64) -> String {
    if span >= 100.0 {
        format!("{value:.0}")
    } else if span >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

impl Chart {
    /// The chart as SVG (`<svg>` with a `<title>`, axes with 5 ticks each, and a legend).
    pub fn svg(&self) -> String {
        let (width, height) = (460.0, 300.0);
        let (left, right, top, bottom) = (64.0, 150.0, 34.0, 44.0);
        let plot_w = width - left - right;
        let plot_h = height - top - bottom;
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) =
            (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y, err) in points {
            let e = err.unwrap_or(0.0);
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y - e);
            y_hi = y_hi.max(y + e);
        }
        let (x_lo, x_hi) = nice_range(x_lo, x_hi);
        let (y_lo, y_hi) = nice_range(y_lo, y_hi);
        let sx = |x: f64| left + (x - x_lo) / (x_hi - x_lo) * plot_w;
        let sy = |y: f64| top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11"><title>{t}</title>"#,
            t = escape(&self.title)
        );
        let _ = write!(svg, r#"<text x="{left}" y="18" font-size="13">{}</text>"#, escape(&self.title));
        let _ = write!(
            svg,
            r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888888"/>"##
        );
        for i in 0..=4 {
            let fx = x_lo + (x_hi - x_lo) * f64::from(i) / 4.0;
            let fy = y_lo + (y_hi - y_lo) * f64::from(i) / 4.0;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                sx(fx),
                top + plot_h + 14.0,
                tick_label(fx, x_hi - x_lo)
            );
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 4.0,
                sy(fy) + 4.0,
                tick_label(fy, y_hi - y_lo)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            left + plot_w / 2.0,
            height - 8.0,
            escape(&self.x_label)
        );
        let _ = write!(
            svg,
            r#"<text x="14" y="{y:.1}" transform="rotate(-90 14 {y:.1})" text-anchor="middle">{}</text>"#,
            escape(&self.y_label),
            y = top + plot_h / 2.0
        );
        for (i, series) in self.series.iter().enumerate() {
            let color = escape(&series.color);
            if !series.markers_only && series.points.len() > 1 {
                let path: Vec<String> =
                    series.points.iter().map(|&(x, y, _)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
                let _ = write!(
                    svg,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.6"/>"#,
                    path.join(" ")
                );
            }
            let draw_markers = series.markers_only || series.points.len() <= 12;
            for &(x, y, err) in &series.points {
                if let Some(e) = err.filter(|e| *e > 0.0) {
                    let _ = write!(
                        svg,
                        r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}"/>"#,
                        sy(y - e),
                        sy(y + e),
                        x = sx(x)
                    );
                }
                if draw_markers {
                    let _ = write!(
                        svg,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3.2" fill="{color}"><title>{}: {x} → {y:.4}</title></circle>"#,
                        sx(x),
                        sy(y),
                        escape(&series.name)
                    );
                }
            }
            let ly = top + 8.0 + i as f64 * 16.0;
            let lx = left + plot_w + 10.0;
            let _ = write!(svg, r#"<rect x="{lx}" y="{:.1}" width="10" height="10" fill="{color}"/>"#, ly - 8.0);
            let _ = write!(svg, r#"<text x="{}" y="{ly:.1}">{}</text>"#, lx + 14.0, escape(&series.name));
        }
        svg.push_str("</svg>");
        svg
    }
}

/// Moving average over a window of `window` points (shorter at the start).
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, _))| {
            let from = i.saturating_sub(window - 1);
            let slice = &points[from..=i];
            (x, slice.iter().map(|p| p.1).sum::<f64>() / slice.len() as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_svg_with_its_labels_and_escaped_text() {
        let chart = Chart {
            title: "mAP <vs> α".into(),
            x_label: "α".into(),
            y_label: "mAP".into(),
            series: vec![
                Series {
                    name: "multi".into(),
                    color: PALETTE[0].into(),
                    points: vec![(0.25, 0.4, Some(0.01)), (0.5, 0.45, None)],
                    markers_only: false,
                },
                Series {
                    name: "x-y".into(),
                    color: PALETTE[1].into(),
                    points: vec![(0.0, 0.3, None)],
                    markers_only: true,
                },
            ],
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("mAP &lt;vs&gt; α") && svg.contains("<polyline") && svg.contains(">x-y</text>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn smoothing_averages_the_window_behind_each_point() {
        let smoothed = smooth(&[(0.0, 3.0), (1.0, 1.0), (2.0, 2.0)], 2);
        assert_eq!(smoothed, [(0.0, 3.0), (1.0, 2.0), (2.0, 1.5)]);
    }
}
