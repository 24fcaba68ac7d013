"""Starts a SecantusDB test server whose tailable oplog cursor loses nothing.

SecantusDB 0.7.0b3 answers a tailable `find` on `local.oplog.rs` in two steps: it runs the
initial query, and only afterwards records where the cursor's later `getMore`s continue (the
oplog's visible tail at that moment). Entries committed between the two are never returned by
that cursor. A real mongod has no such window, so under a concurrent writer a migration tool
that reopens its cursor (a restart, a network blip) would silently miss entries on the test
server and nowhere else.

This launcher closes the window, then runs the server exactly as `secantusd-py` does, with the
same command-line flags:

- the `find` command notes the oplog's visible tail *before* its initial query runs;
- the tailable cursor continues right after that point, and skips the entries its initial query
  had already returned (they were committed after the note, before the query finished).

The test harness (`tests/it/support/provision.rs`) and the demo (`tests/demo/run.sh`) start
every server through this file; the harness self-test `tailable_oplog_cursors_lose_nothing`
shows the loss on the unpatched server and its absence here. Nothing of it ships with
mongomirror, which is written for mongod.
"""

import sys
import threading

import bson
from secantus import cli, commands

# Entries of an initial batch kept for de-duplication; entries committed during one initial
# query are far fewer than this.
_RECENT_INITIAL = 50_000

_noted = threading.local()
_original_find = commands._HANDLERS["find"]


def _find(doc, ctx):
    """The `find` command, noting the oplog's visible tail before a tailable oplog query."""
    tails_oplog = ctx.db_name == "local" and doc.get("find") == "oplog.rs" and doc.get("tailable")
    _noted.seq = ctx.storage.oplog_visible_tail_seq() if tails_oplog else None
    try:
        return _original_find(doc, ctx)
    finally:
        _noted.seq = None


def _tailable_oplog_cursor(filter_, initial_docs, batch_size, ns, await_data, ctx):
    """A tailable oplog cursor that continues right after the noted point."""
    storage = ctx.storage
    noted = getattr(_noted, "seq", None)
    after = {"seq": storage.oplog_visible_tail_seq() if noted is None else noted}
    # Entries committed after the note may already be in the initial batch: each is skipped
    # once when the cursor reaches it.
    returned = {}
    for entry in initial_docs[-_RECENT_INITIAL:]:
        key = bson.encode(entry)
        returned[key] = returned.get(key, 0) + 1

    def produce():
        rows = storage.read_oplog(start_seq=after["seq"] + 1, limit=1000)
        if not rows:
            return []
        after["seq"] = rows[-1][0]
        fresh = []
        for _seq, entry in rows:
            if filter_ and not commands.matches(entry, filter_):
                continue
            key = bson.encode(entry) if returned else None
            if key is not None and returned.get(key):
                returned[key] -= 1
                continue
            fresh.append(entry)
        return fresh

    cursor_id = ctx.cursors.register_tailable(
        ns,
        produce,
        await_data=await_data,
        initial_remaining=initial_docs[batch_size:],
    )
    return {
        "cursor": {"firstBatch": initial_docs[:batch_size], "id": bson.Int64(cursor_id), "ns": ns},
        "ok": 1.0,
    }


commands._HANDLERS["find"] = _find
commands._find_tailable_oplog = _tailable_oplog_cursor

if __name__ == "__main__":
    sys.exit(cli.main())
