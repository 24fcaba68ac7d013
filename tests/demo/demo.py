"""The live migration demo, driven by tests/demo/run.sh.

Starts a source and a destination SecantusDB server, seeds a sample shop, runs mongomirror while a
write load runs on the source, waits for `Current lag from source: 0s`, stops the load, checks
that both sides hold the same documents byte for byte, and cleans everything up.
"""

import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, DESCENDING, MongoClient

MIRROR, SECANTUSD = sys.argv[1], sys.argv[2]
SYSTEM_DBS = {"admin", "local", "config"}
children = []


def say(msg):
    print(f"== {msg}", flush=True)


def start_server(label):
    proc = subprocess.Popen(
        [sys.executable, SECANTUSD, "--host", "127.0.0.1", "--port", "0", "--storage-path", ":memory:",
         "--cache-size", "128M", "--oplog-max-entries", "500000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    children.append(proc)
    deadline = time.time() + 60
    for line in proc.stderr:
        if "listening on" in line:
            port = int(line.rsplit(":", 1)[1])
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            say(f"{label} server listening on 127.0.0.1:{port}")
            return port
        if time.time() > deadline:
            break
    raise SystemExit(f"the {label} server did not start")


def seed(client):
    rnd = random.Random(7)
    shop = client.shop
    shop.customers.insert_many(
        [{"_id": i, "email": f"c{i}@example.com", "name": f"Customer {i}", "since": time.time() - i,
          "tags": ["new"] if i % 3 else ["vip", "early"]} for i in range(5_000)])
    shop.customers.create_index([("email", ASCENDING)], unique=True)
    for start in range(0, 40_000, 10_000):
        shop.orders.insert_many(
            [{"customer": rnd.randrange(5_000), "total": round(rnd.uniform(1, 500), 2),
              "items": [{"sku": f"sku-{rnd.randrange(900)}", "qty": rnd.randrange(1, 4)} for _ in range(3)],
              "status": rnd.choice(["new", "paid", "shipped"])} for _ in range(start, start + 10_000)])
    shop.orders.create_index([("customer", ASCENDING), ("total", DESCENDING)])
    shop.create_collection("paid_orders", viewOn="orders", pipeline=[{"$match": {"status": "paid"}}])
    client.analytics.events.insert_many(
        [{"kind": rnd.choice(["view", "click", "buy"]), "at": i, "payload": "x" * rnd.randrange(10, 400)}
         for i in range(30_000)])
    client.analytics.events.create_index([("kind", ASCENDING), ("at", ASCENDING)])
    say("seeded shop.customers (5,000), shop.orders (40,000), shop.paid_orders (view), analytics.events (30,000)")


def write_load(client, stop, counter):
    rnd = random.Random(11)
    while not stop.is_set():
        n = rnd.randrange(100)
        if n < 50:
            client.shop.orders.insert_one({"customer": rnd.randrange(5_000), "total": 1.0, "status": "new"})
        elif n < 85:
            client.shop.customers.update_one({"_id": rnd.randrange(5_000)},
                                             {"$inc": {"visits": 1}, "$set": {"seen": time.time()}})
        else:
            client.analytics.events.delete_one({"at": rnd.randrange(30_000)})
        counter[0] += 1
        time.sleep(0.005)


class Mirror:
    """mongomirror as a child process whose log lines are echoed and watched."""

    def __init__(self, args):
        self.proc = subprocess.Popen([MIRROR, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        children.append(self.proc)
        self.lines = []
        self.done = False
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            sys.stdout.write("   | " + line)
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for(self, text, timeout, after=0):
        """Waits for a line containing `text` among lines[after:]; returns its index."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    if text in self.lines[i]:
                        return i
                after = len(self.lines)
                left = deadline - time.time()
                if left <= 0 or self.done:
                    break
                self.cond.wait(min(left, 0.5))
        raise SystemExit(f"mongomirror did not print {text!r} within {timeout}s (exit code {self.proc.poll()})")


def namespaces(client):
    for db in sorted(set(client.list_database_names()) - SYSTEM_DBS):
        for info in sorted(client[db].list_collections(), key=lambda c: c["name"]):
            yield db, info


def differences(src, dst):
    """Lists what differs between the two deployments (empty when they match)."""
    out = []
    src_ns = {(db, c["name"]): c for db, c in namespaces(src)}
    dst_ns = {(db, c["name"]): c for db, c in namespaces(dst)}
    for key in sorted(set(src_ns) ^ set(dst_ns)):
        out.append(f"{key[0]}.{key[1]} exists on one side only")
    for db, name in sorted(set(src_ns) & set(dst_ns)):
        if src_ns[(db, name)].get("type") == "view":
            continue
        opts = dict(document_class=RawBSONDocument)
        a = src.get_database(db, codec_options=src.codec_options.with_options(**opts))[name]
        b = dst.get_database(db, codec_options=dst.codec_options.with_options(**opts))[name]
        for x, y in zip(a.find().sort("_id", 1), b.find().sort("_id", 1)):
            if x.raw != y.raw:
                out.append(f"{db}.{name}: documents differ at _id {x['_id']!r}")
                break
        if a.estimated_document_count() != b.estimated_document_count():
            out.append(f"{db}.{name}: {a.estimated_document_count()} vs {b.estimated_document_count()} documents")
        ia = sorted(i["name"] for i in a.list_indexes())
        ib = sorted(i["name"] for i in b.list_indexes())
        if ia != ib:
            out.append(f"{db}.{name}: indexes {ia} vs {ib}")
    return out


def main():
    started = time.time()
    src_port, dst_port = start_server("source"), start_server("destination")
    src = MongoClient(f"mongodb://127.0.0.1:{src_port}/?directConnection=true")
    dst = MongoClient(f"mongodb://127.0.0.1:{dst_port}/?directConnection=true")
    seed(src)

    stop, counter = threading.Event(), [0]
    load = threading.Thread(target=write_load, args=(src, stop, counter), daemon=True)
    load.start()
    say("write load running on the source; starting mongomirror")
    with tempfile.TemporaryDirectory() as work:
        mirror = Mirror(["--host", f"secantus/127.0.0.1:{src_port}", "--destination", f"127.0.0.1:{dst_port}",
                         "-j", "2", "--bookmarkFile", f"{work}/mongomirror.bookmark"])
        mirror.wait_for("Current lag from source: 0s", timeout=90)
        stop.set()
        load.join()
        say(f"caught up while the load ran; stopped the load after {counter[0]} writes (cutover begins)")
        mark = len(mirror.lines)
        mirror.wait_for("Current lag from source: 0s", timeout=60, after=mark)
        deadline = time.time() + 30
        while (diff := differences(src, dst)) and time.time() < deadline:
            time.sleep(0.5)
        mirror.proc.send_signal(signal.SIGINT)
        code = mirror.proc.wait(timeout=30)
        say(f"mongomirror stopped with exit code {code}")
    if diff or code != 0:
        for d in diff:
            print(f"   DIFFERENT: {d}")
        raise SystemExit("demo FAILED: source and destination differ")
    total = sum(src[db][c["name"]].estimated_document_count() for db, c in namespaces(src) if c.get("type") != "view")
    say(f"demo OK: source and destination match byte for byte ({total} documents) in {time.time() - started:.0f}s")


if __name__ == "__main__":
    try:
        main()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
