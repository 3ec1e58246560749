"""Every live check's status, kept in order by the writer, so the overview reads one page, not every check.

A check's status (core/status.py) is worked out from its paused flag, its newest run's state, whether its watch
holds it down, and, for `late`, whether an expected start is overdue at this moment. All but the last change only
through the writer: a ping's runs (Store.save_run), a watch's row (WatchBook), a check created, changed,
paused, resumed or archived (Store._changed). The writer tells this index at each of those, so it holds every
check's status *as if no start were overdue*, in one list per status sorted by (display name lower-cased, id):
counting is a length, a page is a slice. Lateness is the one part that moves with the clock: the few watches
whose expected start has passed but whose grace has not (an index on watches.expected_at, migration 11) are read
at each page and moved from `up` or `new` to `late` there.

Built the first time a page asks for it (so a start-up reads nothing more), on the writer, between two batches,
so no change is missed; emptied whenever the writer's in-memory state is read again (after a rollback; on
PostgreSQL when another process wrote), and built again at the next page. Compact per check: a run id in an
array, a byte of state, and the sort key shared with the check's spec when the name is already lower case.
Only the writer changes it (on the event loop or, on PostgreSQL, the writer's thread); pages read it on the
event loop, so both hold `lock`.
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from sortedcontainers import SortedList

from heartwatch.core.model import Check, CheckStatus, RunState
from heartwatch.core.status import SEVERITY, matches, status_of_parts
from heartwatch.store.base import StatusLines, StatusPage

_STATES: list[RunState | None] = [None, *RunState]
_CODE = {s: i for i, s in enumerate(_STATES)}
#: Statuses an overdue start turns into `late` (the others win over lateness: paused, running, down).
LATE_FROM = (CheckStatus.UP, CheckStatus.NEW)
_EPOCH = datetime.fromtimestamp(0, UTC)  # status_of_parts needs a `now`; without an expectation it is unused

Item = tuple[str, int]  # (sort key, check id): the order of a status's checks
_STATUSES = list(SEVERITY)
_STATUS_CODE = {s: i + 1 for i, s in enumerate(_STATUSES)}


def sort_key(check: Check) -> str:
    """The overview's order within a status: the display name, lower-cased (the name itself when already so)."""
    name = check.spec.display_name
    lowered = name.lower()
    return name if lowered == name else lowered


