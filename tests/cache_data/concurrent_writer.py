"""One of N processes writing its share of entries into one cache while reading everyone's.

usage: concurrent_writer.py CACHE_DIR INDEX N TOTAL START_FILE; prints "read <count>".
"""
import sys
import time
from pathlib import Path

from cache_data.helpers import make_entry, open_test_store

cache, index, n, total, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
Path(start.parent, f"ready-{index}").touch()
while not start.exists():
    time.sleep(0.01)
store = open_test_store(cache)
mine = [make_entry(f"concurrent-{k}") for k in range(index, total, n)]
read = 0
for entry in mine:
    written = store.write(entry)[1]
    assert written == ["local"], written
    reader = open_test_store(cache)  # no memory tier: every lookup reads the database
    for k in range(0, total, 7):
        read += reader.lookup(make_entry(f"concurrent-{k}").key) is not None
for entry in mine:
    assert open_test_store(cache).lookup(entry.key) is not None, entry.key
print("read", read)
