//! PNG line plots of training curves (loss and accuracy per epoch, loss and gradient norms per
//! step), confusion-matrix heat maps and attention heat maps, drawn with `plotters` and the DejaVu Sans font embedded
//! by the `dejavu` crate, so they render the same on any machine. Every point of a short curve
//! has a marker, so a curve of one epoch is visible too; a long one (thousands of steps) is a
//! plain line.

use crate::train::checkpoint::write_atomically;
use crate::train::metrics::Confusion;
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
    let mut rgb = canvas(SIZE);
    draw(&mut rgb, title, x_label, y_label, series)
        .map_err(|e| Error::Invalid(format!("drawing {}: {e}", path.display())))?;
    write_png(path, &rgb, SIZE)
}

/// Draws `confusion` as a heat map, rows the true classes and columns the predictions, each cell
/// shaded by its share of its row (the row's recall on the diagonal) and labelled with its count,
/// and writes a PNG to `path`. `labels` names the classes (their indices where it is short).
///
/// ```no_run
/// # use kiln::train::metrics::Confusion;
/// let mut confusion = Confusion::new(2);
/// confusion.add(&[0, 1, 1], &[0, 1, 0]);
/// let labels = ["cat".to_string(), "dog".to_string()];
/// kiln::train::plot::confusion_plot("confusion.png".as_ref(), "Test set", &labels, &confusion)?;
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn confusion_plot(path: &Path, title: &str, labels: &[String], confusion: &Confusion) -> Result<()> {
    let classes = confusion.classes();
    // room for the class names on the left and at the bottom, and 36 pixels a cell
    let (cell, margin) = (36u32, 150u32);
    let side = cell * classes.max(1) as u32;
    let size = (side + margin + 20, side + margin + 50);
    let mut rgb = canvas(size);
    draw_confusion(&mut rgb, size, cell, margin, title, labels, confusion)
        .map_err(|e| Error::Invalid(format!("drawing {}: {e}", path.display())))?;
    write_png(path, &rgb, size)
}

/// Draws attention weights as a heat map, the source's tokens across and the output's tokens
/// down, each cell shaded by its weight (0 white, 1 dark blue; each row sums to 1), and writes a
/// PNG to `path`. `weights` holds `outputs.len()` rows of `sources.len()` values.
///
/// ```no_run
/// let (src, out) = (["ein", "hund", "."].map(String::from), ["a", "dog", "."].map(String::from));
/// let weights = [0.1, 0.8, 0.1, 0.2, 0.7, 0.1, 0.0, 0.1, 0.9];
/// kiln::train::plot::attention_plot("attention.png".as_ref(), "ein hund .", &src, &out, &weights)?;
/// # Ok::<(), kiln::Error>(())
/// ```
///
/// Panics when `weights` does not have `outputs.len() × sources.len()` values.
#[track_caller]
pub fn attention_plot(
    path: &Path,
    title: &str,
    sources: &[String],
    outputs: &[String],
    weights: &[f32],
) -> Result<()> {
    if weights.len() != sources.len() * outputs.len() {
        panic!(
            "attention_plot: {} weights for {} output × {} source tokens",
            weights.len(),
            outputs.len(),
            sources.len()
        );
    }
    // room for the tokens on the left and at the top, and 32 pixels a cell
    let (cell, margin) = (32u32, 110u32);
    let size =
        (margin + cell * sources.len().max(1) as u32 + 20, margin + cell * outputs.len().max(1) as u32 + 50);
    let mut rgb = canvas(size);
    draw_attention(&mut rgb, size, (cell, margin), title, sources, outputs, weights)
        .map_err(|e| Error::Invalid(format!("drawing {}: {e}", path.display())))?;
    write_png(path, &rgb, size)
}

