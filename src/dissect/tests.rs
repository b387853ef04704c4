//! Unit tests for the dissection driver.
use super::*;
