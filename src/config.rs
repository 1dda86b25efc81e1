//! Profiles: raw TOML, environment and `~/.aws` input, validated into typed structs.

use std::time::Duration;

use crate::sign::{Addressing, Credentials, Endpoint, SignatureVersion};

/// A validated profile: everything needed to talk to one S3 service.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Profile name, for messages.
    pub name: String,
    /// Where requests go.
    pub endpoint: Endpoint,
    /// Signing region.
    pub region: String,
    /// Credentials (Debug redacts the secret).
    pub credentials: Credentials,
    /// Path or virtual-hosted style.
    pub addressing: Addressing,
    /// Signature version for presigned URLs (requests always use SigV4).
    pub signature: SignatureVersion,
    /// Public host for links, when it differs from `endpoint`.
    pub presign_endpoint: Option<Endpoint>,
    /// Default link lifetime.
    pub presign_expires: Duration,
}
