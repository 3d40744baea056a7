//! The demo's timeline as an SVG document, written as plain SVG text.
//!
//! Self-contained (no harden types), so `tests/contrib/demo_svg.rs` can include it and check that what
//! it writes parses as XML. Text is `<text>` with a generic font family: the viewer picks the
//! font, so writing the file needs no font on this machine.

use std::fmt::Write as _;

/// The breaker's state over an interval, as the band shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Band {
    Closed,
    Open,
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

    fn label(self) -> &'static str {
        match self {
            Band::Closed => "closed",
            Band::Open => "open",
            Band::HalfOpen => "half-open",
        }
    }
}

/// Calls that finished in one second, by what the caller saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Second {
    /// A fresh answer from the upstream.
    pub(crate) ok: u32,
    /// A 5xx that got through (retries exhausted).
    pub(crate) server_error: u32,
    /// A fallback answer after an error or timeout.
    pub(crate) fallback: u32,
    /// A fallback answer because the breaker rejected the call (no network).
    pub(crate) rejected: u32,
}

/// Everything the picture shows; times in seconds from the start.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    /// Length of the run.
    pub(crate) duration: f64,
    /// Phase names and the times they began, in order.
    pub(crate) phases: Vec<(f64, String)>,
    /// The breaker's state from each time on, in order; the first entry is at 0.
    pub(crate) breaker: Vec<(f64, Band)>,
    /// One entry per second of the run.
    pub(crate) seconds: Vec<Second>,
    /// Each call: when it finished, and how long it took the caller in milliseconds.
    pub(crate) latencies: Vec<(f64, f64)>,
    /// Scene 2, drawn as a panel of its own (its own time axis) when present.
    pub(crate) server: Option<Server>,
}

/// Scene 2: the server's shutdown phases over the scene's own time, and its final count.
#[derive(Debug, Clone, Default)]
pub(crate) struct Server {
    /// Length of the scene.
    pub(crate) duration: f64,
    /// When the shutdown was triggered.
    pub(crate) trigger: f64,
    /// Phase names (`serving`, `draining`, `refusing`, ...) and the times they began, in order.
    pub(crate) phases: Vec<(f64, String)>,
    /// One line under the band: the final count.
    pub(crate) summary: String,
}

fn server_colour(phase: &str) -> &'static str {
    match phase {
        "serving" => "#4caf50",
        "draining" => "#ffb300",
        "refusing" => "#e53935",
        _ => "#9e9e9e",
    }
}

const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const BAND_TOP: f64 = 60.0;
const BAND_HEIGHT: f64 = 26.0;
const RATE_TOP: f64 = 120.0;
const RATE_HEIGHT: f64 = 190.0;
const LATENCY_TOP: f64 = 360.0;
const LATENCY_HEIGHT: f64 = 190.0;
const HEIGHT: f64 = 610.0;
const SERVER_TOP: f64 = 650.0;
const SERVER_HEIGHT: f64 = 26.0;
/// The canvas with scene 2's panel.
const HEIGHT_WITH_SERVER: f64 = 740.0;
/// Latency axis: log scale over these milliseconds.
const LATENCY_MIN_MS: f64 = 0.1;
const LATENCY_MAX_MS: f64 = 2000.0;

const OK: &str = "#4caf50";
const SERVER_ERROR: &str = "#fb8c00";
const FALLBACK: &str = "#78909c";
const REJECTED: &str = "#e53935";

