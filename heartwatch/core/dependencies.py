"""Dependencies between checks: `depends_on` (parents whose outage holds a child's alerts back) and `after` (a
check expected when another finishes well). Pure: the graph's validation, and what a check waits on.

The graph's edges go from a child to its parents, through both keys; it must name only known checks and must
have no cycle (a cycle would hold every check on it back for good, or expect each only after the others).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from heartwatch.core import maintenance
from heartwatch.core.model import Check, CheckSpec, Watch
from heartwatch.core.values import ConfigError


def edges(spec: CheckSpec) -> Iterator[tuple[str, str]]:
    """(key, parent slug) for each parent the spec names."""
    for parent in spec.depends_on:
        yield "depends_on", parent
    if spec.after is not None:
        yield "after", spec.after


def parents(spec: CheckSpec) -> tuple[str, ...]:
    return tuple(p for _, p in edges(spec))


def _key_value(spec: CheckSpec, key: str) -> object:
    return list(spec.depends_on) if key == "depends_on" else spec.after


def check_graph(specs: Mapping[str, CheckSpec], prefix: str = "checks.") -> None:
    """Every parent named is one of `specs`, and no chain of parents leads back to where it began; else a
    ConfigError naming the key and value that close the cycle or name the unknown check."""
    for slug, spec in specs.items():
        for key, parent in edges(spec):
            if parent not in specs:
                raise ConfigError(f"{prefix}{slug}.{key}", _key_value(spec, key), f"no check is called {parent!r}")
    done: set[str] = set()
    for slug, spec in specs.items():
        if spec.depends_on or spec.after:
            _refuse_cycle(slug, specs.get, prefix, done)


def check_change(spec: CheckSpec, lookup: Callable[[str], CheckSpec | None], prefix: str = "") -> None:
    """One check created or changed among others (`lookup`: the other checks' specs by slug, None for an
    unknown or archived one): its parents exist and no cycle runs through it. A new cycle must pass through
    the changed check, so only chains from it are walked."""
    for key, parent in edges(spec):
        if parent != spec.slug and lookup(parent) is None:
            raise ConfigError(f"{prefix}{spec.slug}.{key}", _key_value(spec, key), f"no check is called {parent!r}")

    def find(slug: str) -> CheckSpec | None:
        return spec if slug == spec.slug else lookup(slug)

    _refuse_cycle(spec.slug, find, prefix, set())


def _refuse_cycle(start: str, find: Callable[[str], CheckSpec | None], prefix: str, done: set[str]) -> None:
    """Depth-first from `start` without recursion (a chain may be long); `done`: slugs known to lead to no
    cycle, shared between calls so the whole graph is walked once."""
    path: list[str] = []
    on_path: set[str] = set()
    stack: list[tuple[str, Iterator[str]]] = []

    def enter(slug: str) -> None:
        spec = find(slug)
        path.append(slug)
        on_path.add(slug)
        stack.append((slug, iter(parents(spec) if spec else ())))

    enter(start)
    while stack:
        slug, todo = stack[-1]
        parent = next(todo, None)
        if parent is None:
            stack.pop()
            path.pop()
            on_path.discard(slug)
            done.add(slug)
            continue
        if parent in done:
            continue
        if parent in on_path:
            # Named by its first edge: for a change (check_change), the changed check's own key.
            cycle = [*path[path.index(parent):], parent]
            first = find(cycle[0])
            assert first is not None
            key = "after" if first.after == cycle[1] else "depends_on"
            raise ConfigError(f"{prefix}{cycle[0]}.{key}", _key_value(first, key),
                              f"a cycle: {' -> '.join(cycle)} (each waits on the next)")
        enter(parent)


@dataclass(frozen=True)
class ParentState:
    """What a child needs to know of one parent."""

    slug: str
    name: str
    paused: bool = False
    maintenance_until: datetime | None = None  # the end of a maintenance hold open now
    in_maintenance: bool = False
    down: bool = False
    released_at: datetime | None = None  # when it last recovered


def holding(parent: ParentState, grace: timedelta, now: datetime) -> tuple[bool, datetime | None]:
    """Does this parent hold its child's alerts back at `now`, and until when (None: not known yet)?

    Down, paused or in maintenance: yes. Recovered less than the child's `grace` ago: yes, so a child that
    only waited for its parent has its own grace to run well before it alerts."""
    if parent.paused or parent.down:
        return True, None
    if parent.in_maintenance:
        return True, parent.maintenance_until
    if parent.released_at is not None and parent.released_at + grace > now:
        return True, parent.released_at + grace
    return False, None


def waiting_on(spec: CheckSpec, states: Mapping[str, ParentState], now: datetime
               ) -> tuple[tuple[str, ...], datetime | None]:
    """The depends_on parents holding `spec`'s alerts back at `now` (slugs, in its order), and when the hold
    ends if that is known (the latest of their ends)."""
    held: list[str] = []
    ends: list[datetime | None] = []
    for slug in spec.depends_on:
        state = states.get(slug)
        if state is None:  # archived since: it holds nothing back
            continue
        holds, until = holding(state, spec.start_grace, now)
        if holds:
            held.append(slug)
            ends.append(until)
    until_all = None if not ends or any(e is None for e in ends) else max(e for e in ends if e is not None)
    return tuple(held), until_all


def status_note(spec: CheckSpec, watch: Watch | None, waiting: tuple[str, ...]) -> str | None:
    """The words beside a check's status: "waiting on router" while a parent holds it back, "not expected,
    nightly-backup failed" when an `after` parent's run did not finish well."""
    if waiting:
        return f"waiting on {', '.join(waiting)}"
    if spec.after is not None and watch is not None and watch.parent_failed and watch.expected_at is None:
        return f"not expected, {spec.after} failed"
    return None


