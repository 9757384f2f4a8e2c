//! Human-readable forms of an [`EvalReport`]: Markdown tables, SVG pictures and an HTML page.

use std::fmt::Write as _;

use rosetta_datasets::benchmark::Protocol;

use crate::document::{Document, Table, escape};
use crate::report::{EvalReport, LareqaResults, QrelsResults};

/// A number with three decimals, or `–` when absent.
pub fn fmt3(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

/// A number with one decimal, or `–` when absent.
pub fn fmt1(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"))
}

/// The report as a document: the tables a paper would show (per-language summary, query ×
/// corpus mAP, rank distance) and, for LAReQA benchmarks, the two pictures.
pub fn document(report: &EvalReport) -> Document {
    let step = report.step.map(|s| format!(" (step {s})")).unwrap_or_default();
    let mut doc = Document::new(format!("{} — {}{step}", report.benchmark, report.model));
    doc.paragraph(format!(
        "{} queries, {} candidates, {} languages. AP: {}.",
        report.queries,
        report.candidates,
        report.languages.len(),
        report.ap_variant
    ));
    if let Some(lareqa) = &report.lareqa {
        lareqa_blocks(&mut doc, lareqa, &report.benchmark);
    }
    if let Some(qrels) = &report.qrels {
        doc.table(qrels_table(qrels));
    }
    doc
}

/// The report as Markdown.
pub fn markdown(report: &EvalReport) -> String {
    document(report).markdown()
}

/// The report as a self-contained HTML page: real tables and both pictures inline.
pub fn html(report: &EvalReport) -> String {
    document(report).html()
}

fn row(cells: impl IntoIterator<Item = String>) -> Vec<String> {
    cells.into_iter().collect()
}

fn lareqa_blocks(doc: &mut Document, r: &LareqaResults, benchmark: &str) {
    doc.heading(1, "Summary");
    let mut summary = Table {
        caption: String::new(),
        header: row(["setting", "mAP", "R@k", "nDCG@10", "settings"].map(String::from)),
        rows: Vec::new(),
    };
    for (setting, recall, average) in [
        ("monolingual", "R@1", r.monolingual),
        ("cross-lingual", "R@1", r.cross_lingual),
        ("multilingual", "R@10", r.multilingual),
    ] {
        summary.rows.push(row([
            setting.to_string(),
            fmt3(average.map),
            format!("{recall} {}", fmt3(average.recall)),
            fmt3(average.ndcg_at_10),
            average.settings.to_string(),
        ]));
    }
    doc.table(summary);
    doc.paragraph(format!(
        "Rank distance (language bias, lower is better): {}. Parallel rank correlation (language bias, 1 = none): {} over {} groups.",
        fmt1(r.rank_distance),
        fmt3(r.parallel_rank_correlation),
        r.parallel_rank_correlation_coverage.evaluated
    ));
    doc.heading(1, "Per query language");
    let mut per_language = Table {
        caption: String::new(),
        header: row([
            "lang",
            "mono mAP",
            "mono R@1",
            "cross mAP",
            "multi mAP",
            "multi R@10",
            "rank distance",
            "queries (skipped)",
        ]
        .map(String::from)),
        rows: Vec::new(),
    };
    for pooled in &r.pooled {
        let lang = &pooled.query_lang;
        let mono = r.pairs.iter().find(|p| &p.query_lang == lang && &p.corpus_lang == lang);
        let cross = crate::metrics::mean(
            r.pairs.iter().filter(|p| &p.query_lang == lang && &p.corpus_lang != lang).filter_map(|p| p.map),
        );
        per_language.rows.push(row([
            lang.clone(),
            fmt3(mono.and_then(|p| p.map)),
            fmt3(mono.and_then(|p| p.recall_at_1)),
            fmt3(cross),
            fmt3(pooled.map),
            fmt3(pooled.recall_at_10),
            fmt1(pooled.rank_distance),
            format!("{} ({})", pooled.coverage.evaluated, pooled.coverage.skipped),
        ]));
    }
    doc.table(per_language);
    let languages = matrix_languages(r);
    doc.heading(1, "mAP, query language (rows) × corpus language (columns)");
    let mut header = vec!["q \\ c".to_string()];
    header.extend(languages.iter().cloned());
    let rows = languages
        .iter()
        .map(|ql| {
            let mut cells = vec![ql.clone()];
            cells.extend(languages.iter().map(|cl| fmt3(pair_map(r, ql, cl))));
            cells
        })
        .collect();
    doc.table(Table { caption: String::new(), header, rows });
    let skipped: usize = r.pairs.iter().map(|p| p.coverage.skipped).sum();
    if skipped > 0 {
        doc.paragraph(format!(
            "{skipped} (query, corpus language) settings had no relevant candidate and were skipped."
        ));
    }
    doc.picture(
        "mAP by query × corpus language",
        heatmap_svg(r, &format!("{benchmark}: mAP by query × corpus language")),
        Some("heatmap.svg"),
    );
    doc.picture(
        "rank distance by query language",
        bias_svg(r, "rank distance by query language (lower is less biased)"),
        Some("bias.svg"),
    );
}

fn qrels_table(r: &QrelsResults) -> Table {
    let mut table = Table {
        caption: String::new(),
        header: row(["lang", "nDCG@10", "R@100", "MAP", "S@20", "S@100", "queries (skipped)"].map(String::from)),
        rows: Vec::new(),
    };
    for l in &r.languages {
        table.rows.push(row([
            l.lang.clone(),
            fmt3(l.ndcg_at_10),
            fmt3(l.recall_at_100),
            fmt3(l.map),
            fmt3(l.success_at_20),
            fmt3(l.success_at_100),
            format!("{} ({})", l.coverage.evaluated, l.coverage.skipped),
        ]));
    }
    table.rows.push(row([
        "average".to_string(),
        fmt3(r.ndcg_at_10),
        fmt3(r.recall_at_100),
        fmt3(r.map),
        fmt3(r.success_at_20),
        fmt3(r.success_at_100),
        String::new(),
    ]));
    table
}

/// Languages that appear in the pair matrix, in report order.
fn matrix_languages(r: &LareqaResults) -> Vec<String> {
    let mut languages: Vec<String> = Vec::new();
    for p in &r.pairs {
        if p.map.is_some() {
            for lang in [&p.query_lang, &p.corpus_lang] {
                if !languages.contains(lang) {
                    languages.push(lang.clone());
                }
            }
        }
    }
    languages
}

fn pair_map(r: &LareqaResults, ql: &str, cl: &str) -> Option<f64> {
    r.pairs.iter().find(|p| p.query_lang == ql && p.corpus_lang == cl).and_then(|p| p.map)
}

/// Heat colour for a value in [0, 1]: pale yellow (low) to dark blue (high).
fn heat(value: f64) -> String {
    let t = value.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", lerp(255.0, 8.0), lerp(247.0, 48.0), lerp(188.0, 107.0))
}

/// The query-language × corpus-language mAP heatmap.
pub fn heatmap_svg(r: &LareqaResults, title: &str) -> String {
    let languages = matrix_languages(r);
    let cell = 44.0;
    let left = 60.0;
    let top = 84.0;
    let size = languages.len() as f64 * cell;
    // Wide enough for the title (about 8 px a character at 14 px).
    let width = (left + size + 20.0).max(20.0 + 8.0 * title.chars().count() as f64);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" font-family="sans-serif" font-size="12">"#,
        h = top + size + 40.0
    );
    let _ = write!(svg, r#"<text x="10" y="20" font-size="14">{}</text>"#, escape(title));
    svg.push_str(r##"<text x="10" y="38" font-size="11" fill="#555555">cells: mAP × 100</text>"##);
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">corpus language</text>"#,
        left + size / 2.0,
        top - 28.0
    );
    let _ = write!(
        svg,
        r#"<text x="14" y="{y}" transform="rotate(-90 14 {y})" text-anchor="middle">query language</text>"#,
        y = top + size / 2.0
    );
    for (i, lang) in languages.iter().enumerate() {
        let x = left + i as f64 * cell + cell / 2.0;
        let _ = write!(svg, r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#, top - 8.0, escape(lang));
        let y = top + i as f64 * cell + cell / 2.0 + 4.0;
        let _ = write!(svg, r#"<text x="{}" y="{y}" text-anchor="end">{}</text>"#, left - 6.0, escape(lang));
    }
    for (row, ql) in languages.iter().enumerate() {
        for (col, cl) in languages.iter().enumerate() {
            let x = left + col as f64 * cell;
            let y = top + row as f64 * cell;
            let value = pair_map(r, ql, cl);
            let fill = value.map_or_else(|| "#dddddd".to_string(), heat);
            let ink = if value.unwrap_or(0.0) > 0.55 { "#ffffff" } else { "#000000" };
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#ffffff"><title>{} → {}: {}</title></rect>"##,
                escape(ql),
                escape(cl),
                fmt3(value)
            );
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" fill="{ink}" font-size="10">{}</text>"#,
                x + cell / 2.0,
                y + cell / 2.0 + 4.0,
                value.map_or_else(|| "–".to_string(), |v| format!("{:.0}", v * 100.0))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Per-query-language rank distance as horizontal bars.
pub fn bias_svg(r: &LareqaResults, title: &str) -> String {
    let bars: Vec<(&str, f64)> =
        r.pooled.iter().filter_map(|p| p.rank_distance.map(|d| (p.query_lang.as_str(), d))).collect();
    let max = bars.iter().map(|(_, d)| *d).fold(1.0f64, f64::max);
    let (left, top, width, row) = (60.0, 40.0, 360.0, 22.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">"#,
        left + width + 80.0,
        top + bars.len() as f64 * row + 20.0
    );
    let _ = write!(svg, r#"<text x="{left}" y="20" font-size="14">{}</text>"#, escape(title));
    for (i, (lang, distance)) in bars.iter().enumerate() {
        let y = top + i as f64 * row;
        let w = width * distance / max;
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, left - 6.0, y + 14.0, escape(lang));
        let _ = write!(svg, r##"<rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="#c0504d"/>"##, row - 6.0);
        let _ = write!(svg, r#"<text x="{}" y="{}">{distance:.1}</text>"#, left + w + 6.0, y + 14.0);
    }
    svg.push_str("</svg>");
    svg
}

/// One line with the headline numbers of a report.
pub fn summary_line(report: &EvalReport) -> String {
    let f = |name: &str| fmt3(report.metric(name));
    match report.protocol {
        Protocol::Lareqa => format!(
            "{}: mAP mono {} · cross {} · multi {} · rank distance {}",
            report.benchmark,
            f("monolingual_map"),
            f("cross_lingual_map"),
            f("multilingual_map"),
            fmt1(report.metric("rank_distance"))
        ),
        Protocol::Qrels => {
            format!(
                "{}: nDCG@10 {} · R@100 {} · MAP {} · success@20 {} · success@100 {}",
                report.benchmark,
                f("ndcg_at_10"),
                f("recall_at_100"),
                f("map"),
                f("success_at_20"),
                f("success_at_100")
            )
        }
    }
}
