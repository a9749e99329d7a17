//! Python docstrings as readable Markdown for `@moduledoc`/`@doc`.
//!
//! Docstrings are written for Python tools: Google style (`Args:` with an indented body),
//! NumPy style (`Parameters` underlined with dashes), reST literals (``` ``x`` ```),
//! Sphinx roles (``:class:`x` ``), mkdocstrings cross-references, `>>>` examples. In
//! Markdown an indented body is a code block, so the body would show as code. This turns
//! sections into `###` headings with unindented bodies, parameter entries into lists, and
//! `>>>` examples into fenced Python blocks. Fenced code is left as it is.

/// Section names (Google style with a colon, NumPy style underlined), and whether their
/// entries are `name (type): description`, shown as a list.
const SECTIONS: &[(&str, bool)] = &[
    ("Args", true),
    ("Arguments", true),
    ("Parameters", true),
    ("Params", true),
    ("Keyword Args", true),
    ("Keyword Arguments", true),
    ("Other Parameters", true),
    ("Attributes", true),
    ("Raises", true),
    ("Exceptions", true),
    ("Warns", true),
    ("Returns", false),
    ("Return", false),
    ("Yields", false),
    ("Yield", false),
    ("Example", false),
    ("Examples", false),
    ("Note", false),
    ("Notes", false),
    ("See Also", false),
    ("Warning", false),
    ("Warnings", false),
    ("References", false),
    ("Todo", false),
    ("Methods", false),
];

/// The docstring `doc` as Markdown.
pub fn to_markdown(doc: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut section: Option<&str> = None;
    let mut dedent: Option<usize> = None;
    // NumPy sections are not indented: only the next heading ends them.
    let mut numpy_style = false;
    let mut fence = false;
    let mut doctest = false;
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        let indent = indentation(raw);
        let blank = raw.trim().is_empty();

        if fence {
            out.push(strip(raw, dedent.unwrap_or(0)).to_owned());
            if raw.trim_start().starts_with("```") {
                fence = false;
            }
            continue;
        }
        // A doctest runs to the next blank line.
        if doctest && blank {
            out.push("```".into());
            doctest = false;
        }
        if blank {
            out.push(String::new());
            continue;
        }
        // A heading: `Args:` (Google) or `Parameters` over a line of dashes (NumPy).
        if indent == 0 {
            let google = raw.trim_end().strip_suffix(':').map(str::trim);
            let numpy = lines
                .get(i)
                .filter(|next| is_underline(next))
                .map(|_| raw.trim());
            if let Some(name) = google.or(numpy).and_then(known_section) {
                if numpy.is_some() {
                    i += 1;
                }
                push_break(&mut out);
                out.push(format!("### {name}"));
                out.push(String::new());
                section = Some(name);
                dedent = if numpy.is_some() { Some(0) } else { None };
                numpy_style = numpy.is_some();
                continue;
            }
            // Unindented text ends a (Google) section.
            if !numpy_style {
                section = None;
                dedent = None;
            }
        }
        let base = if section.is_some() {
            *dedent.get_or_insert(indent)
        } else {
            0
        };
        let line = strip(raw, base);
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            fence = true;
            out.push(line.to_owned());
            continue;
        }
        if trimmed.starts_with(">>>") {
            if !doctest {
                push_break(&mut out);
                out.push("```python".into());
                doctest = true;
            }
            out.push(trimmed.to_owned());
            continue;
        }
        if doctest {
            out.push(trimmed.to_owned());
            continue;
        }
        let is_list = section.is_some_and(is_list_section);
        if is_list && indentation(line) == 0 {
            out.push(list_entry(trimmed));
            continue;
        }
        if is_list
            && matches!(out.last(), Some(last) if last.starts_with("* ") || last.starts_with("  "))
        {
            // A continuation of the entry above.
            out.push(format!("  {}", inline(trimmed)));
            continue;
        }
        out.push(inline(line));
    }
    if fence || doctest {
        out.push("```".into());
    }
    collapse(out)
}

fn known_section(name: &str) -> Option<&'static str> {
    SECTIONS
        .iter()
        .map(|(s, _)| *s)
        .find(|s| s.eq_ignore_ascii_case(name))
}

fn is_list_section(name: &str) -> bool {
    SECTIONS.iter().any(|(s, list)| *list && *s == name)
}

