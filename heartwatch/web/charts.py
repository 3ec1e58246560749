"""Inline SVG drawn on the server: a run's steps on a timeline, and the durations of recent runs.

No chart library and no inline styles (a later Content-Security-Policy forbids both scripts and style
attributes): geometry goes into SVG attributes, colour into CSS classes (`st-<run state>`), so light and
dark themes apply. Every piece of text goes through Markup.format, which escapes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup

from heartwatch.core.durations import format_duration
from heartwatch.core.model import CheckSpec, Run, RunState
from heartwatch.web.format import RUN_WORDS, local_text, span_text


def run_end(run: Run, spec: CheckSpec, now: datetime) -> datetime:
    """Where a run's bar ends: its end, now while it runs, or its deadline once it timed out unfinished
    (so a run abandoned days ago does not stretch every other run's scale)."""
    if run.ended_at is not None:
        return run.ended_at
    if run.state is RunState.RUNNING:
        return max(now, run.started_at)
    last = run.last_step.at if run.last_step else run.started_at
    if spec.max_runtime is not None:
        return max(last, run.started_at + spec.max_runtime)
    return last


def run_length(run: Run, spec: CheckSpec, now: datetime) -> timedelta:
    return run_end(run, spec, now) - run.started_at


def timeline_scale(runs: Sequence[Run], spec: CheckSpec, now: datetime) -> timedelta:
    """One scale for a table of runs, so their lengths compare at a glance."""
    lengths = [run_length(r, spec, now) for r in runs if r.state is not RunState.MISSED]
    return max([*lengths, timedelta(seconds=1)])


def _x(at: datetime, start: datetime, scale: timedelta, left: float, width: float) -> float:
    share = (at - start) / scale if scale.total_seconds() > 0 else 0.0
    return round(left + max(0.0, min(1.0, share)) * width, 1)


def timeline(run: Run, spec: CheckSpec, now: datetime, scale: timedelta, tz: str, w: int = 300,
             labels: bool = False) -> Markup:
    """A run as a bar from its start, with a dot per step; the step where it stopped is drawn larger.

    With `labels`, step names are written under their dots (the run page has the room for it).
    """
    h, left, right = (40 if labels else 22), 5.0, 5.0
    span = w - left - right
    word = RUN_WORDS[run.state]
    parts: list[Markup] = []
    if run.state is RunState.MISSED:
        parts.append(Markup('<text class="svg-note" x="{}" y="15">no start came</text>').format(left))
    else:
        end_x = _x(run_end(run, spec, now), run.started_at, scale, left, span)
        open_run = run.ended_at is None
        parts.append(Markup('<rect class="bar st-{}{}" x="{}" y="8" width="{}" height="6" rx="2"><title>{}, {}'
                            '</title></rect>').format(run.state.value, " open" if open_run else "", left,
                                                      max(end_x - left, 1.5), word,
                                                      span_text(run_length(run, spec, now))))
        if spec.max_runtime is not None and spec.max_runtime <= scale:
            limit_x = _x(run.started_at + spec.max_runtime, run.started_at, scale, left, span)
            parts.append(Markup('<line class="limit" x1="{0}" x2="{0}" y1="2" y2="20"><title>max_runtime {1}'
                                '</title></line>').format(limit_x, span_text(spec.max_runtime)))
        stopped = run.state is not RunState.OK and run.steps
        label_end = -1e9  # right edge of the last label written, so labels never overlap
        for i, mark in enumerate(run.steps):
            mx = _x(mark.at, run.started_at, scale, left, span)
            half = 4 * len(mark.name)  # about half the label's width at the axis font size
            # A label centred on a dot near either edge would be cut by the edge ("ump" for "dump"): it is
            # anchored at the edge's side instead.
            anchor, lx, first, last_x = "middle", mx, mx - half, mx + half
            if first < 0:
                anchor, lx, first, last_x = "start", 0.0, 0.0, 2 * half
            elif last_x > w:
                anchor, lx, first, last_x = "end", float(w), w - 2 * half, float(w)
            if labels and first > label_end + 6:
                parts.append(Markup('<text class="axis" x="{}" y="34" text-anchor="{}">{}</text>').format(
                    lx, anchor, mark.name))
                label_end = last_x
            last = stopped and i == len(run.steps) - 1
            parts.append(Markup('<circle class="mark{}" cx="{}" cy="11" r="{}"><title>{}{} at {} (+{})</title>'
                                '</circle>').format(
                " stopped" if last else "", _x(mark.at, run.started_at, scale, left, span), 5 if last else 3.5,
                "stopped at " if last and run.state is not RunState.RUNNING else "", mark.name,
                local_text(mark.at, tz), span_text(mark.at - run.started_at)))
    label = f"run {run.id}: {word}" + (f", last step {run.last_step.name}" if run.last_step else "")
    return Markup('<svg class="timeline" viewBox="0 0 {0} {1}" width="{0}" height="{1}" role="img" aria-label="{2}">'
                  '{3}</svg>').format(w, h, label, Markup("").join(parts))


#: Axis maxima people read without arithmetic.
_NICE = [timedelta(seconds=s) for s in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200,
                                        10800, 14400, 21600, 43200, 86400, 172800, 345600, 604800)]


