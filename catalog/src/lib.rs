//! The contract between the operator and the data plane, in one place.
//!
//! The operator writes each region's catalog; the data plane reads and follows it. Both
//! depend on this crate and on nothing of each other, so everything they must agree on
//! lives here: the migrations (the schema), the catalog row and its enums with explicit
//! string forms, the NOTIFY channel, the per-transaction tenant setting and the row-level
//! security predicate built on it.

pub mod connect;
/// An enum whose values are stored as strings: `ALL`, `as_str`, `FromStr`, `Display`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $column:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The form stored in the catalog: a contract, never a `Debug` output.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownValue;

            fn from_str(s: &str) -> Result<Self, $crate::UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::UnknownValue { column: $column, value: other.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod migrations;
pub mod readers;
pub mod rls;
pub mod schemas;
pub mod sso;
pub mod tenants;

pub use migrations::{MIGRATIONS, Migration, latest_version};
pub use readers::ReaderRow;
pub use rls::{POLICY_NAME, TENANT_SETTING, TENANT_TABLES, tenant_predicate};
pub use sso::SsoRow;
pub use tenants::{Isolation, RowError, TenantRecord, TenantRow, TenantState, UnknownValue};

/// The channel `catalog.tenants`' trigger notifies on every change (payload: the tenant
/// name). The data plane LISTENs on it where the server allows (not on a hot standby).
pub const NOTIFY_CHANNEL: &str = "catalog_tenants";
