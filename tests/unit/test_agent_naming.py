from pathlib import Path

from pipeline.agents.naming import branch_name, merge_path, worktree_path


def test_an_items_branch_and_worktree_are_named_after_project_and_number() -> None:
    data = Path("/data")
    assert branch_name("myapp", 12) == "musher/myapp-12"
    assert worktree_path(data, "myapp", 12) == Path("/data/worktrees/myapp/12")
    assert merge_path(data, "myapp", 12) == Path("/data/worktrees/myapp/merge-12")
