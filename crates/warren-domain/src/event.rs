//! placeholder until the event model lands
