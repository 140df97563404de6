//! `report.md`: the document as GitHub-flavoured Markdown, plots and thumbnails as relative
//! image links into the run folder.

use std::fmt::Write as _;

use crate::document::{Block, Cell};

/// Escapes the characters Markdown would read as formatting.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '\\' | '*' | '_' | '|' | '<' | '>' | '[' | ']') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Text with `code` spans kept (backticks delimit them and are not escaped).
fn inline(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { format!("`{part}`") } else { escape(part) })
        .collect()
}

fn cell(c: &Cell) -> String {
    match c {
        Cell::Text(t) => inline(t),
        Cell::Image { path, alt } => format!("![{}]({path})", escape(alt)),
    }
}

/// Renders `blocks` as Markdown.
pub(crate) fn render(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "{} {}\n", "#".repeat(usize::from(*level)), inline(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(s, "{}\n", inline(text));
            }
            Block::Note(text) => {
                let _ = writeln!(s, "_{}_\n", inline(text));
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(s, "- {}", inline(item));
                }
                s.push('\n');
            }
            Block::Table { header, rows } => {
                let _ = writeln!(s, "| {} |", header.iter().map(|h| inline(h)).collect::<Vec<_>>().join(" | "));
                let align: Vec<&str> = (0..header.len()).map(|i| if i == 0 { ":---" } else { "---:" }).collect();
                let _ = writeln!(s, "|{}|", align.join("|"));
                for row in rows {
                    let _ = writeln!(s, "| {} |", row.iter().map(cell).collect::<Vec<_>>().join(" | "));
                }
                s.push('\n');
            }
            Block::Image { path, alt } => {
                let _ = writeln!(s, "![{}]({path})\n", escape(alt));
            }
        }
    }
    s
}
