"""The README's 15-line "drive the env with your own policy" example runs as printed."""

from __future__ import annotations

import contextlib
import io

README_EXAMPLE = '''\
import gymnasium, torch, envs  # `import envs` registers rldiff/ARVideoDenoising-v0
from rldiff.flow import ode_step
env = gymnasium.make("rldiff/ARVideoDenoising-v0")  # CPU default: Sprites-Drag 32x32 x 8 frames, PixelCodec, LK hinge reward

def my_policy(obs):  # observation dict -> the next latent [C, H, W] of the current frame
    x = obs["snapshot"][obs["frame_index"].item()]  # x_{m,n}; snapshot = clean | current | initial noise
    v = torch.zeros_like(x)  # your velocity model here, e.g. v(x, obs["timestep"], control)
    return ode_step(x, v, obs["sigma"], obs["sigma_next"])

obs, info = env.reset(seed=0)  # draws a control and all initial noise from the seed
total, terminated = 0.0, False
while not terminated:  # F * N = 8 * 3 decisions, in frame order
    obs, reward, terminated, truncated, info = env.step(my_policy(obs))
    total += reward  # non-zero only when a frame completes; components in info["reward_terms"]
print(f"return {total:.4f}")
'''


def test_readme_example_runs():
    assert len(README_EXAMPLE.splitlines()) == 15
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(README_EXAMPLE, "README example", "exec"), namespace)
    # v = 0 keeps every frame at its initial noise: frame 0 is tracked from its own query points (hinge = lam * alpha
    # = 0.01), and the return lies in [0.01, 8 * 0.01]
    assert 0.01 - 1e-6 <= namespace["total"] <= 0.08 + 1e-6
    assert out.getvalue().startswith("return ")
    assert int(namespace["obs"]["frame_index"].item()) == 7 and int(namespace["obs"]["step_index"].item()) == 3
