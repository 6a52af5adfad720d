//! `chart.svg`: throughput (top) and p99 latency (bottom) per second of a
//! bench run, drawn with plotters' SVG backend (no font or bitmap stack).

use std::path::Path;

use plotters::prelude::*;

use super::stats::SeriesRow;

/// Size of the chart in pixels.
const CHART_WIDTH_PX: u32 = 960;
const CHART_HEIGHT_PX: u32 = 640;
/// Head room above the largest value, so the line does not touch the frame.
const Y_HEADROOM: f64 = 1.1;

pub fn draw(
    path: &Path,
    rows: &[SeriesRow],
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (CHART_WIDTH_PX, CHART_HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(CHART_HEIGHT_PX / 2);
    let seconds = rows.last().map_or(1, |r| r.elapsed_secs.max(1));

    let rate_max = rows.iter().map(|r| r.records_per_sec).max().unwrap_or(0) as f64;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("rill bench {title}: throughput"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..seconds, 0f64..(rate_max * Y_HEADROOM).max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("elapsed (s)")
        .y_desc("records/s")
        .draw()?;
    chart.draw_series(LineSeries::new(
        rows.iter()
            .map(|r| (r.elapsed_secs, r.records_per_sec as f64)),
        &BLUE,
    ))?;

    let p99_ms: Vec<(u64, f64)> = rows
        .iter()
        .filter_map(|r| r.p99_micros.map(|us| (r.elapsed_secs, us as f64 / 1000.0)))
        .collect();
    let p99_max = p99_ms.iter().map(|&(_, v)| v).fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&bottom)
        .caption("p99 latency", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..seconds, 0f64..(p99_max * Y_HEADROOM).max(0.001))?;
    chart
        .configure_mesh()
        .x_desc("elapsed (s)")
        .y_desc("p99 (ms)")
        .draw()?;
    chart.draw_series(LineSeries::new(p99_ms, &RED))?;
    root.present()?;
    Ok(())
}