/// The timeline as a standalone SVG document.
pub(crate) fn render(timeline: &Timeline) -> String {
    let duration = timeline.duration.max(1e-9);
    let x = |t: f64| LEFT + (t / duration).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT);
    let height = if timeline.server.is_some() {
        HEIGHT_WITH_SERVER
    } else {
        HEIGHT
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<title>harden demo: a client behind a circuit breaker, retry and fallback</title>
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="24" font-size="16" font-weight="bold">harden demo: breaker state, calls per second, latency</text>"#
    );

    // Phase boundaries across every panel, with their names on top.
    for (i, (start, name)) in timeline.phases.iter().enumerate() {
        let end = timeline.phases.get(i + 1).map_or(duration, |p| p.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0:.1}" y1="{top}" x2="{x0:.1}" y2="{bottom}" stroke="#9e9e9e" stroke-dasharray="4 3"/>
<text x="{mid:.1}" y="{label}" text-anchor="middle" fill="#424242">{name}</text>"##,
            x0 = x(*start),
            top = BAND_TOP - 14.0,
            bottom = LATENCY_TOP + LATENCY_HEIGHT,
            mid = (x(*start) + x(end)) / 2.0,
            label = BAND_TOP - 6.0,
            name = escape(name),
        );
    }

    // Band: the breaker's state.
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">breaker</text>"#,
        LEFT - 8.0,
        BAND_TOP + BAND_HEIGHT / 2.0 + 4.0
    );
    for (i, (start, band)) in timeline.breaker.iter().enumerate() {
        let end = timeline.breaker.get(i + 1).map_or(duration, |b| b.0);
        let _ = writeln!(
            svg,
            r#"<rect class="band" x="{:.1}" y="{BAND_TOP}" width="{:.1}" height="{BAND_HEIGHT}" fill="{}"><title>{} from {:.2}s</title></rect>"#,
            x(*start),
            (x(end) - x(*start)).max(0.5),
            band.colour(),
            band.label(),
            start,
        );
    }
    legend(
        &mut svg,
        BAND_TOP + BAND_HEIGHT + 16.0,
        &[
            (Band::Closed.colour(), "closed"),
            (Band::HalfOpen.colour(), "half-open"),
            (Band::Open.colour(), "open"),
        ],
    );

    // Calls per second, stacked by outcome.
    let peak = timeline
        .seconds
        .iter()
        .map(|s| s.ok + s.server_error + s.fallback + s.rejected)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = nice_ceiling(f64::from(peak));
    let y_rate = |n: f64| RATE_TOP + RATE_HEIGHT - n / scale * RATE_HEIGHT;
    axis(&mut svg, RATE_TOP, RATE_HEIGHT, "calls / s");
    for tick in [0.0, scale / 2.0, scale] {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eeeeee"/>
<text x="{}" y="{:.1}" text-anchor="end">{tick}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y_rate(tick) + 4.0,
            y = y_rate(tick),
        );
    }
    for (i, second) in timeline.seconds.iter().enumerate() {
        let (x0, x1) = (x(i as f64), x((i + 1) as f64));
        let mut base = 0.0;
        for (n, colour) in [
            (second.ok, OK),
            (second.server_error, SERVER_ERROR),
            (second.fallback, FALLBACK),
            (second.rejected, REJECTED),
        ] {
            if n == 0 {
                continue;
            }
            let top = base + f64::from(n);
            let _ = writeln!(
                svg,
                r#"<rect class="rate" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/>"#,
                x0 + 1.0,
                y_rate(top),
                (x1 - x0 - 2.0).max(0.5),
                y_rate(base) - y_rate(top),
            );
            base = top;
        }
    }
    legend(
        &mut svg,
        RATE_TOP + RATE_HEIGHT + 18.0,
        &[
            (OK, "fresh answer"),
            (SERVER_ERROR, "5xx got through"),
            (FALLBACK, "fallback after an error"),
            (REJECTED, "fallback, breaker open (no network)"),
        ],
    );

    // Latency: every call as a dot, on a log scale.
    let y_latency = |ms: f64| {
        let span = (LATENCY_MAX_MS / LATENCY_MIN_MS).log10();
        let at = (ms.clamp(LATENCY_MIN_MS, LATENCY_MAX_MS) / LATENCY_MIN_MS).log10() / span;
        LATENCY_TOP + LATENCY_HEIGHT - at * LATENCY_HEIGHT
    };
    axis(&mut svg, LATENCY_TOP, LATENCY_HEIGHT, "latency (ms)");
    for tick in [0.1, 1.0, 10.0, 100.0, 1000.0] {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eeeeee"/>
<text x="{}" y="{:.1}" text-anchor="end">{tick}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y_latency(tick) + 4.0,
            y = y_latency(tick),
        );
    }
    let _ = writeln!(
        svg,
        r##"<g class="latency" fill="#1e88e5" fill-opacity="0.45">"##
    );
    for (at, ms) in &timeline.latencies {
        let _ = writeln!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6"/>"#,
            x(*at),
            y_latency(*ms)
        );
    }
    let _ = writeln!(svg, "</g>");

    // Time axis.
    let bottom = LATENCY_TOP + LATENCY_HEIGHT;
    let mut t = 0.0;
    while t <= duration + 1e-9 {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t}s</text>"#,
            x(t),
            bottom + 16.0
        );
        t += 1.0;
    }
    if let Some(server) = &timeline.server {
        server_panel(&mut svg, server);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Scene 2: the shutdown phases as a band on the scene's own time axis, the trigger marked.
fn server_panel(svg: &mut String, server: &Server) {
    let duration = server.duration.max(1e-9);
    let x = |t: f64| LEFT + (t / duration).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold">scene 2: the server's shutdown under load</text>
<text x="{:.1}" y="{:.1}" text-anchor="end">server</text>"#,
        SERVER_TOP - 22.0,
        LEFT - 8.0,
        SERVER_TOP + SERVER_HEIGHT / 2.0 + 4.0,
    );
    for (i, (start, phase)) in server.phases.iter().enumerate() {
        let end = server.phases.get(i + 1).map_or(duration, |p| p.0);
        let _ = writeln!(
            svg,
            r##"<rect class="server" x="{x0:.1}" y="{SERVER_TOP}" width="{w:.1}" height="{SERVER_HEIGHT}" fill="{colour}"><title>{name} from {start:.2}s</title></rect>
<text x="{mid:.1}" y="{ty:.1}" text-anchor="middle" fill="white">{name}</text>"##,
            x0 = x(*start),
            w = (x(end) - x(*start)).max(0.5),
            colour = server_colour(phase),
            name = escape(phase),
            mid = (x(*start) + x(end)) / 2.0,
            ty = SERVER_TOP + SERVER_HEIGHT / 2.0 + 4.0,
        );
    }
    let _ = writeln!(
        svg,
        r##"<line class="trigger" x1="{t:.1}" y1="{top:.1}" x2="{t:.1}" y2="{bottom:.1}" stroke="#212121" stroke-width="2"/>
<text x="{t:.1}" y="{top:.1}" text-anchor="middle">shutdown triggered</text>"##,
        t = x(server.trigger),
        top = SERVER_TOP - 4.0,
        bottom = SERVER_TOP + SERVER_HEIGHT + 4.0,
    );
    let mut t = 0.0;
    while t <= duration + 1e-9 {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t}s</text>"#,
            x(t),
            SERVER_TOP + SERVER_HEIGHT + 16.0
        );
        t += 0.5;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}">{}</text>"#,
        SERVER_TOP + SERVER_HEIGHT + 40.0,
        escape(&server.summary)
    );
}

fn axis(svg: &mut String, top: f64, height: f64, label: &str) {
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="#616161"/>
<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#616161"/>
<text x="{lx}" y="{ly:.1}" text-anchor="middle" transform="rotate(-90 {lx} {ly:.1})">{label}</text>"##,
        bottom = top + height,
        right = WIDTH - RIGHT,
        lx = 16.0,
        ly = top + height / 2.0,
        label = escape(label),
    );
}

fn legend(svg: &mut String, y: f64, entries: &[(&str, &str)]) {
    let mut x = LEFT;
    for (colour, label) in entries {
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 9.0,
            x + 14.0,
            escape(label)
        );
        x += 24.0 + 6.5 * label.len() as f64;
    }
}

/// The smallest of 1, 2, 5 × 10^k at or above `n`.
fn nice_ceiling(n: f64) -> f64 {
    let mut step = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * step >= n {
                return m * step;
            }
        }
        step *= 10.0;
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
