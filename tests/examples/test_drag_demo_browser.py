"""The drag demo as a user meets it: ``python examples/drag_demo.py`` as a subprocess, then a real browser.

The browser is Debian's ``chromium`` driven headless by ``selenium`` through the system
``chromedriver`` (nothing downloaded; ``.ci/run`` installs both). It draws a path from a
sprite with the mouse, presses Start, waits for the clip's frames and saves a screenshot in
the demo's run directory. Against a demo you started yourself:
``python tests/examples/test_drag_demo_browser.py http://127.0.0.1:8000/ screenshot.png``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "drag_demo.py"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CLIP = 8  # latent frames of the bundled world's clip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo on a free loopback port: (url, run directory)."""
    run_dir = tmp_path_factory.mktemp("drag_demo") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "serve.port=0", "serve.scenes=4", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url, lines = None, []
    deadline = time.monotonic() + 180
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        url = match.group(1) if match else None
    if url is None:
        proc.kill()
        pytest.fail("the demo printed no URL:\n" + "".join(lines)[-3000:])
    yield url, run_dir
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_one_command_serves_the_page_on_loopback(demo):
    url, run_dir = demo
    page = urllib.request.urlopen(url, timeout=30).read().decode()
    assert '<canvas id="draw"' in page and "/static/app.js" in page
    assert "http" not in re.sub(r'href="/static|src="/static', "", page).split("<body>")[1]  # nothing fetched from outside
    info = json.loads(urllib.request.urlopen(url + "api/info", timeout=30).read())
    assert info["clip_frames"] == CLIP and len(info["scenes"]) == 4 and info["height"] == info["width"] == 32
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def drag_and_watch(url: str, screenshot: Path, frames: int = CLIP, timeout: float = 180.0) -> dict:
    """Open the page headless, drag scene 0's first sprite by 0.3 of the width, Start, wait for ``frames`` frames, save a screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, timeout)
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("ready"))
        start = driver.execute_script("return window.demo.info.scenes[0].starts[0]")
        canvas = driver.find_element(By.ID, "draw")
        size = canvas.size["width"]
        x0, y0 = (start[0] - 0.5) * size, (start[1] - 0.5) * size  # offsets from the canvas centre
        dx = (0.3 if start[0] < 0.5 else -0.3) * size  # toward the side with room
        actions = ActionChains(driver).move_to_element_with_offset(canvas, int(x0), int(y0)).click_and_hold()
        for _ in range(6):
            actions.move_by_offset(int(dx / 6), 0)
        actions.release().perform()
        paths = driver.execute_script("return window.demo.paths")
        driver.find_element(By.ID, "start").click()
        wait.until(lambda d: int(d.execute_script("return document.body.dataset.frames || '0'")) >= frames)
        stats = driver.find_element(By.ID, "stats").text
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        return {"paths": paths, "stats": stats, "status": driver.find_element(By.ID, "status").text}
    finally:
        driver.quit()


def test_a_browser_draws_a_path_and_watches_the_frames(demo):
    pytest.importorskip("selenium", reason="pip install selenium (the test extra)")
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMEDRIVER)):
        if os.environ.get("CI"):  # .ci/run installs them: a CI run without them is a broken setup, not a skip
            pytest.fail("CI: Debian's chromium and chromium-driver are missing although .ci/run installs them")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)")
    url, run_dir = demo
    out = drag_and_watch(url, run_dir / "screenshot.png")
    assert len(out["paths"]) == 1 and len(out["paths"][0]) >= 3, out["paths"]
    assert abs(out["paths"][0][-1][0] - out["paths"][0][0][0]) > 0.25  # the mouse drag became the path
    assert re.search(r"first frame: \d+\.\d+ s .*fps: \d+\.\d .*frames: \d+ .*control version: 1", out["stats"]), out["stats"]
    assert (run_dir / "screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


if __name__ == "__main__":
    print(drag_and_watch(sys.argv[1], Path(sys.argv[2])))
