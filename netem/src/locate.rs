//! Where in a TOML document an error is: the file and, for a field error,
//! the line of that dotted field.

use crate::error::ConfigError;

/// Adds the file name and, for a field error, the line of that field (any
/// TOML document whose validation errors use dotted field paths can use it).
pub fn locate(origin: &str, text: &str, e: ConfigError) -> ConfigError {
    let line = match &e {
        ConfigError::Invalid { field, .. } => line_of_field(text, field),
        _ => None,
    };
    match line {
        Some(line) => ConfigError::Located {
            origin: origin.to_string(),
            line,
            error: Box::new(e),
        },
        None => e.in_file(origin),
    }
}

/// The 1-based line of a dotted field path such as `timeline[1].rate`, or of
/// its nearest enclosing table that exists in the text.
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table = Some(root.get_ref());
    for segment in field.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some(t) = table else { break };
        let Some(v) = t.get(key) else { break };
        span = Some(v.span());
        let mut value = v;
        if let Some(i) = index {
            match v.get_ref().get(i) {
                Some(item) => {
                    span = Some(item.span());
                    value = item;
                }
                None => break,
            }
        }
        table = value.get_ref().as_table();
    }
    let start = span?.start;
    Some(text[..start.min(text.len())].matches('\n').count() + 1)
}
