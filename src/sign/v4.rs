//! AWS Signature Version 4 for ordinary (header-authenticated) requests.
