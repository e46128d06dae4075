//! kappalog's fuzz targets ([`targets`]) and the generator of their seed corpus ([`seeds`]).
#![forbid(unsafe_code)]

pub mod seeds;
pub mod targets;
