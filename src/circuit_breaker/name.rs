//! A breaker's name as its rejections carry it.
//!
//! A rejection names its breaker ([`CircuitOpen::breaker`](super::error::CircuitOpen::breaker)),
//! and a rejection is the path that should cost least, above all in an outage when every
//! thread is rejecting at once. A name of up to [`INLINE`] bytes is copied into the rejection
//! (no allocation, no atomic, nothing shared between threads); a longer one is shared through
//! an `Arc`. Either way the text is freed with the last breaker and rejection holding it, so a
//! service that makes breakers with names chosen at run time (per tenant, per host) does not
//! grow without bound.

use std::fmt;
use std::sync::Arc;

/// Longest name held inline: the enum stays as small as an `Arc<str>` plus a tag.
const INLINE: usize = 22;

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Name {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl Name {
    pub(crate) fn new(name: &str) -> Name {
        if name.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Name::Inline {
                len: name.len() as u8,
                bytes,
            }
        } else {
            Name::Shared(Arc::from(name))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `&str`, so always UTF-8; "" is unreachable, not a panic.
            Name::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Name::Shared(name) => name,
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_read_back_whole() {
        for name in [
            "",
            "payments",
            "exactly-twenty-two-by!",
            "http/api.payments.example.com:443",
            "zählwerk-überlauf-prüfung",
        ] {
            assert_eq!(Name::new(name).as_str(), name);
        }
        assert!(matches!(
            Name::new("exactly-twenty-two-by!"),
            Name::Inline { .. }
        ));
        assert!(matches!(
            Name::new("exactly-twenty-three-by"),
            Name::Shared(_)
        ));
        assert_eq!(
            std::mem::size_of::<Name>(),
            std::mem::size_of::<Arc<str>>() + 8
        );
    }
}