def parent_state(check: Check, watch: Watch | None, now: datetime) -> ParentState:
    """A stored check as its children see it at `now`."""
    ends = [t for t in (check.maintenance_until,
                        maintenance.window_end(check.spec.maintenance, check.spec.timezone, now)) if t and t > now]
    return ParentState(check.slug, check.spec.display_name, paused=check.paused,
                       maintenance_until=max(ends) if ends else None, in_maintenance=bool(ends),
                       down=watch is not None and watch.down_since is not None,
                       released_at=watch.released_at if watch else None)


def waiting_of(check: Check, known: Mapping[str, tuple[Check, Watch | None]], now: datetime) -> tuple[str, ...]:
    """The parents holding a stored check back at `now`, from the checks at hand (`known`, by slug)."""
    if not check.spec.depends_on or check.paused:
        return ()
    states = {p: parent_state(*known[p], now) for p in check.spec.depends_on
              if p in known and not known[p][0].archived}
    return waiting_on(check.spec, states, now)[0]


@dataclass(frozen=True)
class PipelineRow:
    """One line of a check's pipeline view: a check above it (a parent, a grandparent) or below it."""

    slug: str
    depth: int  # negative: above the check (-1 its parents); 0 the check; positive: below it
    via: str  # "depends_on", "after", or "" for the check itself
    of: str = ""  # above: the check naming this one (through `via`); below: the check this one names


def pipeline(slug: str, specs: Mapping[str, CheckSpec], limit: int = 100) -> list[PipelineRow]:
    """The check's pipeline as an indented list: its ancestors (farthest first), itself, then its descendants
    depth first, each once, at most `limit` rows. `specs`: the checks known, by slug."""
    above: list[PipelineRow] = []
    seen = {slug}
    frontier = [slug]
    depth = 0
    while frontier and len(above) < limit:
        depth -= 1
        nxt = []
        for s in frontier:
            spec = specs.get(s)
            for key, parent in edges(spec) if spec else ():
                if parent not in seen and parent in specs:
                    seen.add(parent)
                    nxt.append(parent)
                    above.append(PipelineRow(parent, depth, key, s))
        frontier = nxt
    children: dict[str, list[tuple[str, str]]] = {}
    for child, spec in sorted(specs.items()):
        for key, parent in edges(spec):
            children.setdefault(parent, []).append((child, key))
    rows = [*sorted(above, key=lambda r: r.depth), PipelineRow(slug, 0, "")]
    below_seen = {slug}
    stack = [(c, 1, k, slug) for c, k in reversed(children.get(slug, []))]
    while stack and len(rows) < limit:
        s, d, key, parent = stack.pop()
        if s in below_seen:
            continue
        below_seen.add(s)
        rows.append(PipelineRow(s, d, key, parent))
        stack += [(c, d + 1, k, s) for c, k in reversed(children.get(s, []))]
    return rows
