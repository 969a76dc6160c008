//! Placeholder; owned by routing-b, who replaces this file.
