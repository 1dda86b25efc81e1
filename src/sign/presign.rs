//! Presigned GET URLs, SigV4 and SigV2, and plain object URLs.
