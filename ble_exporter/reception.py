"""How well a sensor is heard, from its own frame counter: frames heard, frames it sent, its restarts.

Every pvvx format carries a counter the firmware bumps once per measurement (every 4 adverts, 10 s by
default) and repeats in every advert of that measurement: an 8-bit one in the plain formats and in
encrypted pvvx custom/atc1441, a 32-bit one in encrypted BTHome and MiBeacon. The same value again is
the same frame (pvvx's BTHome sends two packets per frame under one id, pvvx #740); a new value is a
frame heard, and how far the counter moved is how many the sensor sent since the last one we heard.

A step counts only where the time since the last frame heard can explain it: at the sensor's measured
period once there is one, at the fastest the firmware allows (two adverts of 62.5 ms) before. A
counter that went back, or moved further than the time allows, is a restart (a battery change, a
brown-out): it adds no frames and starts the period's measurement again. Some bumps are no
measurement (pvvx's reed-switch events, the plain Mijia battery frame), so frames sent is an upper
bound of the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

FASTEST_PERIOD_SECONDS = 0.125  # two adverts at pvvx's shortest interval, 62.5 ms
# A step is explained when it is at most (elapsed / period) * STEP_RATIO + STEP_SLACK: a frame is first
# heard anywhere in its measurement (one period of jitter at each end), and events bump the counter too.
STEP_RATIO = 1.25
STEP_SLACK = 2
PERIOD_AFTER_STEPS = 3  # the period is measured once the counter has moved this far since the anchor


@dataclass(slots=True)
class Reception:
    """One configured sensor's frame accounting, kept across scans and reloads (new MAC or bindkey: new)."""

    scans: int = 0  # scans since this record began (the sensor configured, or its bindkey changed)
    scans_heard: int = 0  # scans in which the sensor gave a reading
    frames: int = 0  # distinct frames heard
    frames_sent: int = 0  # how far its counter advanced between the frames heard, unwrapped
    restarts: int = 0
    period: float | None = None  # seconds per counter step, measured; None until measured
    last_frame: int | None = None
    previous_frame: int | None = None  # the one before: a late copy of it from a second adapter is no new frame
    last_frame_time: float = 0.0
    _anchor_time: float = 0.0  # where the period's measurement starts: a frame and frames_sent then
    _anchor_sent: int = 0

    def frame(self, number: int, bits: int, now: float) -> None:
        """A frame not heard just before (`number` differs from `last_frame`), with a `bits`-wide counter."""
        last, elapsed = self.last_frame, now - self.last_frame_time
        self.frames += 1
        self.previous_frame, self.last_frame, self.last_frame_time = last, number, now
        if last is None:  # the first frame heard says nothing of what was sent before it
            self._anchor(now)
            return
        step = (number - last) % (1 << bits)
        went_back = bits > 8 and number < last  # a wide counter never wraps in a sensor's life
        period = self.period or FASTEST_PERIOD_SECONDS
        if self.period is not None and bits <= 8:  # a silence longer than the counter's range: its wraps
            step += (1 << bits) * max(0, round((elapsed / period - step) / (1 << bits)))
        if went_back or step > elapsed / period * STEP_RATIO + STEP_SLACK:
            self.restarts += 1
            self.period = None
            self._anchor(now)
            return
        self.frames_sent += step
        sent = self.frames_sent - self._anchor_sent
        if sent >= PERIOD_AFTER_STEPS:
            self.period = (now - self._anchor_time) / sent

    def _anchor(self, now: float) -> None:
        self._anchor_time, self._anchor_sent = now, self.frames_sent
