"""The studio in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
selenium) clicks through each tab of a studio served on a free 127.0.0.1 port with tiny networks, as a user would.

Chromium's fake camera plays a small clip made here for the Live tab. Skipped, saying why, where Chromium, its
driver, selenium or Gradio are missing (CI installs them: .ci/run).
"""

from __future__ import annotations

import io
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
)
missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not found]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"no {' or '.join(missing)} here: apt-get install chromium chromium-driver (.ci/run does)"
)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
pytest.importorskip("gradio", reason="Gradio is not installed: pip install -e '.[studio]'")

from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

import mlx_style  # noqa: E402, F401  (fast BLAS before mlx.core)
from mlx_style.api import load_style, stylize  # noqa: E402
from mlx_style.studio.config import StudioConfig  # noqa: E402
from test_studio import TRAIN_DEFAULTS, make_weights, photo  # noqa: E402
from train_helpers import make_workspace  # noqa: E402
from scripts.bench.studio_screenshots import start_webcam, wait_for  # noqa: E402


@dataclass
class Served:
    url: str
    studio: object
    root: Path
    workspace: dict


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from mlx_style.studio.app import launch

    root = tmp_path_factory.mktemp("studio")
    (root / "no_builtins").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mlx_style.io.registry.BUILTIN_DIR", root / "no_builtins")
        make_weights(root / "weights")
        workspace = make_workspace(root / "ws", images=6)
        config = StudioConfig(
            port=0,
            roots=(str(root),),
            weights_dir=str(root / "weights"),
            runs_dir=str(root / "runs"),
            vgg=str(workspace["vgg"]),
            open_browser=False,
            work_dir=str(root / "work"),
            train_defaults=TRAIN_DEFAULTS,
        )
        demo, studio, url = launch(config)
        try:
            yield Served(url, studio, root, workspace)
        finally:
            studio.close()
            demo.close()


