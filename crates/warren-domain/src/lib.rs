//! warren's shared vocabulary: identifiers, the lifecycle state machine, the event stream and the
//! stable error contract. Every other crate speaks in these types; this crate does no I/O.

pub mod approval;
pub mod budget;
pub mod error;
pub mod event;
pub mod ids;
pub mod lifecycle;
pub mod outcome;

pub use approval::{ApprovalRequest, DecidedBy, Decision, pending_approval};
pub use budget::{BudgetKind, BudgetLimits, BudgetLine, BudgetScope, OwnerBudget, Spend};
pub use error::{ErrorInfo, ExitClass, ReasonCode, UserFacing, cause_chain};
pub use event::{
    AgentEvent, EgressDecision, EgressUsage, EventRecord, GatewayUsage, RequestSource, ToolStatus,
    Usage,
};
pub use ids::{InvalidName, SandboxId, SandboxName};
pub use lifecycle::{SandboxState, TransitionError};
pub use outcome::{Outcome, OutcomeKind};
