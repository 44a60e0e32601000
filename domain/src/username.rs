//! GST Portal usernames.

use crate::DomainError;

/// A portal username: 4 to 32 characters of letters, digits, `.`, `_` or `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Trims `input` and checks the username rules.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let s = input.trim();
        if !(4..=32).contains(&s.len()) {
            return Err(DomainError::InvalidUsername("a username has 4 to 32 characters"));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(DomainError::InvalidUsername("a username starts with a letter"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(DomainError::InvalidUsername(
                "a username has only letters, digits, '.', '_' and '-'",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        assert_eq!(
            Username::parse(" asha.traders ").map(|u| u.as_str().to_owned()),
            Ok("asha.traders".into())
        );
        assert!(Username::parse("abc").is_err());
        assert!(Username::parse("1abc").is_err());
        assert!(Username::parse("abc def").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
    }
}
