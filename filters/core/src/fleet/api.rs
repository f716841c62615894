//! `portcullis.fleet.v1.Fleet`: concurrency leases, single-use approval
//! spends and quarantine entries, with the field numbers of
//! crates/fleet/proto/portcullis/fleet/v1/fleet.proto.

pub const SERVICE: &str = "portcullis.fleet.v1.Fleet";
pub const ACQUIRE_LEASE: &str = "AcquireLease";
pub const RELEASE_LEASE: &str = "ReleaseLease";
pub const SPEND: &str = "Spend";
pub const ADD_QUARANTINE: &str = "AddQuarantine";
pub const LIST_QUARANTINE: &str = "ListQuarantine";

/// Take one of `limit` slots under `key` until released or `ttl_ms` passes
/// (the expiry frees the slots of a proxy that died mid-call).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AcquireLeaseRequest {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(uint32, tag = "2")]
    pub limit: u32,
    #[prost(uint64, tag = "3")]
    pub ttl_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AcquireLeaseResponse {
    #[prost(bool, tag = "1")]
    pub granted: bool,
    /// Set when granted: what ReleaseLease names.
    #[prost(string, tag = "2")]
    pub lease_id: String,
    /// Live leases under the key after this request.
    #[prost(uint32, tag = "3")]
    pub active: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReleaseLeaseRequest {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub lease_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReleaseLeaseResponse {
    /// False when the lease had already expired or been released.
    #[prost(bool, tag = "1")]
    pub released: bool,
}

/// Spend a single-use approval (its token's id) fleet-wide; the record is
/// kept for `ttl_ms`, at least the token's own lifetime.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpendRequest {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(uint64, tag = "2")]
    pub ttl_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SpendResponse {
    /// True for the one spend that counts; every later one is false.
    #[prost(bool, tag = "1")]
    pub first: bool,
}

/// A tool whose definition no longer matches its pin, refused fleet-wide.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QuarantineEntry {
    #[prost(string, tag = "1")]
    pub server: String,
    #[prost(string, tag = "2")]
    pub tool: String,
    /// The pinned digest the tool was expected to have.
    #[prost(string, tag = "3")]
    pub pin: String,
    /// The digest that was seen instead.
    #[prost(string, tag = "4")]
    pub seen: String,
    #[prost(string, tag = "5")]
    pub reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AddQuarantineRequest {
    #[prost(message, optional, tag = "1")]
    pub entry: Option<QuarantineEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AddQuarantineResponse {
    /// False when the same server and tool were already quarantined.
    #[prost(bool, tag = "1")]
    pub added: bool,
    #[prost(uint64, tag = "2")]
    pub version: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListQuarantineRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListQuarantineResponse {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<QuarantineEntry>,
    /// Bumped on every change: a proxy that has this version has it all.
    #[prost(uint64, tag = "2")]
    pub version: u64,
}
