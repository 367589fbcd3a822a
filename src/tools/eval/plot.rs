//! PR and ROC curves as PNG, drawn with plotters' pure-Rust bitmap backend.
//!
//! Text is rendered with ab_glyph from a DejaVu Sans font compiled into the binary (the
//! `dejavu` crate), so no system font, fontconfig or freetype is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::EvalError;

/// Width and height of every curve image, pixels.
pub const SIZE: (u32, u32) = (800, 600);

/// At most this many points are drawn per curve; the curve is thinned evenly beyond it.
const MAX_POINTS: usize = 4000;

static FONT: Once = Once::new();

fn ensure_font() {
    FONT.call_once(|| {
        // The embedded font is valid; if it were not, text would be skipped, not fatal.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let step = points.len().div_ceil(MAX_POINTS);
    let mut v: Vec<(f64, f64)> = points.iter().step_by(step).copied().collect();
    if let Some(last) = points.last() {
        if v.last() != Some(last) {
            v.push(*last);
        }
    }
    v
}

/// What to draw.
pub struct Curve<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// The points, in drawing order.
    pub points: &'a [(f64, f64)],
    /// Draw the chance diagonal (ROC).
    pub diagonal: bool,
}

/// Draws `curve` into a PNG at `path`.
pub fn draw(path: &Path, curve: &Curve<'_>) -> Result<(), EvalError> {
    ensure_font();
    let err = |e: String| EvalError::Plot {
        path: path.display().to_string(),
        msg: e,
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(curve.title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(curve.x_label)
        .y_desc(curve.y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    if curve.diagonal {
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                ShapeStyle::from(&RGBColor(170, 170, 170)).stroke_width(1),
            ))
            .map_err(|e| err(e.to_string()))?;
    }
    chart
        .draw_series(LineSeries::new(
            thin(curve.points),
            ShapeStyle::from(&RGBColor(31, 119, 180)).stroke_width(2),
        ))
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Draws a square count matrix (rows against columns, both named by `names`) as a heat map
/// with the counts written in the cells; the colour is on a log scale so that a few flips
/// show beside millions of unchanged events.
pub fn matrix(
    path: &Path,
    title: &str,
    names: &[&str; 4],
    m: &[[u64; 4]; 4],
) -> Result<(), EvalError> {
    ensure_font();
    let err = |e: String| EvalError::Plot {
        path: path.display().to_string(),
        msg: e,
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..4f64, 0f64..4f64)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .disable_y_axis()
        .x_desc("candidate")
        .y_desc("live")
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    // Row and column names beside the cells, in pixels of the plotting area.
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let (cw, ch) = ((xr.end - xr.start) / 4, (yr.end - yr.start) / 4);
    for (i, name) in names.iter().enumerate() {
        let i = i as i32;
        root.draw(&Text::new(
            name.to_string(),
            (xr.start + cw * i + cw / 2 - 25, yr.end + 8),
            ("sans-serif", 16),
        ))
        .map_err(|e| err(e.to_string()))?;
        root.draw(&Text::new(
            name.to_string(),
            (xr.start - 70, yr.start + ch * i + ch / 2 - 8),
            ("sans-serif", 16),
        ))
        .map_err(|e| err(e.to_string()))?;
    }
    let top = m.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    for (r, row) in m.iter().enumerate() {
        for (c, &n) in row.iter().enumerate() {
            let y = (3 - r) as f64;
            let x = c as f64;
            let t = if n == 0 {
                0.0
            } else {
                ((n as f64).ln_1p() / top.ln_1p()).clamp(0.05, 1.0)
            };
            // Diagonal cells (unchanged) grey, flips orange, shaded by count.
            let base = if r == c {
                (120.0, 120.0, 120.0)
            } else {
                (230.0, 85.0, 13.0)
            };
            let mix = |b: f64| (255.0 - (255.0 - b) * t) as u8;
            let fill = RGBColor(mix(base.0), mix(base.1), mix(base.2));
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    fill.filled(),
                )))
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    n.to_string(),
                    (x + 0.38, y + 0.55),
                    ("sans-serif", 20),
                )))
                .map_err(|e| err(e.to_string()))?;
        }
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Draws histograms over [0, 1] (one line per named series, counts on a log scale).
pub fn histograms(path: &Path, title: &str, series: &[(&str, &[u64])]) -> Result<(), EvalError> {
    ensure_font();
    let err = |e: String| EvalError::Plot {
        path: path.display().to_string(),
        msg: e,
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, (1f64..top * 2.0).log_scale())
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("score")
        .y_desc("events + 1")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let colours = [RGBColor(31, 119, 180), RGBColor(230, 85, 13)];
    for (k, (name, v)) in series.iter().enumerate() {
        let n = v.len().max(1) as f64;
        // A step line: each bin is flat across its width.
        let pts: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .flat_map(|(i, &c)| {
                let y = c as f64 + 1.0;
                [(i as f64 / n, y), ((i + 1) as f64 / n, y)]
            })
            .collect();
        let colour = colours[k % colours.len()];
        // The first series is drawn wide underneath, so an identical second one leaves it
        // visible around its edges.
        let width = if k == 0 { 5 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                pts,
                ShapeStyle::from(&colour).stroke_width(width),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    ShapeStyle::from(&colour).stroke_width(2),
                )
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
