//! AWS IoT name and value syntax, checked locally so a bad name is reported before any API call.

/// Thing, thing type and thing group names: `[a-zA-Z0-9:_-]{1,128}`.
pub fn is_thing_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')
}

/// Policy names: `[\w+=,.@-]{1,128}`.
pub fn is_policy_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

/// Attribute names: `[a-zA-Z0-9_.,@/:#-]{1,128}`.
pub fn is_attribute_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ',' | '@' | '/' | ':' | '#' | '-')
}

/// Attribute values: `[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}`.
pub fn is_attribute_value_char(c: char) -> bool {
    is_attribute_name_char(c) || matches!(c, '=' | '[' | ']')
}

/// Profile names become S3 key segments (`profiles/<name>.json`, `incoming/<name>/`).
pub fn is_profile_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Checks `value` against a character class and a length range; the error says which rule broke.
pub fn check(value: &str, min: usize, max: usize, allowed: fn(char) -> bool) -> Result<(), String> {
    // All allowed characters are ASCII, so chars and bytes agree once the class check passes.
    if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
        return Err(format!("character {bad:?} is not allowed"));
    }
    let len = value.len();
    if len < min {
        return Err(format!("must be at least {min} characters"));
    }
    if len > max {
        return Err(format!("is {len} characters, at most {max} allowed"));
    }
    Ok(())
}

/// `[a-zA-Z0-9:_-]{1,128}`.
pub fn check_thing_name(value: &str) -> Result<(), String> {
    check(value, 1, 128, is_thing_name_char)
}

/// `[\w+=,.@-]{1,128}`.
pub fn check_policy_name(value: &str) -> Result<(), String> {
    check(value, 1, 128, is_policy_name_char)
}

/// `[a-zA-Z0-9_.,@/:#-]{1,128}`.
pub fn check_attribute_name(value: &str) -> Result<(), String> {
    check(value, 1, 128, is_attribute_name_char)
}

/// `[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}`.
pub fn check_attribute_value(value: &str) -> Result<(), String> {
    check(value, 0, 800, is_attribute_value_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_names() {
        assert!(check_thing_name("Dev:01_a-B").is_ok());
        assert!(check_thing_name(&"a".repeat(128)).is_ok());
        assert!(
            check_thing_name(&"a".repeat(129))
                .unwrap_err()
                .contains("129")
        );
        assert!(check_thing_name("").is_err());
        assert!(check_thing_name("a b").unwrap_err().contains("' '"));
        assert!(check_thing_name("a.b").is_err());
        assert!(check_thing_name("é").is_err());
    }

    #[test]
    fn policy_attribute_names_and_values() {
        assert!(check_policy_name("a+b=c,d.e@f-g_h").is_ok());
        assert!(check_policy_name("a/b").is_err());
        assert!(check_attribute_name("a/b:c#d,e@f.g-h_i").is_ok());
        assert!(check_attribute_name("a=b").is_err());
        assert!(check_attribute_value("").is_ok());
        assert!(check_attribute_value("x=[1]").is_ok());
        assert!(check_attribute_value("a b").is_err());
        assert!(check_attribute_value(&"v".repeat(801)).is_err());
    }
}
