//! The request/response wire protocol: frames, API keys and versions,
//! request and response bodies, stable error codes.
