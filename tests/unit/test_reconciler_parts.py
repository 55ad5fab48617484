"""Pure parts of the reconciler: the status merge patch and the run cache's echo detection."""

from __future__ import annotations

from seqflow.reconciler import RunCache, status_patch


def body(rv: str, **status) -> dict:
    return {"metadata": {"namespace": "ns", "name": "r", "resourceVersion": rv}, "status": status}


def apply_merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def test_status_patch_turns_old_into_new():
    old = {"phase": "Running", "output": {"a": 1, "b": 2}, "tasks": [{"n": 1}], "currentTask": "A", "retries": 0}
    new = {"phase": "Succeeded", "output": {"c": 3}, "tasks": [{"n": 1}, {"n": 2}], "retries": 0}
    patch = status_patch(old, new)
    assert apply_merge_patch(old, patch) == new
    assert patch["currentTask"] is None  # removed fields are nulled
    assert patch["output"] == {"a": None, "b": None, "c": 3}  # not merged into the old output
    assert "retries" not in patch  # unchanged fields are left out


def test_status_patch_writes_empty_object_and_new_keys():
    assert status_patch({}, {"output": {}, "retries": 0}) == {"output": {}, "retries": 0}
    old, new = {"output": {"a": 1}}, {"output": {}}
    assert apply_merge_patch(old, status_patch(old, new)) == new


def test_run_cache_skips_echo_of_own_write_but_takes_news():
    cache = RunCache()
    assert cache.observe(body("1", phase="Pending")) is True
    cache.wrote(body("2", phase="Running"))
    assert cache.observe(body("2", phase="Running")) is False  # our own write coming back
    assert cache.get(("ns", "r"))["metadata"]["resourceVersion"] == "2"
    assert cache.observe(body("3", phase="Running")) is True  # someone else's change
    cache.drop(("ns", "r"))
    assert cache.get(("ns", "r")) is None
