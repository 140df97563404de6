//! The per-thread choice between this crate's own node for an operation and Burn's own
//! composition of it ([`crate::BatchNormImpl`], [`crate::DepthwiseImpl`],
//! [`crate::PointwiseImpl`]): a flag-spelled enum (`serde`, `FromStr`, [`name`]), a thread-local
//! cell, and its setter and getter. The model runs on the thread that calls its `forward`, so a
//! benchmark or a test selects an implementation for its own thread only.
//!
//! [`name`]: crate::BatchNormImpl::name

/// Declares an implementation choice: the enum (each variant with its flag spelling, which is
/// its lowercase name as `serde` writes it), `name()`, `FromStr` (an error naming the value and
/// the accepted ones), `Default`, and a thread-local cell with a setter and a getter.
macro_rules! implementation_choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $flag:literal ),+ $(,)?
        }
        default $default:ident;
        static $cell:ident;
        $(#[$smeta:meta])* pub fn $setter:ident;
        $(#[$gmeta:meta])* pub fn $getter:ident;
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl $name {
            /// The flag spelling.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $flag ),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                $( if s == $flag { return Ok($name::$variant); } )+
                Err(format!("unknown {} '{s}': expected {}", $what, [$($flag),+].join(" or ")))
            }
        }

        thread_local! {
            static $cell: std::cell::Cell<$name> = const { std::cell::Cell::new($name::$default) };
        }

        $(#[$smeta])*
        pub fn $setter(kind: $name) {
            $cell.with(|k| k.set(kind));
        }

        $(#[$gmeta])*
        pub fn $getter() -> $name {
            $cell.with(|k| k.get())
        }
    };
}

pub(crate) use implementation_choice;
