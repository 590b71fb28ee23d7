"""Data in and out: bulk loading with COPY, the synthetic generator and the importers."""

from twotower.data.load import Frames, copy_frame, load_frames

__all__ = ["Frames", "copy_frame", "load_frames"]
