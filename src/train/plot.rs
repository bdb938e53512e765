//! PNG line plots of training curves (loss and accuracy per epoch, loss and gradient norms per
//! step), drawn with `plotters` and the DejaVu Sans font embedded by the `dejavu` crate, so they
//! render the same on any machine. Every point of a short curve has a marker, so a curve of one
//! epoch is visible too; a long one (thousands of steps) is a plain line.

use crate::train::checkpoint::write_atomically;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const SIZE: (u32, u32) = (800, 500);

/// A named series of (x, y) points.
pub struct Series<'a> {
    /// The legend label.
    pub label: &'a str,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// Marker radius in pixels.
const MARKER: i32 = 4;

/// The most points a series may have and still be drawn with a marker at each: beyond this the
/// markers would merge into a band that hides the line.
pub const MAX_MARKED_POINTS: usize = 200;

/// The colour of the `index`th series (its line, markers and legend entry), as RGB.
pub fn series_color(index: usize) -> [u8; 3] {
    let (r, g, b) = Palette99::pick(index).rgb();
    [r, g, b]
}

/// Draws the series as lines with a marker at every point, with a title and axis labels, and
/// writes a PNG to `path`.
pub fn line_plot(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // the embedded font is valid TrueType; failure here would be a packaging bug
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
    let mut rgb = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    draw(&mut rgb, title, x_label, y_label, series)
        .map_err(|e| Error::Invalid(format!("drawing {}: {e}", path.display())))?;
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, SIZE.0, SIZE.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::Invalid(format!("encoding {}: {e}", path.display())))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| Error::Invalid(format!("encoding {}: {e}", path.display())))?;
    }
    write_atomically(path, &png_bytes)
}

fn draw(
    rgb: &mut [u8],
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    // room around the points, so the markers at the ends are whole; a single value gets a
    // range around it
    let x_pad = ((x1 - x0) * 0.03).max(0.5);
    let y_pad = if y1 > y0 { (y1 - y0) * 0.05 } else { (y0.abs() * 0.05).max(1e-3) };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x0 - x_pad)..(x1 + x_pad), (y0 - y_pad)..(y1 + y_pad))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 14)).draw()?;
    for (i, s) in series.iter().enumerate() {
        let [r, g, b] = series_color(i);
        let color = RGBColor(r, g, b);
        let marked = s.points.len() <= MAX_MARKED_POINTS;
        chart.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?;
        let markers = s.points.iter().filter(|_| marked).map(|&p| Circle::new(p, MARKER, color.filled()));
        // the legend entry rides on the markers (none for a long curve)
        let radius = if marked { MARKER } else { 0 };
        chart.draw_series(markers)?.label(s.label).legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (20, 0)], color.stroke_width(2))
                + Circle::new((10, 0), radius, color.filled())
        });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
