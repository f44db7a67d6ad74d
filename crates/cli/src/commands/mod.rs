//! One module per subcommand.

pub mod activate;
pub mod decommission;
pub mod device_list;
pub mod import;
pub mod inspect;
pub mod plan;
pub mod profile;
pub mod redrive;
pub mod registry;
pub mod report;
pub mod retry_failed;
pub mod smoke;
pub mod watch;
