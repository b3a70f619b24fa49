//! Remote state backends: journals in S3, the service lock as a DynamoDB lease.

pub mod aws;