def nice_ceiling(value: timedelta) -> timedelta:
    """The smallest round duration at or above `value` (whole weeks beyond the table)."""
    for nice in _NICE:
        if value <= nice:
            return nice
    return timedelta(weeks=-(-value // timedelta(weeks=1)))


def _axis_text(value: timedelta) -> str:
    return span_text(value) if value < timedelta(seconds=10) else format_duration(value)


def duration_chart(runs: Sequence[Run], spec: CheckSpec, now: datetime, tz: str, run_url: str) -> Markup:
    """Bars of the recent runs' durations, oldest on the left, coloured by state, each linking to its run.

    `run_url` is a prefix to which the run id is appended. Missed runs have no duration: a cross marks them.
    """
    runs = list(reversed(runs))  # the caller has them newest first
    if not runs:
        return Markup("")
    w, h, left, bottom, top = 600, 150, 56, 20, 10
    plot_w, plot_h = w - left - 6, h - bottom - top
    lengths = [run_length(r, spec, now) for r in runs]
    longest = max([d for r, d in zip(runs, lengths, strict=True) if r.state is not RunState.MISSED]
                  + [timedelta(seconds=1)])
    limits = [(name, d) for name, d in (("max", spec.max_runtime), ("min", spec.min_runtime))
              # A limit far above every run would squash the bars flat; leave it out of the picture.
              if d is not None and d <= longest * 2]
    ymax = nice_ceiling(max([longest, *(d for _, d in limits)]))

    def y(d: timedelta) -> float:
        return round(top + plot_h - (d / ymax) * plot_h, 1)

    parts: list[Markup] = []
    for frac in (0.0, 0.5, 1.0):
        value = ymax * frac
        parts.append(Markup('<line class="grid" x1="{0}" x2="{1}" y1="{2}" y2="{2}"></line>'
                            '<text class="axis" x="{3}" y="{4}" text-anchor="end">{5}</text>').format(
            left, w - 6, y(value), left - 6, y(value) + 4, _axis_text(value) if frac else "0"))
    slot = plot_w / max(len(runs), 10)
    bar_w = round(max(slot * 0.7, 2), 1)
    for i, (run, length) in enumerate(zip(runs, lengths, strict=True)):
        x = round(left + i * slot + (slot - bar_w) / 2, 1)
        title = Markup("run {}: {}, {} at {}").format(
            run.id, RUN_WORDS[run.state], "no start" if run.state is RunState.MISSED else span_text(length),
            local_text(run.started_at, tz))
        if run.state is RunState.MISSED:
            cy, r = top + plot_h - 6, min(bar_w / 2, 5)
            shape = Markup('<path class="miss" d="M{} {} l{} {} m0 {} l{} {}"></path>').format(
                x + bar_w / 2 - r, cy - r, 2 * r, 2 * r, -2 * r, -2 * r, 2 * r)
        else:
            top_y = min(y(length), top + plot_h - 1.5)
            shape = Markup('<rect class="bar st-{}{}" x="{}" y="{}" width="{}" height="{}"></rect>').format(
                run.state.value, " open" if run.ended_at is None else "", x, top_y, bar_w,
                round(top + plot_h - top_y, 1))
        parts.append(Markup('<a href="{}{}"><title>{}</title>{}</a>').format(run_url, run.id, title, shape))
    for name, d in limits:
        parts.append(Markup('<line class="limit" x1="{0}" x2="{1}" y1="{2}" y2="{2}"></line>'
                            '<text class="axis limit-label" x="{1}" y="{3}" text-anchor="end">{4}_runtime {5}</text>')
                     .format(left, w - 6, y(d), y(d) - 3, name, span_text(d)))
    parts.append(Markup('<text class="axis" x="{}" y="{}">{}</text><text class="axis" x="{}" y="{}" '
                        'text-anchor="end">{}</text>').format(
        left, h - 4, local_text(runs[0].started_at, tz, seconds=False), w - 6, h - 4,
        local_text(runs[-1].started_at, tz, seconds=False)))
    # A group, not an image: each bar is a link to its run, and an image may hold nothing to click.
    return Markup('<svg class="durations" viewBox="0 0 {0} {1}" width="{0}" height="{1}" role="group" '
                  'aria-label="durations of the last {2} runs">{3}</svg>').format(
        w, h, len(runs), Markup("").join(parts))
