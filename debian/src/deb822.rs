//! Parser for Debian control-file syntax (deb822): paragraphs of `Field: value`
//! lines, continuation lines indented, paragraphs separated by blank lines.
//!
//! Zero-copy: a `Packages` index is ~56 MB, so fields borrow from the input.

use std::fmt;

/// One paragraph (stanza): fields in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph<'a> {
    fields: Vec<(&'a str, &'a str)>,
    /// 1-based line number where the paragraph starts, for error messages.
    pub line: usize,
}

impl<'a> Paragraph<'a> {
    /// The raw value of a field (case-insensitive name). Multi-line values keep
    /// their line breaks and indentation; leading/trailing whitespace is trimmed.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    /// All fields in file order.
    pub fn fields(&self) -> &[(&'a str, &'a str)] {
        &self.fields
    }
}

/// A syntax error with the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses every paragraph of a deb822 document. Comment lines (`#`) are skipped,
/// as deb822 `.sources` files allow them.
pub fn parse(text: &str) -> Result<Vec<Paragraph<'_>>, SyntaxError> {
    let mut paragraphs = Vec::new();
    let mut current: Option<Paragraph<'_>> = None;
    // Byte range of the field value being collected, so continuation lines
    // extend it without copying.
    let mut open_field: Option<(&str, usize, usize)> = None;
    let mut offset = 0;

    fn close_field<'a>(
        text: &'a str,
        current: &mut Option<Paragraph<'a>>,
        open: Option<(&'a str, usize, usize)>,
    ) {
        if let (Some(paragraph), Some((name, start, end))) = (current.as_mut(), open) {
            paragraph.fields.push((name, text[start..end].trim()));
        }
    }

    for (index, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_number = index + 1;
        let line_start = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\n', '\r']);

        if line.trim().is_empty() {
            close_field(text, &mut current, open_field.take());
            if let Some(paragraph) = current.take() {
                paragraphs.push(paragraph);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match open_field.as_mut() {
                Some((_, _, end)) => *end = line_start + line.len(),
                None => {
                    return Err(SyntaxError {
                        line: line_number,
                        message: "continuation line without a field before it".into(),
                    });
                }
            }
            continue;
        }
        let Some(colon) = line.find(':') else {
            return Err(SyntaxError {
                line: line_number,
                message: format!("expected `Field: value`, found {line:?}"),
            });
        };
        close_field(text, &mut current, open_field.take());
        let name = &line[..colon];
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(SyntaxError {
                line: line_number,
                message: format!("invalid field name {name:?}"),
            });
        }
        current.get_or_insert_with(|| Paragraph {
            fields: Vec::new(),
            line: line_number,
        });
        let value_start = line_start + colon + 1;
        open_field = Some((name, value_start, line_start + line.len()));
    }
    close_field(text, &mut current, open_field.take());
    if let Some(paragraph) = current.take() {
        paragraphs.push(paragraph);
    }
    Ok(paragraphs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paragraphs_fields_and_continuations() {
        let text = "Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n\n\nPackage: b\nDepends: x,\n y\n";
        let paragraphs = parse(text).unwrap();
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0].get("package"), Some("a"));
        assert_eq!(
            paragraphs[0].get("Description"),
            Some("short\n long line\n .\n more")
        );
        assert_eq!(paragraphs[1].get("Depends"), Some("x,\n y"));
        assert_eq!(paragraphs[1].line, 9);
        assert_eq!(paragraphs[1].get("Version"), None);
    }

    #[test]
    fn skips_comments_and_crlf() {
        let text = "# comment\r\nTypes: deb\r\n# http://example.invalid/old\r\nURIs: http://example.invalid/debian\r\n";
        let paragraphs = parse(text).unwrap();
        assert_eq!(
            paragraphs[0].get("URIs"),
            Some("http://example.invalid/debian")
        );
    }

    #[test]
    fn reports_line_of_bad_syntax() {
        let error = parse("Package: a\nno colon here\n").unwrap_err();
        assert_eq!(error.line, 2);
        let error = parse(" continuation first\n").unwrap_err();
        assert_eq!(error.line, 1);
    }
}
