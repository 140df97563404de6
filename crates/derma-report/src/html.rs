//! `report.html`: the same document as one self-contained HTML page — every image inlined as
//! a `data:image/png;base64,` URI, a few lines of CSS, no link to any other file.

use std::fmt::Write as _;
use std::path::Path;

use crate::document::{Block, Cell};
use crate::error::{Error, Result};

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:1.8em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ddd;padding:.3em .7em;text-align:right;vertical-align:middle}
th:first-child,td:first-child{text-align:left}th{background:#f4f6f8}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto}td img{display:block;image-rendering:pixelated}.note{color:#555;font-style:italic}
code{background:#f2f2f2;padding:0 .25em;border-radius:3px}";

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Escaped text with `code` spans (between backticks) as `<code>`.
fn inline(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { format!("<code>{}</code>", escape(part)) } else { escape(part) })
        .collect()
}

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An `<img>` with the PNG at `dir/path` inlined.
fn image(dir: &Path, path: &str, alt: &str) -> Result<String> {
    let file = dir.join(path);
    let bytes = std::fs::read(&file).map_err(|source| Error::Io { path: file, action: "reading", cause: source })?;
    Ok(format!("<img src=\"data:image/png;base64,{}\" alt=\"{}\">", base64(&bytes), escape(alt)))
}

/// Renders `blocks` as a self-contained HTML page titled `title`; images are read from
/// `dir` (the run folder) and inlined.
pub(crate) fn render(blocks: &[Block], title: &str, dir: &Path) -> Result<String> {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n",
        escape(title)
    );
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", inline(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(s, "<p>{}</p>", inline(text));
            }
            Block::Note(text) => {
                let _ = writeln!(s, "<p class=\"note\">{}</p>", inline(text));
            }
            Block::List(items) => {
                s.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(s, "<li>{}</li>", inline(item));
                }
                s.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                s.push_str("<table>\n<thead><tr>");
                for h in header {
                    let _ = write!(s, "<th>{}</th>", inline(h));
                }
                s.push_str("</tr></thead>\n<tbody>\n");
                for row in rows {
                    s.push_str("<tr>");
                    for c in row {
                        let content = match c {
                            Cell::Text(t) => inline(t),
                            Cell::Image { path, alt } => image(dir, path, alt)?,
                        };
                        let _ = write!(s, "<td>{content}</td>");
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</tbody>\n</table>\n");
            }
            Block::Image { path, alt } => {
                let _ = writeln!(s, "<figure>{}</figure>", image(dir, path, alt)?);
            }
        }
    }
    s.push_str("</body>\n</html>\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        // RFC 4648, section 10.
        let cases = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "base64({plain:?})");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }
}
