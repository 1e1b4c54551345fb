//! Library enums that a user chooses by name (`--materials-as tree`). The
//! library knows the names; `cli/` turns them into flags, so no clap type
//! leaks into the library.

/// An enum with a fixed name per variant.
pub trait Choice: Sized + Copy + PartialEq + Send + Sync + 'static {
    /// Every variant, in the order the names are listed.
    const ALL: &'static [(Self, &'static str)];

    fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("", |(_, n)| n)
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(_, n)| *n).collect()
    }
}

/// `choice!(Type { Variant = "name", ... })` implements [`Choice`].
#[macro_export]
macro_rules! choice {
    ($t:ty { $($v:ident = $n:literal),+ $(,)? }) => {
        impl $crate::choice::Choice for $t {
            const ALL: &'static [(Self, &'static str)] = &[$((<$t>::$v, $n)),+];
        }
    };
}
