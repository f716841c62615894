//! Envoy RLS v3 messages, the fields Portcullis reads and writes, with the
//! field numbers of `envoy/service/ratelimit/v3/rls.proto` and
//! `envoy/extensions/common/ratelimit/v3/ratelimit.proto`. Hand-derived with
//! prost so the filter (wasm) needs no codegen and no envoy-types.

/// The gRPC service and method, as `proxy_grpc_call` takes them.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Units to add per descriptor; 0 means 1 (rls.proto).
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// The limit, from the bundle: the fleet service has no limits of its
    /// own (RLS's `RateLimitOverride`).
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// Per-descriptor hits (a `google.protobuf.UInt64Value`).
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `envoy.type.v3.RateLimitUnit` (= `RateLimitResponse.RateLimit.Unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

impl Unit {
    /// The window length in seconds (a month is 30 days, a year 365, as
    /// envoyproxy/ratelimit counts them).
    pub fn seconds(self) -> Option<u64> {
        Some(match self {
            Unit::Unknown => return None,
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Week => 7 * 86_400,
            Unit::Month => 30 * 86_400,
            Unit::Year => 365 * 86_400,
        })
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

/// One limit or budget as the filter asks for it: a descriptor with the
/// bundle's limit and this call's cost.
pub fn request(
    domain: &str,
    entries: &[(&str, &str)],
    limit: u32,
    unit: Unit,
    cost: u32,
) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors: vec![RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).to_string(),
                    value: (*v).to_string(),
                })
                .collect(),
            limit: Some(RateLimitOverride {
                requests_per_unit: limit,
                unit: unit as i32,
            }),
            hits_addend: None,
        }],
        hits_addend: cost,
    }
}

/// What an answer means for the call. Anything but a well-formed OK or
/// OVER_LIMIT is `Invalid`, which the engine refuses (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow { remaining: Option<u32> },
    OverLimit { reset_seconds: Option<u64> },
    Invalid(String),
}

pub fn verdict(answer: &[u8]) -> Verdict {
    use prost::Message as _;
    let r = match RateLimitResponse::decode(answer) {
        Ok(r) => r,
        Err(e) => return Verdict::Invalid(format!("undecodable RLS answer: {e}")),
    };
    let first = r.statuses.first();
    match Code::try_from(r.overall_code) {
        Ok(Code::Ok) => Verdict::Allow {
            remaining: first.map(|s| s.limit_remaining),
        },
        Ok(Code::OverLimit) => Verdict::OverLimit {
            reset_seconds: first
                .and_then(|s| s.duration_until_reset)
                .and_then(|d| u64::try_from(d.seconds).ok()),
        },
        _ => Verdict::Invalid(format!("RLS answer code {}", r.overall_code)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use prost::Message as _;

    #[test]
    fn request_carries_the_bundle_limit_and_the_cost() {
        let r = request("portcullis", &[("tool", "search")], 25, Unit::Minute, 3);
        let back = RateLimitRequest::decode(r.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.hits_addend, 3);
        let d = &back.descriptors[0];
        assert_eq!(d.entries[0].value, "search");
        assert_eq!(d.limit.as_ref().unwrap().requests_per_unit, 25);
        assert_eq!(d.limit.as_ref().unwrap().unit, Unit::Minute as i32);
    }

    #[test]
    fn answers_map_to_verdicts_and_garbage_is_invalid() {
        let ok = RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: vec![DescriptorStatus {
                code: Code::Ok as i32,
                limit_remaining: 4,
                ..Default::default()
            }],
        };
        assert_eq!(
            verdict(&ok.encode_to_vec()),
            Verdict::Allow { remaining: Some(4) }
        );
        let over = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![DescriptorStatus {
                code: Code::OverLimit as i32,
                duration_until_reset: Some(Duration {
                    seconds: 17,
                    nanos: 0,
                }),
                ..Default::default()
            }],
        };
        assert_eq!(
            verdict(&over.encode_to_vec()),
            Verdict::OverLimit {
                reset_seconds: Some(17)
            }
        );
        assert!(matches!(verdict(&[]), Verdict::Invalid(_)), "UNKNOWN code");
        assert!(matches!(verdict(&[0xff, 0xff]), Verdict::Invalid(_)));
    }
}
