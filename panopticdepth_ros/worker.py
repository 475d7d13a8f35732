"""The node's inference worker without ROS: newest-frame mailbox, worker thread, throttled warnings, diagnostics.

Why a one-slot mailbox: a camera publishes faster than the model runs, and a robot wants the newest frame, not a
queue of old ones. Subscription callbacks only ``put`` (cheap, never waits for inference); the worker thread
``take``s the newest, asks which outputs have subscribers, runs :class:`FramePipeline` and hands the CDR bytes to
a ``publish`` callback. Every frame overwritten before the worker got to it is counted as dropped ("busy"). Only
the worker thread touches the pipeline and its statistics, so nothing else needs a lock. node.py wires rclpy to
this class; CI tests it directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    """One received image with the camera_info that was current when it arrived."""

    image: Any  # CDR bytes (or a message object)
    camera_info: Any  # CDR bytes, a message object, or None
    receive_time: float  # seconds on the node's clock (ROS time), for stamp-to-output latency


class FrameMailbox:
    """A one-slot, thread-safe mailbox: ``put`` replaces the waiting frame, ``take`` returns the newest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self._overwritten = 0  # frames replaced before the worker took them, not yet collected

    def put(self, frame: Frame) -> bool:
        """Store ``frame``; True when it replaced one the worker had not taken (that one is dropped)."""
        with self._cond:
            replaced = self._frame is not None
            if replaced:
                self._overwritten += 1
            self._frame = frame
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame (removing it), waiting up to ``timeout`` seconds; None on timeout or when closed."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            if self._closed:
                return None
            frame, self._frame = self._frame, None
            return frame

    def collect_overwritten(self) -> int:
        """Frames dropped since the last call (the worker adds them to the statistics)."""
        with self._cond:
            count, self._overwritten = self._overwritten, 0
            return count

    def close(self) -> None:
        """Wake the worker and make every ``take`` return None (deactivation); the waiting frame is discarded."""
        with self._cond:
            self._closed = True
            self._frame = None
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._frame = None
            self._overwritten = 0

    @property
    def closed(self) -> bool:
        return self._closed


class WarningThrottle:
    """At most one message per key every ``period`` seconds, with a count of the ones held back.

    rclpy's ``throttle_duration_sec`` throttles per call site, so one bad-frame warning would hide a different
    problem for the whole period; here every skip code (or warning text) has its own clock.
    """

    def __init__(self, period: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str, message: str) -> str | None:
        """The message to log now (with the count held back since the key's last report), or None to stay quiet."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        held = self._held.pop(key, 0)
        if not held:
            return message
        return f"{message} ({held} more like this since the last report, {now - last:.0f} s ago)"


BUSY_REASON = "a newer frame arrived before this one was processed (only the newest is kept)"


class FrameWorker:
    """Runs frames from a :class:`FrameMailbox` through a pipeline on its own thread and publishes the results.

    Callbacks (called on the worker thread): ``wanted()`` -> output suffixes with subscribers (empty: the frame
    is not processed at all), ``publish(topic, data)`` with topic an output suffix or ``"/diagnostics"``,
    ``warn(text)`` for throttled problems, ``stamp()`` -> (sec, nanosec) of the node's clock for diagnostics,
    ``extra_values()`` -> more key/values for the diagnostics.
    """

    def __init__(self, pipeline, mailbox: FrameMailbox, wanted: Callable[[], list[str]],
                 publish: Callable[[str, bytes], None], warn: Callable[[str], None],
                 stamp: Callable[[], tuple[int, int]] = lambda: (0, 0),
                 extra_values: Callable[[], dict[str, object]] = dict,
                 diagnostics_period: float = 1.0, warn_period: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pipeline = pipeline
        self.mailbox = mailbox
        self.wanted, self.publish, self.warn, self.stamp, self.extra_values = wanted, publish, warn, stamp, extra_values
        self.diagnostics_period = diagnostics_period
        self.clock = clock
        self.throttle = WarningThrottle(warn_period, clock)
        self._pending_settings = None
        self._next_diagnostics = clock() + diagnostics_period
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------------------------------- control
    def start(self) -> None:
        self._stop.clear()
        self.mailbox.reopen()
        self._thread = threading.Thread(target=self._loop, name="panopticdepth_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to finish (the frame being processed completes first); True when it has."""
        self._stop.set()
        self.mailbox.close()
        if self._thread is not None:
            self._thread.join(timeout)
            alive = self._thread.is_alive()
            self._thread = None if not alive else self._thread
            return not alive
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def update_settings(self, settings) -> None:
        """New PipelineSettings, applied by the worker before its next frame (no frame sees half of them)."""
        self._pending_settings = settings

    # --------------------------------------------------------------------------------------------- work
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(timeout=min(0.1, self.diagnostics_period))
            except Exception as error:  # a publish failing during shutdown must not end the thread silently
                if self._stop.is_set():
                    break
                self.warn(f"worker error: {type(error).__name__}: {error}")

    def step(self, timeout: float | None = 0.0) -> bool:
        """Process the newest frame if one arrives within ``timeout``; publish diagnostics when due.

        Returns True when a frame went through the pipeline (processed or skipped).
        """
        frame = self.mailbox.take(timeout)
        self._collect_drops()
        ran = False
        if frame is not None:
            ran = self._process(frame)
        if self.clock() >= self._next_diagnostics:
            self.publish_diagnostics()
        return ran

    def _collect_drops(self) -> None:
        stats = self.pipeline.stats
        for _ in range(self.mailbox.collect_overwritten()):
            stats.frames_in += 1
            stats.note_dropped("busy")

    def _process(self, frame: Frame) -> bool:
        wanted = list(self.wanted())
        if not wanted:
            self.pipeline.stats.idle_frames += 1
            return False
        if self._pending_settings is not None:
            self.pipeline.settings, self._pending_settings = self._pending_settings, None
        result = self.pipeline.process(frame.image, frame.camera_info, wanted, receive_time=frame.receive_time)
        if result.skipped:
            self._warn(result.code or "skipped", f"frame skipped: {result.reason}")
        for text in result.warnings:
            self._warn(text, text)
        for suffix, (_typename, data) in result.outputs.items():
            self.publish(suffix, data)
        return True

    def _warn(self, key: str, text: str) -> None:
        message = self.throttle(key, text)
        if message is not None:
            self.warn(message)

    # -------------------------------------------------------------------------------------- diagnostics
    def diagnostics_bytes(self) -> bytes:
        """CDR of a DiagnosticArray: the pipeline's counters and level (the rule `panopticdepth bag` uses too)
        plus the node's own values."""
        return self.pipeline.diagnostics(self.stamp(), self.extra_values())[1]

    def publish_diagnostics(self) -> None:
        self._next_diagnostics = self.clock() + self.diagnostics_period
        self.publish("/diagnostics", self.diagnostics_bytes())
