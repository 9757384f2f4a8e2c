//! `{{name}}` placeholders filled in the templates of `deploy/` (the files users may also copy
//! and fill by hand), and quoting for the shell.

/// Fills every `{{name}}` of `template`; an unknown or unfilled placeholder is an error naming it.
pub fn render(template: &str, values: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| "a `{{` without its `}}`".to_string())?;
        let name = after[..end].trim();
        let value =
            values.iter().find(|(key, _)| *key == name).ok_or_else(|| format!("no value for {{{{{name}}}}}"))?;
        out.push_str(&value.1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `text` as one single-quoted shell word.
pub fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:@+,".contains(&b)) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Words joined into one shell command line, each quoted as needed.
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words.iter().map(|w| shell_quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_refuses_unknown_placeholders() {
        assert_eq!(render("a {{x}} b {{ y }}", &[("x", "1".into()), ("y", "2".into())]).unwrap(), "a 1 b 2");
        assert!(render("{{z}}", &[]).unwrap_err().contains("{{z}}"));
        assert!(render("{{open", &[]).is_err());
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_line(&["rosetta", "--config", "/a b/c's.yaml"]), r"rosetta --config '/a b/c'\''s.yaml'");
        assert_eq!(shell_quote(""), "''");
    }
}
