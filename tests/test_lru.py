"""The LRU map behind the projection, sweep and app caches."""

import threading

import pytest

from genreg_core.lru import LRUCache


def test_the_least_recently_used_item_goes_first():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2
    cache.put("a", 10)  # overwriting refreshes too
    cache.put("d", 4)
    assert cache.get("c") is None and cache.get("a") == 10
    cache.pop("a")
    cache.pop("missing")
    assert cache.get("a") is None and len(cache) == 1


def test_concurrent_writers_never_exceed_the_bound():
    cache = LRUCache(8)

    def write(offset):
        for i in range(2000):
            cache.put((offset, i), i)
            cache.get((offset, i - 1))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 8


def test_a_cache_must_hold_something():
    with pytest.raises(ValueError, match="at least 1"):
        LRUCache(0)
