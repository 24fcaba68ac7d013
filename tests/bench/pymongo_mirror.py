"""Copy one database to another server, then keep it in sync by replaying the oplog.

The script a user would write in an afternoon with PyMongo instead of running mongomirror; the
benchmark (`tests/bench/script.rs`, `bench --mode script`) runs it side by side with the tool.
It is deliberately plain, not optimised: default cursor batches, `insert_many` of 1000
documents, then a tailable cursor on `local.oplog.rs` replayed one entry at a time.

    python3 pymongo_mirror.py SOURCE_URI DESTINATION_URI DATABASE

It runs until interrupted.
"""

import signal
import sys

import pymongo
from pymongo.errors import BulkWriteError


# Stopped by SIGINT even when started with it ignored (a shell's background job passes the
# ignore on, and Python then keeps it): the default handler raises KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)


def log(message):
    print(message, file=sys.stderr, flush=True)


def main():
    source_uri, destination_uri, db_name = sys.argv[1:4]
    source = pymongo.MongoClient(source_uri)
    destination = pymongo.MongoClient(destination_uri)
    oplog = source.local["oplog.rs"]

    # Remember where the oplog is before copying, so nothing written during the copy is lost.
    newest = oplog.find().sort("$natural", -1).limit(1).next()
    start = newest["ts"]

    log("initial sync starting")
    for name in source[db_name].list_collection_names():
        target = destination[db_name][name]
        batch = []
        for document in source[db_name][name].find():
            batch.append(document)
            if len(batch) == 1000:
                copy_batch(target, batch)
                batch = []
        if batch:
            copy_batch(target, batch)
        log(f"copied {name}")
    log("initial sync completed")

    cursor = oplog.find(
        {"ts": {"$gt": start}},
        cursor_type=pymongo.CursorType.TAILABLE_AWAIT,
        oplog_replay=True,
    )
    applied = 0
    while cursor.alive:
        for entry in cursor:
            if entry["ns"].startswith(db_name + "."):
                apply(destination, entry)
                applied += 1
    log(f"the oplog cursor died after {applied} entries")


def copy_batch(target, batch):
    try:
        target.insert_many(batch, ordered=False)
    except BulkWriteError as e:
        # A document inserted during the copy can be read twice; the oplog replay fixes it.
        if any(error["code"] != 11000 for error in e.details["writeErrors"]):
            raise


def apply(destination, entry):
    db_name, collection_name = entry["ns"].split(".", 1)
    collection = destination[db_name][collection_name]
    op = entry["op"]
    if op == "i":
        document = entry["o"]
        # Upsert: the copy may already hold a document inserted while it ran.
        collection.replace_one({"_id": document["_id"]}, document, upsert=True)
    elif op == "u":
        change = entry["o"]
        if change.get("$v") == 2:
            # The test server writes updates as change-stream style diffs.
            diff = change["diff"]
            update = {}
            if diff.get("updatedFields"):
                update["$set"] = diff["updatedFields"]
            if diff.get("removedFields"):
                update["$unset"] = {field: "" for field in diff["removedFields"]}
            for truncated in diff.get("truncatedArrays") or []:
                update.setdefault("$push", {})[truncated["field"]] = {
                    "$each": [],
                    "$slice": truncated["newSize"],
                }
            if update:
                collection.update_one(entry["o2"], update)
        else:
            collection.replace_one(entry["o2"], change, upsert=True)
    elif op == "d":
        collection.delete_one(entry["o"])
    # Commands (op "c") and no-ops ("n") are not needed for this data.


if __name__ == "__main__":
    main()
