"""README.md stays true: its Python snippets run as printed, its commands match .ci/run, its links exist."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_the_core_api_and_two_extend_snippets():
    assert len(SNIPPETS) == 3
    assert "grpo_loss" in SNIPPETS[0] and "gymnasium.make" in SNIPPETS[1] and "FrameReward" in SNIPPETS[2]


@pytest.mark.parametrize("index", range(3))
def test_readme_snippet_runs_as_printed(index):
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(SNIPPETS[index], f"README snippet {index}", "exec"), namespace)
    if index == 0:
        assert namespace["out"]["ratio_mean"] == 1.0 and namespace["mask"].sum() == 8  # on-policy ratio 1; one step per frame
    if index == 1:
        # 8 frames x 3 steps; the return is the trajectory increments (they telescope to the last hinge, in [0, 1])
        # plus 0.7 log quality per frame, each log at least log(1e-4): the total lies in [8 * 0.7 * log(1e-4), 1]
        assert -51.6 <= namespace["total"] <= 1.0 + 1e-6
        assert int(namespace["obs"]["frame_index"].item()) == 7 and namespace["env"].unwrapped.world.closed
        assert out.getvalue().startswith("return ")
    if index == 2:
        assert out.getvalue().strip() == "torch.Size([2, 8])"


def test_readme_test_command_is_what_ci_runs_and_links_exist():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", README)
    assert len(commands) == 2 and commands[1] in ci and commands[0].endswith("python examples/ar_drag_grpo.py")
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        assert (ROOT / link).exists(), link
