//! GSTIN, PAN and state code: the identifiers of a GST registration.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A GST state code (`01`..=`38`, `96`, `97`, `99`): the first two digits of a GSTIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateCode(u8);

impl StateCode {
    /// Parses a two-digit state code.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let bytes = input.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(DomainError::InvalidStateCode);
        }
        let code = (bytes[0] - b'0') * 10 + (bytes[1] - b'0');
        match code {
            1..=38 | 96 | 97 | 99 => Ok(Self(code)),
            _ => Err(DomainError::InvalidStateCode),
        }
    }

    /// The numeric value.
    pub fn value(self) -> u8 {
        self.0
    }
}

impl fmt::Display for StateCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

/// A Permanent Account Number: five letters, four digits, one letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pan(String);

impl Pan {
    /// Parses a PAN (upper-case, exactly ten characters).
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let b = input.as_bytes();
        if b.len() != 10 {
            return Err(DomainError::InvalidPan("a PAN has 10 characters"));
        }
        let shape = b[..5].iter().all(u8::is_ascii_uppercase)
            && b[5..9].iter().all(u8::is_ascii_digit)
            && b[9].is_ascii_uppercase();
        if !shape {
            return Err(DomainError::InvalidPan(
                "a PAN is 5 letters, 4 digits and a letter",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// The holder type letter (P person, C company, F firm, ...).
    pub fn holder_type(&self) -> char {
        char::from(self.0.as_bytes()[3])
    }

    /// The PAN as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A regular GSTIN: state code, PAN, entity code, `Z`, check character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Gstin(String);

impl Gstin {
    /// Trims and upper-cases `input`, then checks format and check character.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let s = input.trim().to_ascii_uppercase();
        let b = s.as_bytes();
        if b.len() != 15 {
            return Err(DomainError::InvalidGstin("a GSTIN has 15 characters"));
        }
        if !b.iter().all(|c| ALPHABET.contains(c)) {
            return Err(DomainError::InvalidGstin("a GSTIN has only digits and letters"));
        }
        StateCode::parse(&s[..2]).map_err(|_| DomainError::InvalidGstin("unknown state code"))?;
        Pan::parse(&s[2..12]).map_err(|_| DomainError::InvalidGstin("characters 3 to 12 are not a PAN"))?;
        if !matches!(b[12], b'1'..=b'9' | b'A'..=b'Z') {
            return Err(DomainError::InvalidGstin("the entity code is 1-9 or A-Z"));
        }
        if b[13] != b'Z' {
            return Err(DomainError::InvalidGstin(
                "only regular registrations (14th character Z) are accepted",
            ));
        }
        if b[14] != check_character(&b[..14]) {
            return Err(DomainError::InvalidGstin("the check character does not match"));
        }
        Ok(Self(s))
    }

    /// The GSTIN as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The state code (first two characters).
    pub fn state_code(&self) -> StateCode {
        StateCode((self.0.as_bytes()[0] - b'0') * 10 + (self.0.as_bytes()[1] - b'0'))
    }

    /// The embedded PAN.
    pub fn pan(&self) -> Pan {
        Pan(self.0[2..12].to_owned())
    }
}

/// The GSTN mod-36 check character over the first 14 characters.
pub fn check_character(first14: &[u8]) -> u8 {
    let total: u32 = first14
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let value = ALPHABET.iter().position(|a| a == c).unwrap_or(0) as u32;
            let product = value * if i % 2 == 0 { 1 } else { 2 };
            product / 36 + product % 36
        })
        .sum();
    ALPHABET[((36 - total % 36) % 36) as usize]
}

impl fmt::Display for Gstin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Gstin {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Gstin> for String {
    fn from(value: Gstin) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_good_gstins_parse() {
        for g in [
            "24AAUPV7468F1ZW",
            "27AAPFU0939F1ZV",
            "29AAGCB7383J1Z4",
            "07AAACR5055K1Z9",
            "33AABCT3518Q1Z3",
        ] {
            assert_eq!(Gstin::parse(g).map(|g| g.to_string()), Ok(g.to_owned()), "{g}");
        }
    }

    #[test]
    fn documentation_placeholders_fail_their_check_character() {
        for g in ["22AAAAA0000A1Z5", "27AABCU9603R1ZM"] {
            assert_eq!(
                Gstin::parse(g),
                Err(DomainError::InvalidGstin("the check character does not match")),
                "{g}"
            );
        }
    }

    #[test]
    fn input_is_trimmed_and_upper_cased() {
        assert_eq!(
            Gstin::parse("  24aaupv7468f1zw ").map(String::from),
            Ok("24AAUPV7468F1ZW".to_owned())
        );
    }

    #[test]
    fn malformed_gstins_are_refused() {
        for g in [
            "",
            "24AAUPV7468F1Z",
            "24AAUPV7468F1ZWW",
            "00AAUPV7468F1ZW",
            "2AAAUPV7468F1ZW",
            "24AAUPV7468F1YW",
        ] {
            assert!(Gstin::parse(g).is_err(), "{g}");
        }
        assert!(Gstin::parse("24AAUPV7468F1Z-").is_err());
    }

    #[test]
    fn parts_are_exposed() {
        let g = Gstin::parse("27AAPFU0939F1ZV").unwrap();
        assert_eq!(g.state_code().to_string(), "27");
        assert_eq!(g.pan().as_str(), "AAPFU0939F");
        assert_eq!(g.pan().holder_type(), 'F');
    }

    #[test]
    fn pan_and_state_code_rules() {
        assert!(Pan::parse("AAPFU0939F").is_ok());
        assert!(Pan::parse("AAPF00939F").is_err());
        assert!(Pan::parse("AAPFU0939").is_err());
        assert!(StateCode::parse("38").is_ok());
        assert!(StateCode::parse("39").is_err());
        assert!(StateCode::parse("99").is_ok());
    }

    fn well_formed_first14() -> impl Strategy<Value = String> {
        (
            prop_oneof![1u8..=38, Just(97u8), Just(99u8)],
            "[A-Z]{5}",
            0u16..=9999,
            "[A-Z]",
            "[1-9A-Z]",
        )
            .prop_map(|(state, letters, digits, last, entity)| {
                format!("{state:02}{letters}{digits:04}{last}{entity}Z")
            })
    }

    proptest! {
        #[test]
        fn every_well_formed_gstin_with_its_check_character_parses(first14 in well_formed_first14()) {
            let gstin = format!("{first14}{}", char::from(check_character(first14.as_bytes())));
            prop_assert_eq!(Gstin::parse(&gstin).map(String::from), Ok(gstin));
        }

        #[test]
        fn changing_any_one_character_is_rejected(
            first14 in well_formed_first14(),
            position in 0usize..15,
            replacement in proptest::sample::select(ALPHABET.to_vec()),
        ) {
            let mut bytes = format!("{first14}{}", char::from(check_character(first14.as_bytes()))).into_bytes();
            prop_assume!(bytes[position] != replacement);
            bytes[position] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(Gstin::parse(&changed).is_err(), "{} was accepted", changed);
        }
    }
}
