//! Headless Chromium opens the page and plays the stream.
