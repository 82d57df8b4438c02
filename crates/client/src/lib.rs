//! The typed client of the Stagecoach daemon's HTTP API, and the API's wire
//! types.
//!
//! - [`wire`]: the request bodies, the answers and the `/v1/events` payload
//!   ([`wire::EventEntry`]). The daemon serialises the same types, so the
//!   server and its clients cannot drift apart; it depends on this crate
//!   without the `http` feature, for these types only.
//! - [`sse`]: the one parser of server-sent events, and [`EntryDecoder`],
//!   which makes journal entries of a stream's bytes.
//! - [`Client`] (feature `http`, on by default): a blocking client with one
//!   method per route, typed answers, the event stream ([`EventStream`]),
//!   and one error type ([`Error`]) that keeps what a caller decides on: no
//!   answer, or the daemon's status and error body.
//!
//! The CLI, the benchmarks and the integration tests all talk to the daemon
//! through this crate.
//!
//! ```no_run
//! # fn main() -> Result<(), client::Error> {
//! let api = client::Client::new("http://127.0.0.1:7400", "TOKEN")?;
//! let record = api.submit(&client::wire::SubmitRequest {
//!     service: "web".into(),
//!     version: Some("1.2.0".into()),
//!     ..Default::default()
//! })?;
//! let mut events = api.events(&client::wire::EventsQuery {
//!     deployment: Some(record.id.to_string()),
//!     after: None,
//! })?;
//! while let Ok(Some(received)) = events.next_entry() {
//!     println!("{} facts", received.entry.body.facts().len());
//! }
//! # Ok(())
//! # }
//! ```

pub mod sse;
mod stream;
pub mod wire;

pub use stream::{EntryDecoder, Received, StreamError};

#[cfg(feature = "http")]
mod error;
#[cfg(feature = "http")]
mod http;

#[cfg(feature = "http")]
pub use error::{ApiError, Error};
#[cfg(feature = "http")]
pub use http::{base_url, chain, is_loopback, Builder, Client, EventStream, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