fn draw_attention(
    rgb: &mut [u8],
    size: (u32, u32),
    (cell, margin): (u32, u32),
    title: &str,
    sources: &[String],
    outputs: &[String],
    weights: &[f32],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, size).into_drawing_area();
    root.fill(&WHITE)?;
    let (cell, left, top) = (cell as i32, margin as i32, margin as i32);
    root.draw(&Text::new(title.to_string(), (8, 8), ("sans-serif", 18)))?;
    let small = ("sans-serif", 13).into_font();
    let rotated = small.clone().transform(FontTransform::Rotate270);
    for (s, token) in sources.iter().enumerate() {
        let x = left + s as i32 * cell + cell / 2 - 7;
        root.draw(&Text::new(token.clone(), (x, top - 6), rotated.clone()))?;
    }
    for (o, token) in outputs.iter().enumerate() {
        let y = top + o as i32 * cell;
        root.draw(&Text::new(token.clone(), (8, y + cell / 2 - 7), small.clone()))?;
        for s in 0..sources.len() {
            let weight = weights[o * sources.len() + s].clamp(0.0, 1.0) as f64;
            let shade = |full: f64| (255.0 - weight * (255.0 - full)).round() as u8;
            let x = left + s as i32 * cell;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                RGBColor(shade(8.0), shade(48.0), shade(107.0)).filled(),
            ))?;
            root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], RGBColor(220, 220, 220)))?;
        }
    }
    root.draw(&Text::new(
        "columns: source tokens, rows: output tokens".to_string(),
        (8, size.1 as i32 - 20),
        small,
    ))?;
    root.present()?;
    Ok(())
}

/// A white RGB canvas of `size`, with the embedded font registered.
fn canvas(size: (u32, u32)) -> Vec<u8> {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // the embedded font is valid TrueType; failure here would be a packaging bug
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
    vec![255u8; (size.0 * size.1 * 3) as usize]
}

/// Encodes `rgb` of `size` as a PNG and writes it to `path` atomically.
fn write_png(path: &Path, rgb: &[u8], size: (u32, u32)) -> Result<()> {
    let encoding = |e: png::EncodingError| Error::Invalid(format!("encoding {}: {e}", path.display()));
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, size.0, size.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(encoding)?;
        writer.write_image_data(rgb).map_err(encoding)?;
    }
    write_atomically(path, &png_bytes)
}

fn draw_confusion(
    rgb: &mut [u8],
    size: (u32, u32),
    cell: u32,
    margin: u32,
    title: &str,
    labels: &[String],
    confusion: &Confusion,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, size).into_drawing_area();
    root.fill(&WHITE)?;
    let classes = confusion.classes();
    let (cell, left, top) = (cell as i32, margin as i32, 40i32);
    root.draw(&Text::new(title.to_string(), (left, 8), ("sans-serif", 20)))?;
    let name = |c: usize| labels.get(c).cloned().unwrap_or_else(|| c.to_string());
    let small = ("sans-serif", 12).into_font();
    for t in 0..classes {
        let row_total: u64 = (0..classes).map(|p| confusion.count(t, p)).sum();
        let y = top + t as i32 * cell;
        root.draw(&Text::new(name(t), (8, y + cell / 2 - 6), small.clone()))?;
        for p in 0..classes {
            let count = confusion.count(t, p);
            let share = if row_total == 0 { 0.0 } else { count as f64 / row_total as f64 };
            // white to dark blue by share of the row
            let shade = |full: f64| (255.0 - share * (255.0 - full)).round() as u8;
            let color = RGBColor(shade(8.0), shade(48.0), shade(107.0));
            let x = left + p as i32 * cell;
            root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], color.filled()))?;
            root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], RGBColor(220, 220, 220)))?;
            if count > 0 {
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let text = count.to_string();
                let x_text = x + cell / 2 - 3 * text.len() as i32;
                root.draw(&Text::new(text, (x_text, y + cell / 2 - 6), small.clone().color(&ink)))?;
            }
        }
    }
    // the predicted classes' names, written upwards under their columns
    let bottom = top + classes as i32 * cell + 6;
    let rotated = small.clone().transform(FontTransform::Rotate270);
    for p in 0..classes {
        let x = left + p as i32 * cell + cell / 2 - 6;
        root.draw(&Text::new(name(p), (x, bottom + margin as i32 - 50), rotated.clone()))?;
    }
    root.draw(&Text::new(
        "rows: true class, columns: predicted".to_string(),
        (8, size.1 as i32 - 20),
        small,
    ))?;
    root.present()?;
    Ok(())
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
