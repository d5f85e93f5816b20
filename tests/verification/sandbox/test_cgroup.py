"""Which whole-tree bound applies: a run's own cgroup v2 where one can be made, else the run's uid
(RLIMIT_NPROC) times RLIMIT_AS; the result says which."""

from __future__ import annotations

import pytest

from verification import sandbox


def _cgroup_v2_usable() -> bool:
    own = sandbox._own_cgroup()
    try:
        with open(f"{own}/cgroup.controllers") as handle:
            return own is not None and {"memory", "pids"} <= set(handle.read().split())
    except (OSError, TypeError):
        return False


def test_a_runs_cgroup_gets_the_limits(tmp_path):
    """The files a cgroup v2 parent offers, imitated in a directory: the run's cgroup is created
    with memory.max, pids.max and no swap, and the parent's controllers enabled."""
    parent = tmp_path / "delegated"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpu memory pids\n")
    (parent / "cgroup.subtree_control").write_text("")
    config = {"cgroup_parent": str(parent), "memory_mb": 256, "processes": 12}
    path = sandbox._make_cgroup(config)
    assert path is not None and path.startswith(str(parent))
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert open(f"{path}/memory.max").read() == str(256 * 1024 * 1024)
    assert open(f"{path}/pids.max").read() == "12"


def test_without_the_controllers_no_cgroup_is_made(tmp_path):
    parent = tmp_path / "delegated"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpu hugetlb\n")
    assert sandbox._make_cgroup({"cgroup_parent": str(parent), "memory_mb": 256, "processes": 12}) is None
    assert list(parent.iterdir()) == [parent / "cgroup.controllers"]


def test_the_result_says_which_bound_applied():
    result = sandbox.run_python("pass\n", sandbox.Limits(timeout_s=4.0))
    applied = [name for name in ("cgroup_v2", "rlimit_tree_bound") if name in result.isolation]
    assert applied == (["cgroup_v2"] if _cgroup_v2_usable() else ["rlimit_tree_bound"])


@pytest.mark.skipif(not _cgroup_v2_usable(), reason="no writable cgroup v2 with memory and pids here")
def test_under_cgroup_v2_the_whole_tree_shares_one_memory_limit():
    limits = sandbox.Limits(timeout_s=8.0, memory_mb=128, processes=16)
    program = ("import os, time\n"
               "for _ in range(4):\n"
               "    if os.fork() == 0:\n"
               "        hold = b'x' * (60 * 1024 * 1024)\n"
               "        time.sleep(3)\n"
               "        os._exit(0)\n"
               "for _ in range(4):\n"
               "    os.wait()\n")
    result = sandbox.run_python(program, limits)
    # Four children of 60 MiB each fit their own address spaces, not the tree's 128 MiB together.
    assert "cgroup_v2" in result.isolation and result.status == sandbox.FAILED, result
