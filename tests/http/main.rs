//! HTTP: the preset on paused time, the reqwest client against real local servers, and errors
//! turned into responses on axum routes.

mod deadline;
mod error_response;
mod http_client;
mod reqwest_client;
