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
