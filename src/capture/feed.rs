//! [`EngineFeed`]: the capture sink that feeds a file's frames to an [`Engine`].
//!
//! Runs of frames go through [`Engine::ingest_run`] (which works ahead on later frames), single
//! frames through [`Engine::ingest`]; both count every frame exactly as `ingest` one by one
//! would. Guarantee: the caller's `between_batches` runs after every `batch` frames, counted
//! from the first frame, whatever runs the reader hands over, so what is drained and when is
//! the same as when frames come one at a time.

use super::file::{CaptureEvent, CaptureSink};
use crate::engine::Engine;
use crate::frame::RawFrame;

/// Feeds frames, interfaces and comments to an engine.
pub struct EngineFeed<'a> {
    engine: &'a mut Engine,
    batch: u64,
    frames: u64,
    between_batches: &'a mut dyn FnMut(&mut Engine, u64),
}

impl<'a> EngineFeed<'a> {
    /// `between_batches(engine, frames so far)` runs after every `batch` frames (at least 1).
    pub fn new(
        engine: &'a mut Engine,
        batch: u64,
        between_batches: &'a mut dyn FnMut(&mut Engine, u64),
    ) -> EngineFeed<'a> {
        EngineFeed {
            engine,
            batch: batch.max(1),
            frames: 0,
            between_batches,
        }
    }

    /// Frames fed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn counted(&mut self, frames: u64) {
        self.frames += frames;
        if self.frames.is_multiple_of(self.batch) {
            (self.between_batches)(self.engine, self.frames);
        }
    }
}

impl CaptureSink for EngineFeed<'_> {
    fn event(&mut self, event: CaptureEvent<'_>) {
        match event {
            CaptureEvent::Interface(info) => self.engine.add_interface(info),
            CaptureEvent::Frame(frame) => {
                self.engine.ingest(&frame);
                self.counted(1);
            }
            CaptureEvent::Comment(_) => {}
        }
    }

    fn frames(&mut self, mut frames: &[RawFrame<'_>]) {
        // Split at batch boundaries so `between_batches` sees the same frame counts.
        while !frames.is_empty() {
            let to_boundary = (self.batch - self.frames % self.batch) as usize;
            let (now, later) = frames.split_at(to_boundary.min(frames.len()));
            self.engine.ingest_run(now);
            self.counted(now.len() as u64);
            frames = later;
        }
    }
}