class StatusIndex:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.built = False
        self._clear()

    def _clear(self) -> None:
        self._groups: dict[CheckStatus, SortedList] = {s: SortedList() for s in SEVERITY}
        # By check id (ids are dense: checks are archived, never deleted), live checks only: lists and bytes
        # rather than dicts, 17 bytes a check instead of ~150 (100,000 checks: 29 -> 16 MB in all).
        self._items: list[Item | None] = []
        self._status = bytearray()  # _STATUS_CODE (0: not in the overview)
        self._tags_of: list[tuple[str, ...]] = []
        self._tags: Counter[str] = Counter()
        self._run_ids = array("q")  # by check id: its newest run's id (0: none)
        self._states = bytearray()  # by check id: its newest run's state, _CODE
        self._down = bytearray()  # by check id: 1 when its watch holds it down
        self._paused: set[int] = set()

    def forget(self) -> None:
        """The writer's state is read again: empty until the next page builds it."""
        with self.lock:
            self.built = False
            self._clear()

    def build(self, checks: Iterable[Check], newest: Iterable[tuple[int, int, str]], down: Iterable[int]) -> None:
        """From the database, on the writer: every check, (check id, newest run id, its state), the down ones."""
        with self.lock:
            self._clear()
            checks = list(checks)
            top = max((c.id for c in checks), default=0) + 1
            self._grow(top)
            for cid, run_id, state in newest:
                self._grow(cid + 1)
                self._run_ids[cid] = run_id
                self._states[cid] = _CODE[RunState(state)]
            for cid in down:
                self._grow(cid + 1)
                self._down[cid] = 1
            lists: dict[CheckStatus, list[Item]] = {s: [] for s in SEVERITY}
            for check in checks:
                if check.archived:
                    continue
                status = self._base(check.id, check.paused)
                item = (sort_key(check), check.id)
                self._set(check.id, item, status)
                self._tags_of[check.id] = check.spec.tags
                self._tags.update(check.spec.tags)
                if check.paused:
                    self._paused.add(check.id)
                lists[status].append(item)
            self._groups = {s: SortedList(items) for s, items in lists.items()}
            self.built = True

    def _grow(self, size: int) -> None:
        if len(self._states) < size:
            more = size - len(self._states) + 1024
            self._run_ids.extend([0] * more)
            self._states.extend(bytes(more))
            self._down.extend(bytes(more))
            self._items.extend([None] * more)
            self._status.extend(bytes(more))
            self._tags_of.extend([()] * more)

    def _set(self, cid: int, item: Item | None, status: CheckStatus | None) -> None:
        self._items[cid] = item
        self._status[cid] = 0 if status is None else _STATUS_CODE[status]

    def _status_of(self, cid: int) -> CheckStatus | None:
        code = self._status[cid] if cid < len(self._status) else 0
        return _STATUSES[code - 1] if code else None

    def _base(self, cid: int, paused: bool) -> CheckStatus:
        return status_of_parts(paused, _STATES[self._states[cid]], _EPOCH, None, None, down=self._down[cid] == 1)

    def _place(self, cid: int, item: Item | None, status: CheckStatus | None) -> None:
        """Move a check to `item` in `status`'s list (None: out of the overview)."""
        old_item, old_status = self._items[cid], self._status_of(cid)
        if old_item == item and old_status == status:
            return
        if old_item is not None and old_status is not None:
            self._groups[old_status].remove(old_item)
        if item is None or status is None:
            self._set(cid, None, None)
        else:
            self._groups[status].add(item)
            self._set(cid, item, status)

    # --- what the writer tells it ----------------------------------------------------------------------------

    def put_check(self, check: Check) -> None:
        """A check created, changed, paused, resumed or archived."""
        if not self.built:
            return
        with self.lock:
            cid = check.id
            self._grow(cid + 1)
            self._tags.subtract(self._tags_of[cid])
            self._tags_of[cid] = ()
            if check.archived:
                self._paused.discard(cid)
                self._place(cid, None, None)
            else:
                self._tags_of[cid] = check.spec.tags
                self._tags.update(check.spec.tags)
                (self._paused.add if check.paused else self._paused.discard)(cid)
                self._place(cid, (sort_key(check), cid), self._base(cid, check.paused))

    def put_run(self, check_id: int, run_id: int, state: RunState) -> None:
        """A run written: the check's status follows it when it is the newest."""
        # Only the writer changes the index, so it reads it without the lock; most calls change nothing (a step,
        # an older run) and return here.
        if not self.built or (check_id < len(self._states) and (
                run_id < self._run_ids[check_id]
                or (run_id == self._run_ids[check_id] and self._states[check_id] == _CODE[state]))):
            return
        with self.lock:
            self._grow(check_id + 1)
            self._run_ids[check_id] = run_id
            code = _CODE[state]
            if self._states[check_id] != code:
                self._states[check_id] = code
                self._restatus(check_id)

    def put_down(self, check_id: int, down: bool) -> None:
        """A watch written: whether it holds the check down."""
        if not self.built or (check_id < len(self._down) and self._down[check_id] == down):
            return
        with self.lock:
            self._grow(check_id + 1)
            self._down[check_id] = int(down)
            self._restatus(check_id)

    def _restatus(self, cid: int) -> None:
        item = self._items[cid]
        if item is not None:
            self._place(cid, item, self._base(cid, cid in self._paused))

    # --- what a page reads -----------------------------------------------------------------------------------

    def page(self, late: Iterable[int], wanted: CheckStatus | None, page: int, per_page: int,
             keep: Callable[[int], bool] | None = None) -> StatusPage | None:
        """One page of the overview's order (severity, then name), filtered by status and `keep` (a search, a
        tag: those read every check of the statuses shown), with every status's count over all checks.
        `late`: the checks whose expected start is overdue but still inside its grace. None when the index was
        emptied since the caller built it (the writer read its state again): build it and ask again."""
        with self.lock:
            if not self.built:
                return None
            groups = self._groups
            # Overdue starts only matter to checks that are up or new; those move to `late`.
            moved: dict[int, tuple[Item, CheckStatus]] = {}
            for cid in late:
                was = self._status_of(cid)
                item = self._items[cid] if was in LATE_FROM else None
                if item is not None and was is not None:
                    moved[cid] = (item, was)
            late_items = sorted(item for item, _ in moved.values())
            counts = {s: len(groups[s]) for s in SEVERITY}
            for _, was in moved.values():
                counts[was] -= 1
            counts[CheckStatus.LATE] = len(late_items)
            shown: list[tuple[CheckStatus, _Group]] = []
            for status in sorted(SEVERITY, key=SEVERITY.__getitem__):
                if wanted not in (None, status):
                    continue
                if status is CheckStatus.LATE:
                    group = _Group(late_items, set(), counts[status])
                else:
                    skip = {item for item, was in moved.values() if was is status}
                    group = _Group(groups[status], skip, counts[status])
                if keep is not None:
                    group = group.filtered(keep)
                shown.append((status, group))
            matched = sum(g.size for _, g in shown)
            pages = max(1, -(-matched // per_page))
            page = min(max(1, page), pages)
            start, stop = (page - 1) * per_page, page * per_page
            rows: list[tuple[CheckStatus, int]] = []
            offset = 0
            for status, group in shown:
                if offset + group.size > start and offset < stop:
                    rows += [(status, cid) for _, cid in group.slice(max(0, start - offset), stop - offset)]
                offset += group.size
            return StatusPage(counts, sum(len(g) for g in groups.values()), matched, page, pages, rows,
                              sorted(t for t, n in self._tags.items() if n > 0))


class _Group:
    """A status's checks in order, less the ones `skip` names (the few moved to `late`)."""

    def __init__(self, items: SortedList | list[Item], skip: set[Item], size: int) -> None:
        self.items, self.skip, self.size = items, skip, size

    def filtered(self, keep: Callable[[int], bool]) -> _Group:
        kept = [x for x in self.items if x not in self.skip and keep(x[1])]
        return _Group(kept, set(), len(kept))

    def slice(self, start: int, stop: int) -> Iterator[Item]:
        """Items `start` to `stop` of the group without `skip`: the skipped ones before `start` shift it along."""
        first = start
        if self.skip:
            for position in sorted(self.items.index(x) for x in self.skip):
                if position <= first:
                    first += 1
        taken = 0
        for position in range(first, len(self.items)):
            if taken >= stop - start:
                break
            item = self.items[position]
            if item in self.skip:
                continue
            taken += 1
            yield item



class Filter:
    """The overview's filters besides the status: a tag, the search box (lower case), a pipeline's slugs."""

    def __init__(self, tag: str | None = None, query: str = "", slugs: frozenset[str] | None = None) -> None:
        self.tag, self.query, self.slugs = tag, query, slugs

    def __bool__(self) -> bool:
        return self.tag is not None or bool(self.query) or self.slugs is not None

    def keeps(self, slug: str, name: str, tags: tuple[str, ...]) -> bool:
        return ((self.tag is None or self.tag in tags) and (not self.query or matches(self.query, slug, name, tags))
                and (self.slugs is None or slug in self.slugs))


def page_of_lines(read: StatusLines, now: datetime, wanted: CheckStatus | None, page: int, per_page: int,
                  keep: Filter) -> StatusPage:
    """The same page from every check's status line (a store without a writer: `heartwatch checks --db`'s,
    PostgreSQL's read-only one): O(checks), as the overview was before the index."""
    index = StatusIndex()
    with index.lock:
        lists: dict[CheckStatus, list[Item]] = {s: [] for s in SEVERITY}
        late = []
        names: dict[int, tuple[str, str, tuple[str, ...]]] = {}
        for cid, name, tags, paused, state, slug in read.lines:
            due = read.due.get(cid)
            status = status_of_parts(paused, state, now, None, None, down=cid in read.down)
            if due is not None and status in LATE_FROM and status_of_parts(
                    paused, state, now, due[0], due[1]) is CheckStatus.LATE:
                late.append(cid)
            item = (name.lower(), cid)
            index._grow(cid + 1)
            index._set(cid, item, status)
            index._tags.update(tags)
            names[cid] = (slug, name, tags)
            lists[status].append(item)
        index._groups = {s: SortedList(items) for s, items in lists.items()}
        index.built = True
    found = index.page(late, wanted, page, per_page, (lambda cid: keep.keeps(*names[cid])) if keep else None)
    assert found is not None  # built above, and nothing else holds this index
    return found
