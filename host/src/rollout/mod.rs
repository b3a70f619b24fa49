//! Carrying out a strategy's steps: the safety rules every step must pass, and how steps
//! read to a person.

pub mod describe;
pub mod driver;
pub mod engine;
pub mod events;
pub mod gates;
pub mod safety;
pub mod sim;
