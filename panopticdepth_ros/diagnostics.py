"""What /diagnostics says about the per-frame path: the counters, the windows, and the one rule for its level.

The live node (through its worker) and `panopticdepth bag` both report from :class:`PipelineStats`, so their
/diagnostics agree: same values, same OK/WARN rule.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable

import numpy as np

#: Stages timed per frame (seconds in FrameResult.timings, milliseconds in the diagnostics).
STAGES: tuple[str, ...] = ("decode", "preprocess", "model", "postprocess", "track", "cloud", "messages")
#: diagnostic_msgs/DiagnosticStatus levels used here.
OK, WARN = 0, 1
#: Drop codes that are expected behaviour, not a problem: they do not turn the diagnostics to WARN.
EXPECTED_DROPS = frozenset({"busy"})


class PipelineStats:
    """Counters and windows behind /diagnostics: frames in, processed, dropped (by reason), latency, rate."""

    def __init__(self, window: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.frames_in = 0
        self.processed = 0
        self.dropped: Counter[str] = Counter()
        self.last_drop_reason = ""
        self.latencies: deque[float] = deque(maxlen=window)  # seconds, receive -> outputs serialized
        self.stamp_latencies: deque[float] = deque(maxlen=window)  # seconds, header stamp -> outputs ready
        self.done_times: deque[float] = deque(maxlen=window)
        self.stage_times: deque[dict[str, float]] = deque(maxlen=window)
        self.idle_frames = 0  # frames received while no output had a subscriber (not processed, not dropped)
        #: frames processed without usable intrinsics (code -> frames): the outputs that need them were left off
        self.partial: Counter[str] = Counter()
        self.last_partial_reason = ""
        self.depth_scale = ""  # where the last depth's metric scale came from (camera, or an assumption)
        self.tracking_resets = 0  # times the tracker started over (camera changed, time went back)
        self._reported_problems = 0
        self._reported_partial = 0

    def note_dropped(self, code: str, reason: str = "") -> None:
        """Count a dropped frame (the node's worker too: code "busy" when a newer frame replaced it)."""
        self.dropped[code] += 1
        if reason:
            self.last_drop_reason = reason

    def note_partial(self, code: str, reason: str = "") -> None:
        """Count a frame published without intrinsics (camera_info missing, unusable or not rectifiable)."""
        self.partial[code] += 1
        if reason:
            self.last_partial_reason = reason

    def note_processed(self, latency: float, timings: dict[str, float], stamp_latency: float | None) -> None:
        self.processed += 1
        self.latencies.append(latency)
        self.done_times.append(self.clock())
        self.stage_times.append(dict(timings))
        if stamp_latency is not None and math.isfinite(stamp_latency):
            self.stamp_latencies.append(stamp_latency)

    def rate(self) -> float:
        """Processed frames per second over the window (0 with fewer than two frames)."""
        if len(self.done_times) < 2:
            return 0.0
        span = self.done_times[-1] - self.done_times[0]
        return (len(self.done_times) - 1) / span if span > 0 else 0.0

    def values(self) -> dict[str, object]:
        """Key/value pairs for a DiagnosticStatus (times in milliseconds)."""
        values: dict[str, object] = {
            "frames in": self.frames_in,
            "frames processed": self.processed,
            "frames dropped": sum(self.dropped.values()),
        }
        for code, count in sorted(self.dropped.items()):
            values[f"dropped ({code})"] = count
        values["rate (Hz)"] = self.rate()
        latencies = np.asarray(self.latencies, dtype=np.float64) * 1e3
        values["latency mean (ms)"] = float(latencies.mean()) if latencies.size else math.nan
        values["latency max (ms)"] = float(latencies.max()) if latencies.size else math.nan
        if self.stamp_latencies:
            values["latency from stamp mean (ms)"] = float(np.mean(self.stamp_latencies) * 1e3)
        for stage in STAGES:
            samples = [t[stage] for t in self.stage_times if stage in t]
            values[f"{stage} mean (ms)"] = float(np.mean(samples) * 1e3) if samples else math.nan
        if self.last_drop_reason:
            values["last drop reason"] = self.last_drop_reason
        for code, count in sorted(self.partial.items()):
            values[f"without intrinsics ({code})"] = count
        if self.last_partial_reason:
            values["last intrinsics problem"] = self.last_partial_reason
        if self.depth_scale:
            values["depth scale"] = self.depth_scale
        values["frames idle (no subscribers)"] = self.idle_frames
        values["tracking restarts"] = self.tracking_resets
        return values

    def level_and_message(self) -> tuple[int, str]:
        """The diagnostics level (0 OK, 1 WARN) and message: the one rule for the node and `panopticdepth bag`.

        WARN when frames were skipped for a problem since the last report, or none got through because of one, or
        frames went out without usable intrinsics (their 3D outputs off, their depth scale a guess).
        Frames dropped as stale ("busy": a newer frame replaced them) are the newest-frame policy working, not a
        problem, and do not turn it to WARN. Each call is a report: it moves the "since the last report" mark.
        """
        problems = sum(n for code, n in self.dropped.items() if code not in EXPECTED_DROPS)
        new_problems, self._reported_problems = problems - self._reported_problems, problems
        partial = sum(self.partial.values())
        new_partial, self._reported_partial = partial - self._reported_partial, partial
        busy = sum(n for code, n in self.dropped.items() if code in EXPECTED_DROPS)
        summary = (f"{self.processed}/{self.frames_in} frames processed ({busy} dropped as stale), "
                   f"{self.rate():.1f} Hz")
        if self.frames_in and not self.processed and problems:
            return WARN, f"no frame processed yet: {self.last_drop_reason or 'see values'}"
        if new_problems > 0:
            return WARN, f"{new_problems} frames skipped since the last report ({self.last_drop_reason}); {summary}"
        if new_partial > 0:
            return WARN, (f"{new_partial} frames without usable intrinsics since the last report "
                          f"({self.last_partial_reason}); {summary}")
        if self.frames_in == 0 and self.idle_frames == 0:
            return OK, "waiting for images"
        if self.frames_in == 0:
            return OK, f"idle: {self.idle_frames} frames received, no output has a subscriber"
        return OK, summary