fn is_underline(line: &str) -> bool {
    let t = line.trim();
    t.len() >= 3 && t.chars().all(|c| c == '-' || c == '=')
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `line` without up to `n` bytes of leading whitespace, never cutting into a character
/// (Unicode spaces such as U+2003 take several bytes).
fn strip(line: &str, n: usize) -> &str {
    let mut cut = indentation(line).min(n);
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    &line[cut..]
}

/// `name (type): description` -> `* `name` (type) - description`; NumPy's `name : type`
/// (its description on the next, indented lines) -> `* `name` (type)`.
fn list_entry(entry: &str) -> String {
    let (head, description) = match split_colon(entry) {
        Some((head, rest)) => (head.trim(), rest.trim()),
        None => return format!("* {}", inline(entry)),
    };
    let (name, kind) = match head.find('(') {
        Some(open) if head.ends_with(')') => {
            (head[..open].trim(), Some(&head[open + 1..head.len() - 1]))
        }
        _ => (head, None),
    };
    let looks_like_name = !name.is_empty()
        && name
            .trim_start_matches('*')
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == ',' || c == ' ')
        && name.split_whitespace().count() <= 2;
    if !looks_like_name {
        return format!("* {}", inline(entry));
    }
    let mut item = format!("* `{name}`");
    match (kind, head.contains('(')) {
        (Some(kind), _) => item.push_str(&format!(" ({})", kind.trim())),
        // NumPy: `name : type`, the type after the colon.
        (None, false) if entry.contains(" : ") => {
            return format!("* `{name}` ({})", inline(description));
        }
        _ => {}
    }
    if !description.is_empty() {
        item.push_str(" - ");
        item.push_str(&inline(description));
    }
    item
}

/// Splits at the first `:` that is not inside parentheses or backticks.
fn split_colon(entry: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut code = false;
    for (at, c) in entry.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            '`' => code = !code,
            ':' if depth == 0 && !code => return Some((&entry[..at], &entry[at + 1..])),
            _ => {}
        }
    }
    None
}

/// Inline markup: ``` ``x`` ``` and Sphinx roles (``:class:`x` ``) become `` `x` ``,
/// mkdocstrings references (`` [`x`][y] ``) become `` `x` ``.
fn inline(text: &str) -> String {
    let mut s = text.replace("``", "`");
    // :role:`x` and :py:role:`x`
    while let Some(start) = find_role(&s) {
        let Some(tick) = s[start..].find('`') else {
            break;
        };
        s.replace_range(start..start + tick, "");
    }
    // [`x`][y] -> `x`
    while let Some(start) = s.find("[`") {
        let Some(close) = s[start..].find("`][") else {
            break;
        };
        let Some(end) = s[start + close + 3..].find(']') else {
            break;
        };
        let code = s[start + 1..start + close + 1].to_owned();
        s.replace_range(start..start + close + 3 + end + 1, &code);
    }
    s
}

/// Where a Sphinx role (`:name:` directly before a backtick) starts.
fn find_role(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    for (at, _) in s.match_indices(":`") {
        // Walk back over the role name(s) (`py:class`).
        let mut start = at;
        while start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b':'
                || bytes[start - 1] == b'_')
        {
            start -= 1;
        }
        if start < at
            && bytes[start] == b':'
            && (start == 0 || !bytes[start - 1].is_ascii_alphanumeric())
        {
            return Some(start);
        }
    }
    None
}

/// A blank line before a block unless there is one.
fn push_break(out: &mut Vec<String>) {
    if matches!(out.last(), Some(last) if !last.is_empty()) {
        out.push(String::new());
    }
}

/// At most one blank line in a row; none at the ends.
fn collapse(lines: Vec<String>) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let line = line.trim_end().to_owned();
        if line.is_empty() && out.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        out.push(line);
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_sections_become_headings_and_lists() {
        let doc = "Adds things.\n\nArgs:\n    a (int): The first.\n    b: The second,\n        on two lines.\n\nReturns:\n    The sum.\n";
        assert_eq!(
            to_markdown(doc),
            "Adds things.\n\n### Args\n\n* `a` (int) - The first.\n* `b` - The second,\n  on two lines.\n\n### Returns\n\nThe sum."
        );
    }

    #[test]
    fn numpy_sections_are_recognised() {
        let doc = "Summary.\n\nParameters\n----------\nx : int\n    The value.\n\nReturns\n-------\nint\n";
        assert_eq!(
            to_markdown(doc),
            "Summary.\n\n### Parameters\n\n* `x` (int)\n  The value.\n\n### Returns\n\nint"
        );
    }

    #[test]
    fn doctests_become_python_blocks_and_fences_are_kept() {
        let doc = "Example:\n    >>> f(1)\n    2\n    >>> g(\n    ...   3)\n\nAfter.\n\n```python\n    indented = True  # ``kept``\n```";
        assert_eq!(
            to_markdown(doc),
            "### Example\n\n```python\n>>> f(1)\n2\n>>> g(\n...   3)\n```\n\nAfter.\n\n```python\n    indented = True  # ``kept``\n```"
        );
    }

    #[test]
    fn inline_markup_becomes_code() {
        assert_eq!(
            inline("Use ``x`` or :class:`dspy.LM` and [`dspy.LM`][dspy.LM]."),
            "Use `x` or `dspy.LM` and `dspy.LM`."
        );
        assert_eq!(inline("time: 10:30 and a:b"), "time: 10:30 and a:b");
    }

    #[test]
    fn plain_text_is_unchanged() {
        let doc = "One line.\n\nA paragraph\nover two lines.";
        assert_eq!(to_markdown(doc), doc);
    }
}
