//! warren's configuration. Layers merge key by key (a partial section keeps the defaults of every
//! key it does not name), the merged result is validated once, and every value remembers which
//! layer set it so `warren config show` can say where it came from.

mod bounds;
mod layers;
mod model;

pub use bounds::{MAX_TIMEOUT_SECS, timeout_range};

pub use layers::{ConfigError, LoadOptions, Loaded, Source, load};
pub use model::{
    AllowEntry, AllowRule, Config, EgressMode, LimitsConfig, ModelProviderConfig, ModelRef,
    OpencodeConfig, PolicyConfig, PoolConfig, RetryConfig, RoleConfig, SandboxConfig,
    StructurerConfig, SyncConfig, TimeoutsConfig,
};