def y4m_clip(path: Path, frames: int = 30, size=(64, 48)) -> Path:
    """A clip for Chromium's fake camera: YUV4MPEG2, 4:2:0, a bright bar moving over a gradient."""
    W, H = size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F10:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            y = np.tile(np.linspace(30, 220, W, dtype=np.float32), (H, 1))
            y[:, (2 * i) % W : (2 * i) % W + 8] = 250
            f.write(b"FRAME\n" + y.astype(np.uint8).tobytes())
            chroma = np.full((H // 2, W // 2), 90, np.uint8).tobytes()
            f.write(chroma + np.full((H // 2, W // 2), 170, np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def browser(served, tmp_path_factory):
    clip = y4m_clip(tmp_path_factory.mktemp("camera") / "clip.y4m")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1400",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip(f"Chromium does not start here: {str(exc).splitlines()[0]}")
    driver.get(served.url)
    wait_for(lambda: driver.find_elements(By.ID, "stylise-go"), "the page to load")
    yield driver
    driver.quit()


def open_tab(driver, name: str) -> None:
    tab = next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == name)
    tab.click()
    time.sleep(0.3)


def fetch(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return np.asarray(Image.open(io.BytesIO(answer.read())).convert("RGB"))


def set_number(driver, element_id: str, value) -> None:
    """Type into the number box of a slider or a number field (as a user does), then leave it."""
    box = driver.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)
    time.sleep(0.3)


def choose(driver, element_id: str, label: str) -> None:
    """Pick ``label`` in a dropdown: open it, click the option."""
    driver.find_element(By.CSS_SELECTOR, f"#{element_id} input").click()
    option = wait_for(
        lambda: [
            li
            for li in driver.find_elements(By.CSS_SELECTOR, "[data-testid=dropdown-option]")
            if li.get_attribute("aria-label") == label and li.is_displayed()
        ],
        f"the option {label}",
    )[0]
    option.click()
    time.sleep(0.3)


def download(driver, element_id: str, suffix: str) -> np.ndarray:
    links = wait_for(
        lambda: [
            a.get_attribute("href")
            for a in driver.find_elements(By.CSS_SELECTOR, f"#{element_id} a")
            if (a.get_attribute("href") or "").endswith(suffix)
        ],
        f"a {suffix} in {element_id}",
    )
    return fetch(links[-1])


def error_shown(driver, text: str):
    return [e for e in driver.find_elements(By.XPATH, f"//*[contains(text(), {text!r})]") if e.is_displayed()]


def stylised(driver, served, previous: list[str]) -> np.ndarray:
    """Click Stylise and wait for a new result to download."""
    driver.find_element(By.ID, "stylise-go").click()
    links = wait_for(
        lambda: [
            h
            for a in driver.find_elements(By.CSS_SELECTOR, "#stylise-downloads a")
            if (h := a.get_attribute("href") or "").endswith(".png") and h not in previous
        ],
        "the stylised photo",
    )
    previous.append(links[-1])
    return fetch(links[-1])


def test_stylise_a_photo_blend_and_strength(browser, served):
    driver = browser
    open_tab(driver, "Stylise")
    source = photo(served.root / "upload" / "holiday.png", (48, 64))
    image = np.asarray(Image.open(source))
    driver.find_element(By.CSS_SELECTOR, "#stylise-files input[type=file]").send_keys(str(source))
    wait_for(lambda: "holiday" in driver.find_element(By.ID, "stylise-files").text, "the upload")
    tile = wait_for(
        lambda: [t for t in driver.find_elements(By.CSS_SELECTOR, "#stylise-gallery button") if "tiny_a" in t.text],
        "the tiny_a tile",
    )
    tile[0].click()
    set_number(driver, "stylise-size", 64)
    seen: list[str] = []
    first = stylised(driver, served, seen)
    expected = stylize(load_style(served.root / "weights" / "tiny_a.safetensors"), image, size=64)
    assert np.array_equal(first, expected)  # what the page shows is the library's result
    assert np.abs(first.astype(int) - image).mean() > 10
    assert len(driver.find_elements(By.CSS_SELECTOR, "#stylise-compare img")) == 2  # before and after
    choose(driver, "stylise-blend-with", "tiny_b (weights)")
    blended = stylised(driver, served, seen).astype(float)
    other = stylize(load_style(served.root / "weights" / "tiny_b.safetensors"), image, size=64).astype(float)
    assert np.abs(blended - (first + other) / 2).max() <= 1.0  # half of each style (blend 0.5)
    choose(driver, "stylise-blend-with", "(none)")
    set_number(driver, "stylise-strength", 0.5)
    weaker = stylised(driver, served, seen).astype(float)
    assert np.abs(weaker - (first.astype(float) + image) / 2).max() <= 1.0  # half style, half photo


def test_stylise_a_video_with_progress(browser, served):
    from test_video import make_clip

    driver = browser
    open_tab(driver, "Stylise")
    (served.root / "upload").mkdir(exist_ok=True)
    clip = make_clip(served.root / "upload" / "walk.mp4", frames=8, size=(32, 24))
    for clear in driver.find_elements(By.CSS_SELECTOR, "#stylise-files button[aria-label=Clear]"):
        clear.click()  # the photo of the test before
    driver.find_element(By.CSS_SELECTOR, "#stylise-files input[type=file]").send_keys(str(clip))
    wait_for(lambda: "walk" in driver.find_element(By.ID, "stylise-files").text, "the video upload")
    driver.find_element(By.ID, "stylise-go").click()
    wait_for(lambda: "8 frames stylised" in driver.find_element(By.ID, "stylise-status").text, "the video")
    assert wait_for(
        lambda: [v for v in driver.find_elements(By.CSS_SELECTOR, "#stylise-video video") if v.get_attribute("src")],
        "the video player",
    )
    assert any(
        h.endswith(".mp4")
        for h in (a.get_attribute("href") or "" for a in driver.find_elements(By.CSS_SELECTOR, "#stylise-downloads a"))
    )


def test_live_webcam_frames_come_back_stylised(browser, served):
    driver = browser
    open_tab(driver, "Live")
    camera = start_webcam(driver)  # the automatic size (the default): the slider's size is not used
    stats = wait_for(
        lambda: [t for t in [driver.find_element(By.ID, "live-stats").text] if "fps" in t], "frames to come back"
    )[0]
    assert "ms a frame" in stats and "(automatic)" in stats  # the size the cam would pick, by default
    src = wait_for(
        lambda: [
            i.get_attribute("src")
            for i in driver.find_elements(By.CSS_SELECTOR, "#live-out img")
            if (i.get_attribute("src") or "").startswith("http")
        ],
        "a stylised frame",
    )[0]
    frame = fetch(src)
    assert frame.shape == (48, 64, 3)  # the camera's size
    grey = frame.astype(float).mean(axis=2)
    assert np.abs(frame[..., 0].astype(float) - grey).mean() > 3  # a style, not the camera's near-grey frame
    wait_for(
        lambda: served.studio.sessions and max(s.live.frames for s in served.studio.sessions.values()) >= 3,
        "three frames through the network",
    )
    for button in camera.find_elements(By.CSS_SELECTOR, "button"):
        if button.text.strip() == "Stop":
            button.click()


def test_train_a_style_and_find_it_in_the_gallery(browser, served):
    driver = browser
    open_tab(driver, "Train")
    data = driver.find_element(By.CSS_SELECTOR, "#train-data textarea, #train-data input")
    data.send_keys("/etc")
    name = driver.find_element(By.CSS_SELECTOR, "#train-name textarea, #train-name input")
    name.send_keys(Keys.CONTROL, "a")
    name.send_keys("trained")
    driver.find_element(By.CSS_SELECTOR, "#train-paintings input[type=file]").send_keys(str(served.workspace["style"]))
    wait_for(lambda: "style" in driver.find_element(By.ID, "train-paintings").text, "the painting upload")
    driver.find_element(By.ID, "train-start").click()
    wait_for(lambda: error_shown(driver, "outside the folders"), "the refusal of /etc")
    assert not (served.root / "runs" / "trained").exists()
    data.send_keys(Keys.CONTROL, "a")
    data.send_keys("ws/data")
    next(b for b in driver.find_elements(By.CSS_SELECTOR, "button") if "Full settings" in b.text).click()
    for field, value in (
        ("train-image-size", 32),
        ("train-batch-size", 2),
        ("train-iters", 3),
        ("train-width", 4),
        ("train-blocks", 1),
    ):
        wait_for(lambda: driver.find_element(By.CSS_SELECTOR, f"#{field} input").is_displayed(), field)
        set_number(driver, field, value)
    driver.find_element(By.ID, "train-start").click()
    wait_for(lambda: "done" in driver.find_element(By.ID, "train-status").text, "the run to finish", 90)
    run = served.root / "runs" / "trained"
    assert (served.root / "weights" / "trained.safetensors").exists()
    assert list((run / "checkpoints").glob("*.safetensors")) and (run / "log.jsonl").exists()
    curve = wait_for(
        lambda: [
            i.get_attribute("src")
            for i in driver.find_elements(By.CSS_SELECTOR, "#train-curve img")
            if i.get_attribute("src")
        ],
        "the loss curve",
    )
    assert fetch(curve[0]).shape[1] > 300
    assert wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#train-samples img"), "the sample grids")
    driver.find_element(By.ID, "train-start").click()  # again (another tab would do the same): refused, run kept
    wait_for(lambda: error_shown(driver, "already has a run"), "the refusal of a second run")
    open_tab(driver, "Stylise")
    wait_for(lambda: "trained" in driver.find_element(By.ID, "stylise-gallery").text, "the new style in the gallery")


def test_styles_tab_shows_provenance_and_exports(browser, served):
    driver = browser
    open_tab(driver, "Styles")
    tile = wait_for(
        lambda: [t for t in driver.find_elements(By.CSS_SELECTOR, "#styles-gallery button") if "duo right" in t.text],
        "the duo right tile",
    )
    tile[0].click()
    wait_for(
        lambda: "duo (transformer, weights)" in driver.find_element(By.ID, "styles-details").text, "the style's details"
    )
    driver.find_element(By.ID, "styles-export").click()
    wait_for(
        lambda: [
            a
            for a in driver.find_elements(By.CSS_SELECTOR, "#styles-exported a")
            if (a.get_attribute("href") or "").endswith(".onnx")
        ],
        "the ONNX download",
    )
