//! warren's configuration. Layers merge key by key (a partial section keeps the defaults of every
//! key it does not name), the merged result is validated once, and every value remembers which
//! layer set it so `warren config show` can say where it came from.

mod bounds;
mod budget;
mod kubernetes;
mod layers;
mod model;
mod policy;

pub use bounds::{MAX_TIMEOUT_SECS, timeout_range};

pub use policy::{AllowEntry, AllowRule, ApprovalsConfig, EgressMode, PolicyConfig};

pub use budget::{BudgetConfig, Price};

pub use kubernetes::{KubernetesConfig, TolerationConfig};
pub use layers::{ConfigError, LoadOptions, Loaded, Source, load};
pub use model::{
    Config, LimitsConfig, ModelProviderConfig, ModelRef, OpencodeConfig, PoolConfig, RetryConfig,
    RoleConfig, SandboxConfig, StructurerConfig, SyncConfig, TimeoutsConfig,
};
