//! A small document model — headings, paragraphs, tables and inline SVG pictures — rendered both
//! as Markdown and as one self-contained HTML page with real `<table>`s, so that the two forms of
//! a report always hold the same numbers.

use std::fmt::Write as _;

/// A table: a caption, a header row and rows of cells (already formatted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Shown above the table.
    pub caption: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

/// One block of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A heading of level 1–3.
    Heading(u8, String),
    /// A paragraph of plain text.
    Paragraph(String),
    /// A table.
    Table(Table),
    /// An inline SVG picture (HTML only; Markdown names it by `file`).
    Picture {
        /// What it shows.
        title: String,
        /// The SVG markup.
        svg: String,
        /// The file it is also written to (for Markdown links), if any.
        file: Option<String>,
    },
}

/// A document: a title and blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// The title (the page's `<title>` and first heading).
    pub title: String,
    /// The blocks in order.
    pub blocks: Vec<Block>,
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

impl Document {
    /// A document titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), blocks: Vec::new() }
    }

    /// Appends a heading.
    pub fn heading(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }

    /// Appends a paragraph.
    pub fn paragraph(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Paragraph(text.into()));
    }

    /// Appends a table.
    pub fn table(&mut self, table: Table) {
        self.blocks.push(Block::Table(table));
    }

    /// Appends a picture.
    pub fn picture(&mut self, title: impl Into<String>, svg: String, file: Option<&str>) {
        self.blocks.push(Block::Picture { title: title.into(), svg, file: file.map(str::to_string) });
    }

    /// The document as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n\n", self.title);
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let _ = writeln!(out, "{} {text}\n", "#".repeat(usize::from((*level).clamp(1, 5)) + 1));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "{text}\n");
                }
                Block::Table(table) => {
                    if !table.caption.is_empty() {
                        let _ = writeln!(out, "{}\n", table.caption);
                    }
                    let header: Vec<String> = table.header.iter().map(|h| markdown_cell(h)).collect();
                    let _ = writeln!(out, "| {} |", header.join(" | "));
                    let _ = writeln!(out, "|{}", "---|".repeat(table.header.len()));
                    for row in &table.rows {
                        let cells: Vec<String> = row.iter().map(|c| markdown_cell(c)).collect();
                        let _ = writeln!(out, "| {} |", cells.join(" | "));
                    }
                    out.push('\n');
                }
                Block::Picture { title, file, .. } => {
                    if let Some(file) = file {
                        let _ = writeln!(out, "![{title}]({file})\n");
                    }
                }
            }
        }
        out
    }

    /// The document as a self-contained HTML page (tables as `<table>`, pictures inline).
    pub fn html(&self) -> String {
        let mut page = String::new();
        let _ = write!(
            page,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>\
             body{{font-family:sans-serif;margin:2em;max-width:80em}}\
             table{{border-collapse:collapse;margin:0.5em 0 1.5em}}\
             th,td{{border:1px solid #bbb;padding:0.25em 0.6em;text-align:right}}\
             th:first-child,td:first-child{{text-align:left}}th{{background:#eee}}\
             caption{{caption-side:top;text-align:left;font-weight:bold;padding:0.3em 0}}\
             figure{{display:inline-block;margin:0 1em 1em 0;vertical-align:top}}</style></head><body><h1>{}</h1>",
            escape(&self.title),
            escape(&self.title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let level = (*level).clamp(1, 5) + 1;
                    let _ = write!(page, "<h{level}>{}</h{level}>", escape(text));
                }
                Block::Paragraph(text) => {
                    let _ = write!(page, "<p>{}</p>", escape(text));
                }
                Block::Table(table) => {
                    page.push_str("<table>");
                    if !table.caption.is_empty() {
                        let _ = write!(page, "<caption>{}</caption>", escape(&table.caption));
                    }
                    page.push_str("<thead><tr>");
                    for header in &table.header {
                        let _ = write!(page, "<th>{}</th>", escape(header));
                    }
                    page.push_str("</tr></thead><tbody>");
                    for row in &table.rows {
                        page.push_str("<tr>");
                        for cell in row {
                            let _ = write!(page, "<td>{}</td>", escape(cell));
                        }
                        page.push_str("</tr>");
                    }
                    page.push_str("</tbody></table>");
                }
                Block::Picture { title, svg, .. } => {
                    let _ = write!(page, "<figure>{svg}<figcaption>{}</figcaption></figure>", escape(title));
                }
            }
        }
        page.push_str("</body></html>");
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_two_forms() {
        let mut doc = Document::new("T <1>");
        doc.heading(1, "Summary");
        doc.table(Table {
            caption: "Table 1".into(),
            header: vec!["a".into(), "b|c".into()],
            rows: vec![vec!["1".into(), "<2>".into()]],
        });
        doc.picture("pic", "<svg></svg>".into(), Some("pic.svg"));
        let md = doc.markdown();
        assert!(
            md.contains("## Summary")
                && md.contains("| a | b\\|c |")
                && md.contains("| 1 | <2> |")
                && md.contains("![pic](pic.svg)"),
            "{md}"
        );
        let html = doc.html();
        assert!(
            html.contains("<table><caption>Table 1</caption>")
                && html.contains("<td>&lt;2&gt;</td>")
                && html.contains("<svg></svg>"),
            "{html}"
        );
        assert!(!html.contains("<pre>"));
    }
}
