//! The benchmark's chart: every performance target as a bar of "measured ÷ target" on a log
//! scale, green where it is met (1 or less), red where it is not, with a black tick where the
//! least possible at that hook lies.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use plotters::{
    coord::ranged1d::SegmentValue,
    prelude::*,
    style::{FontStyle, register_font},
};

use crate::target::Target;

/// Debian's fonts-dejavu-core; plotters draws text with a font it is given.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const LOW: f64 = 0.02;
const HIGH: f64 = 50.0;

pub fn draw(path: &Path, targets: &[Target]) -> anyhow::Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("cannot read the font {FONT}"))?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("{FONT} is not a font plotters can use"))?;
    let n = targets.len();
    let height = u32::try_from(34 * n + 110).unwrap_or(u32::MAX);
    let root = BitMapBackend::new(path, (1400, height)).into_drawing_area();
    let failed = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ntptap: measured ÷ target (log scale; 1 or less meets the target; black tick: the least possible)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(560)
        .build_cartesian_2d((LOW..HIGH).log_scale(), (0..n).into_segmented())
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                targets.get(*i).map_or_else(String::new, |t| t.name.clone())
            }
            SegmentValue::Last => String::new(),
        })
        .y_label_style(("sans-serif", 14))
        .x_desc("measured ÷ target")
        .draw()
        .map_err(|e| failed(&e))?;
    chart
        .draw_series(targets.iter().enumerate().map(|(i, t)| {
            let v = t.of_target().clamp(LOW, HIGH);
            let color = if t.met() {
                RGBColor(46, 139, 87)
            } else {
                RGBColor(200, 50, 50)
            };
            let mut bar = Rectangle::new(
                [
                    (LOW, SegmentValue::Exact(i)),
                    (v, SegmentValue::Exact(i + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(|e| failed(&e))?;
    // The least possible, where measured: a black tick across the bar.
    chart
        .draw_series(targets.iter().enumerate().filter_map(|(i, t)| {
            let floor = t.floor?;
            let v = t.of_target_at(floor).clamp(LOW, HIGH);
            Some(PathElement::new(
                [(v, SegmentValue::Exact(i)), (v, SegmentValue::Exact(i + 1))],
                BLACK.stroke_width(4),
            ))
        }))
        .map_err(|e| failed(&e))?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
            BLACK.stroke_width(2),
        ))
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_a_bar_per_target() {
        if !Path::new(FONT).exists() {
            eprintln!("skipped: {FONT} is missing (cargo xtask setup installs it)");
            return;
        }
        let targets = vec![
            Target {
                name: "met".into(),
                measured: 0.25,
                limit: 0.5,
                at_most: true,
                floor: None,
                intervals: None,
            },
            Target {
                name: "missed".into(),
                measured: 13.6,
                limit: 4.0,
                at_most: true,
                floor: Some(10.4),
                intervals: None,
            },
            Target {
                name: "at least".into(),
                measured: 8.7,
                limit: 3.0,
                at_most: false,
                floor: None,
                intervals: None,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        draw(&path, &targets).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
        assert!(targets[0].met() && !targets[1].met() && targets[2].met());
        assert!(targets[1].out_of_reach() && !targets[0].out_of_reach());
    }
}
