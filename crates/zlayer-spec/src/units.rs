//! Durations (`30s`, `5m`, `1h30m`) and sizes (`512Mi`, `2G`) as spec values.

use std::fmt;

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A duration written like `30s`, `5m` or `1h30m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() || !t.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return Err(format!(
                "invalid duration `{s}`: write it like 30s, 5m or 1h30m"
            ));
        }
        humantime::parse_duration(t)
            .map(Duration)
            .map_err(|_| format!("invalid duration `{s}`: write it like 30s, 5m or 1h30m"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_duration(self.0)
                .to_string()
                .replace(' ', "")
        )
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(ns|us|ms|s|m|h|d)([0-9]+(ns|us|ms|s|m|h|d))*$",
            "description": "a duration such as 30s, 5m or 1h30m"
        })
    }
}

/// A size in bytes, written with binary (`Ki`, `Mi`, `Gi`, `Ti`) or decimal
/// (`K`, `M`, `G`, `T`) suffixes, or as a plain byte count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

const SIZE_SUFFIXES: &[(&str, u64)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

impl Size {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid size `{s}`: write it like 512Mi, 2Gi or 500M");
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = if suffix.is_empty() {
            1
        } else {
            SIZE_SUFFIXES
                .iter()
                .find(|(sfx, _)| *sfx == suffix)
                .map(|(_, m)| *m)
                .ok_or_else(bad)?
        };
        n.checked_mul(mult).map(Size).ok_or_else(bad)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (sfx, m) in SIZE_SUFFIXES[..4].iter().rev() {
            if self.0 >= *m && self.0.is_multiple_of(*m) {
                return write!(f, "{}{}", self.0 / m, sfx);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Size::parse(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$",
            "description": "a size such as 512Mi, 2Gi or 500M"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("1h30m").unwrap().0.as_secs(), 5400);
        assert_eq!(Duration::parse("250ms").unwrap().0.as_millis(), 250);
        assert!(Duration::parse("5x").is_err());
        assert!(Duration::parse("-5s").is_err());
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("512Mi").unwrap().0, 512 << 20);
        assert_eq!(Size::parse("2G").unwrap().0, 2_000_000_000);
        assert_eq!(Size::parse("4096").unwrap().0, 4096);
        assert!(Size::parse("12Xi").is_err());
        assert!(Size::parse("Mi").is_err());
        assert_eq!(Size(10 << 30).to_string(), "10Gi");
    }
}
