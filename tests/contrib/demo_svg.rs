//! The demo's `--svg` timeline parses as SVG and draws what it was given.

#[allow(dead_code)]
#[path = "../../examples/demo/svg.rs"]
mod svg;

use svg::{Band, Second, Server, Timeline};

fn timeline() -> Timeline {
    Timeline {
        duration: 4.0,
        phases: vec![
            (0.0, "healthy".into()),
            (2.0, "failing <& \"slow\">".into()),
        ],
        breaker: vec![
            (0.0, Band::Closed),
            (2.4, Band::Open),
            (3.2, Band::HalfOpen),
            (3.3, Band::Closed),
        ],
        seconds: vec![
            Second {
                ok: 50,
                ..Second::default()
            },
            Second {
                ok: 48,
                server_error: 2,
                ..Second::default()
            },
            Second {
                ok: 10,
                server_error: 5,
                fallback: 5,
                rejected: 30,
            },
            Second {
                ok: 40,
                rejected: 10,
                ..Second::default()
            },
        ],
        latencies: (0..200)
            .map(|i| (f64::from(i) / 50.0, 0.5 + f64::from(i % 7) * 40.0))
            .collect(),
        server: Some(Server {
            duration: 2.4,
            trigger: 1.5,
            phases: vec![
                (0.0, "serving".into()),
                (1.5, "draining".into()),
                (2.2, "refusing".into()),
                (2.35, "cleaning_up".into()),
            ],
            summary: "in flight at the signal 8, lost 0 <ok>".into(),
        }),
    }
}

#[test]
fn the_timeline_is_a_valid_svg_file_with_every_part() {
    let path = std::env::temp_dir().join(format!("harden-demo-{}.svg", std::process::id()));
    std::fs::write(&path, svg::render(&timeline())).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();

    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );

    let with_class = |class: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .count()
    };
    // One band segment per breaker state entry.
    assert_eq!(with_class("band"), 4);
    // One stacked bar segment per non-zero outcome count: 1 + 2 + 4 + 2.
    assert_eq!(with_class("rate"), 9);
    // Scene 2: one band segment per server phase, one trigger marker.
    assert_eq!(with_class("server"), 4);
    assert_eq!(with_class("trigger"), 1);
    // One dot per call.
    let latency = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("latency"))
        .expect("a latency group");
    assert_eq!(
        latency
            .children()
            .filter(|n| n.has_tag_name("circle"))
            .count(),
        200
    );

    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().to_string())
        .collect();
    // Phase names are escaped on the way in and read back unchanged.
    assert!(
        texts.iter().any(|t| t == "failing <& \"slow\">"),
        "{texts:?}"
    );
    for label in [
        "breaker",
        "calls / s",
        "latency (ms)",
        "open",
        "half-open",
        "4s",
        "server",
        "draining",
        "shutdown triggered",
        "in flight at the signal 8, lost 0 <ok>",
    ] {
        assert!(texts.iter().any(|t| t == label), "{label}: {texts:?}");
    }
    // Every coordinate is a finite number inside the canvas.
    for node in doc.descendants().filter(|n| n.is_element()) {
        for attr in ["x", "y", "width", "height", "cx", "cy"] {
            if let Some(value) = node.attribute(attr) {
                if value.ends_with('%') {
                    continue;
                }
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("{attr}={value}"));
                assert!(
                    v.is_finite() && (0.0..=900.0).contains(&v),
                    "{attr}={value}"
                );
            }
        }
    }
}

#[test]
fn an_empty_timeline_is_still_a_valid_svg() {
    let text = svg::render(&Timeline::default());
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
}
