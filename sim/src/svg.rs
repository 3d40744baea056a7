//! The reports as SVG documents, written as plain text (no plotting crate, no font needed: the
//! viewer picks one), in the colours of the demo's timeline.

use std::fmt::Write as _;

use harden::circuit_breaker::State;

/// The breaker's state as a band shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    /// Closed (or disabled).
    Closed,
    /// Open (or forced open).
    Open,
    /// Half-open.
    HalfOpen,
}

impl Band {
    fn colour(self) -> &'static str {
        match self {
            Band::Closed => "#4caf50",
            Band::Open => "#e53935",
            Band::HalfOpen => "#ffb300",
        }
    }
}

/// The band of a state.
pub fn band(state: State) -> Band {
    match state {
        State::Closed | State::Disabled => Band::Closed,
        State::HalfOpen => Band::HalfOpen,
        _ => Band::Open,
    }
}

/// One row of bands: a label and the state from each time on (closed before the first).
#[derive(Debug, Clone)]
pub struct BandRow {
    /// The row's label.
    pub label: String,
    /// `(seconds, band)` in order.
    pub states: Vec<(f64, Band)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const LEFT: f64 = 230.0;
const WIDTH: f64 = 980.0;

fn x(t: f64, end: f64) -> f64 {
    LEFT + (WIDTH - LEFT - 20.0) * (t / end.max(1e-9)).clamp(0.0, 1.0)
}

fn header(out: &mut String, width: f64, height: f64, title: &str) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="12" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
}

fn axis(out: &mut String, end: f64, y: f64) {
    let step = nice_step(end);
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            x(t, end),
            y,
            fmt_secs(t)
        );
        t += step;
    }
}

fn fmt_secs(t: f64) -> String {
    if t >= 120.0 && (t % 60.0).abs() < 1e-9 {
        format!("{}m", t / 60.0)
    } else {
        format!("{t}s")
    }
}

fn nice_step(end: f64) -> f64 {
    for step in [
        0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ] {
        if end / step <= 12.0 {
            return step;
        }
    }
    7200.0
}

/// Bands per candidate over `end` seconds; `spans` are `(start, end, name, healthy)`, the
/// unhealthy ones shaded.
pub fn bands(
    title: &str,
    end: f64,
    spans: &[(f64, f64, String, bool)],
    rows: &[BandRow],
) -> String {
    let row_h = 20.0;
    let top = 60.0;
    let height = top + row_h * rows.len() as f64 + 70.0;
    let mut out = String::new();
    header(&mut out, WIDTH, height, title);
    let bottom = top + row_h * rows.len() as f64;
    for (a, b, name, healthy) in spans {
        if !healthy {
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#fde0dc"/>"##,
                x(*a, end),
                top - 16.0,
                (x(*b, end) - x(*a, end)).max(0.5),
                bottom - top + 16.0
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#333">{}</text>"##,
            x(*a, end) + 3.0,
            top - 4.0,
            escape(name)
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 14.0,
            escape(&row.label)
        );
        let mut from = 0.0;
        let mut current = Band::Closed;
        for &(t, b) in row
            .states
            .iter()
            .chain(std::iter::once(&(end, Band::Closed)))
        {
            let t = t.min(end);
            if t > from {
                let _ = writeln!(
                    out,
                    r#"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{}"/>"#,
                    x(from, end),
                    y + 2.0,
                    x(t, end) - x(from, end),
                    row_h - 4.0,
                    current.colour()
                );
            }
            from = from.max(t);
            current = b;
        }
    }
    axis(&mut out, end, bottom + 16.0);
    let ly = bottom + 40.0;
    for (i, (b, name)) in [
        (Band::Closed, "closed"),
        (Band::HalfOpen, "half-open"),
        (Band::Open, "open"),
    ]
    .iter()
    .enumerate()
    {
        let lx = LEFT + 110.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="{}" width="14" height="10" fill="{}"/><text x="{}" y="{}">{name}</text>"#,
            ly - 9.0,
            b.colour(),
            lx + 18.0,
            ly
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="14" height="10" fill="#fde0dc"/><text x="{}" y="{}">outage</text>"##,
        LEFT + 330.0,
        ly - 9.0,
        LEFT + 348.0,
        ly
    );
    out.push_str("</svg>\n");
    out
}

/// One line of a chart: a name, a colour and a value per second.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its colour.
    pub colour: &'static str,
    /// One value per second.
    pub values: Vec<f64>,
}

/// Line charts stacked over one time axis; `(start, end)` of the overload shaded.
pub fn charts(
    title: &str,
    end: f64,
    shade: (f64, f64),
    panels: &[(String, Vec<Series>)],
) -> String {
    let panel_h = 130.0;
    let gap = 34.0;
    let top = 60.0;
    let height = top + (panel_h + gap) * panels.len() as f64 + 50.0;
    let mut out = String::new();
    header(&mut out, WIDTH, height, title);
    for (p, (name, series)) in panels.iter().enumerate() {
        let y0 = top + (panel_h + gap) * p as f64;
        let max = series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0f64, f64::max)
            .max(1.0);
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{y0}" width="{:.1}" height="{panel_h}" fill="#fde0dc"/>"##,
            x(shade.0, end),
            x(shade.1, end) - x(shade.0, end)
        );
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{y0}" width="{:.1}" height="{panel_h}" fill="none" stroke="#bbb"/>"##,
            x(end, end) - LEFT
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text>"#,
            LEFT - 8.0,
            y0 + 14.0,
            escape(name)
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">max {}</text>"##,
            LEFT - 8.0,
            y0 + 30.0,
            human(max)
        );
        for s in series {
            let mut points = String::new();
            for (i, v) in s.values.iter().enumerate() {
                let t = i as f64 + 1.0;
                let _ = write!(
                    points,
                    "{:.0},{:.0} ",
                    x(t, end),
                    y0 + panel_h - panel_h * (v / max)
                );
            }
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
                points.trim_end(),
                s.colour
            );
        }
        if p == 0 {
            for (i, s) in series.iter().enumerate() {
                let lx = 12.0;
                let ly = y0 + 56.0 + 16.0 * i as f64;
                let _ = writeln!(
                    out,
                    r#"<rect x="{lx}" y="{}" width="14" height="4" fill="{}"/><text x="{}" y="{ly}">{}</text>"#,
                    ly - 5.0,
                    s.colour,
                    lx + 18.0,
                    escape(&s.name)
                );
            }
        }
    }
    axis(
        &mut out,
        end,
        top + (panel_h + gap) * panels.len() as f64 - gap + 16.0,
    );
    out.push_str("</svg>\n");
    out
}

/// `12345` as `12.3k`.
pub fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
