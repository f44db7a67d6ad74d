//! `{field}` templates over a manifest entry: `{deviceId}`, `{certificateId}`, `{cn}` and every
//! supplier field; `{{` and `}}` stand for literal braces.

use std::fmt;

use thingpress_manifest::Accepted;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text copied as is (escapes already resolved).
    Literal(String),
    /// A placeholder, by field name.
    Field(String),
}

/// A parsed template such as `"{partNumber}-{deviceId}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template; the error names the byte offset and what is wrong.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, n) in chars.by_ref() {
                        match n {
                            '}' => {
                                closed = true;
                                break;
                            }
                            '{' => {
                                return Err(format!("'{{' inside the placeholder opened at {at}"));
                            }
                            other => name.push(other),
                        }
                    }
                    if !closed {
                        return Err(format!("placeholder opened at {at} is not closed"));
                    }
                    if name.trim().is_empty() {
                        return Err(format!("empty placeholder at {at}"));
                    }
                    if name.trim() != name {
                        return Err(format!(
                            "placeholder {{{name}}} at {at} has surrounding spaces"
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(name));
                }
                '}' => {
                    return Err(format!(
                        "unmatched '}}' at {at} (write '}}}}' for a literal brace)"
                    ));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    /// The template text as written in the profile.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholder names, in order of appearance.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The literal text between placeholders, concatenated.
    pub fn literal_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Literal(text) => Some(text.as_str()),
                Part::Field(_) => None,
            })
            .collect()
    }

    /// Whether the template has at least one placeholder.
    pub fn has_placeholders(&self) -> bool {
        self.fields().next().is_some()
    }

    /// Fills the placeholders from an entry; the error names the first field the entry lacks.
    pub fn render(&self, entry: &Accepted) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(name) => match lookup(entry, name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(format!(
                            "template {:?}: entry {} has no field {name:?}",
                            self.source, entry.index
                        ));
                    }
                },
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The built-in names win over supplier fields of the same name, so `{deviceId}` always means
/// the id Thingpress chose.
fn lookup<'a>(entry: &'a Accepted, name: &str) -> Option<&'a str> {
    match name {
        "deviceId" => Some(entry.device_id.as_str()),
        "certificateId" => Some(entry.certificate_id.as_str()),
        "cn" => entry.cn.as_deref(),
        other => entry.fields.get(other).map(String::as_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry() -> Accepted {
        Accepted {
            index: 7,
            certificate_id: "ab".repeat(32),
            certificate_pem: String::new(),
            chain: Vec::new(),
            device_id: "0123ee".into(),
            cn: Some("sn0123".into()),
            fields: BTreeMap::from([
                ("partNumber".to_owned(), "ATECC608C".to_owned()),
                ("deviceId".to_owned(), "shadowed".to_owned()),
            ]),
        }
    }

    #[test]
    fn renders_builtins_fields_and_escapes() {
        let t = Template::parse("{{x}}-{partNumber}_{deviceId}:{cn}/{certificateId}").unwrap();
        assert_eq!(
            t.render(&entry()).unwrap(),
            format!("{{x}}-ATECC608C_0123ee:sn0123/{}", "ab".repeat(32))
        );
        assert_eq!(
            t.fields().collect::<Vec<_>>(),
            ["partNumber", "deviceId", "cn", "certificateId"]
        );
        assert_eq!(t.literal_text(), "{x}-_:/");
    }

    #[test]
    fn plain_text_has_no_placeholders() {
        let t = Template::parse("fixed").unwrap();
        assert!(!t.has_placeholders());
        assert_eq!(t.render(&entry()).unwrap(), "fixed");
        assert_eq!(Template::parse("").unwrap().render(&entry()).unwrap(), "");
    }

    #[test]
    fn missing_field_names_the_field_and_entry() {
        let t = Template::parse("{model}").unwrap();
        let err = t.render(&entry()).unwrap_err();
        assert!(
            err.contains("\"model\"") && err.contains("entry 7"),
            "{err}"
        );
        let mut no_cn = entry();
        no_cn.cn = None;
        assert!(Template::parse("{cn}").unwrap().render(&no_cn).is_err());
    }

    #[test]
    fn syntax_errors_say_where() {
        for (bad, why) in [
            ("{deviceId", "not closed"),
            ("a}b", "unmatched"),
            ("{}", "empty"),
            ("{ x }", "spaces"),
            ("{a{b}}", "inside"),
        ] {
            let err = Template::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
