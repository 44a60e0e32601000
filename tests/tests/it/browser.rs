//! The taxpayer page in a real headless Chromium.
