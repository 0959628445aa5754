"""Retake the studio screenshots in docs/: the Stylise tab (a photo in a built-in style, before/after), the Live
tab (Chromium's fake camera playing a clip) and, with ``--train-data``, the Train tab after a real quick-preview
run on that folder of photos (about 10 minutes on a 2-core CPU), with the package's real built-in styles.

    python -m scripts.bench.studio_screenshots --photo HOLDOUT/kodak_kodim18.png --clip fox.mp4 --out docs/ \
        --train-data content/train

Needs Debian's ``chromium`` and ``chromium-driver``, selenium and Gradio (the dev extra). The studio is served on a
free 127.0.0.1 port with empty weights and runs folders, so only the built-ins show.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)

TIMEOUT = 60.0


def wait_for(condition, what: str, timeout: float = TIMEOUT):
    """``condition()``'s first truthy value, polled; ``TimeoutError`` naming ``what`` after ``timeout`` s (the studio's
    browser tests use it too)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (StaleElementReferenceException, WebDriverException):
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_webcam(driver):
    """In the Live tab: choose the webcam and press Record (the studio's browser tests use it too); the camera box."""
    from selenium.webdriver.common.by import By

    camera = driver.find_element(By.ID, "live-cam")

    def button(match, what):
        return wait_for(lambda: [b for b in camera.find_elements(By.CSS_SELECTOR, "button") if match(b.text)], what)[0]

    button(lambda text: "Webcam" in text, "the webcam button").click()
    button(lambda text: text.strip() == "Record", "the record button").click()
    return camera


def y4m_from_video(video: Path, out: Path, frames: int, side: int) -> Path:
    """Chromium's fake camera reads YUV4MPEG2: the clip's first frames, resized so the longer side is ``side``."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    with open(out, "wb") as f:
        header = False
        for _ in range(frames):
            ok, frame = capture.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            scale = side / max(h, w)
            frame = cv2.resize(frame, (round(w * scale) // 2 * 2, round(h * scale) // 2 * 2))
            if not header:
                f.write(f"YUV4MPEG2 W{frame.shape[1]} H{frame.shape[0]} F15:1 Ip A1:1 C420jpeg\n".encode())
                header = True
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    capture.release()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photo", type=Path, required=True, help="the photo the Stylise tab shows")
    p.add_argument("--clip", type=Path, required=True, help="a video the fake camera plays in the Live tab")
    p.add_argument("--style", default="udnie", help="the built-in style the Stylise tab shows")
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--train-data", type=Path, help="photos for a quick-preview run in the Train tab (default: no run)")
    p.add_argument("--train-style", default="the_shipwreck_of_the_minotaur", help="the built-in painting it learns")
    args = p.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from mlx_style.studio.app import launch
    from mlx_style.studio.config import StudioConfig

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        photo = root / args.photo.name
        shutil.copy(args.photo, photo)
        config = StudioConfig(
            port=0,
            roots=(str(root),) + ((str(args.train_data.resolve()),) if args.train_data else ()),
            weights_dir=str(root / "weights"),
            runs_dir=str(root / "runs"),
            open_browser=False,
            work_dir=str(root / "work"),
        )
        demo, studio, url = launch(config)
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        clip = y4m_from_video(args.clip, root / "clip.y4m", 90, 320)
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1400,1100",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.get(url)
            wait_for(lambda: driver.find_elements(By.ID, "stylise-go"), "the page")

            def tab(name):
                next(
                    b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == name
                ).click()
                time.sleep(0.5)

            tab("Stylise")
            driver.find_element(By.CSS_SELECTOR, "#stylise-files input[type=file]").send_keys(str(photo))
            wait_for(lambda: photo.stem in driver.find_element(By.ID, "stylise-files").text, "the upload")
            wait_for(
                lambda: [
                    t for t in driver.find_elements(By.CSS_SELECTOR, "#stylise-gallery button") if args.style in t.text
                ],
                f"the {args.style} tile",
            )[0].click()
            driver.find_element(By.ID, "stylise-go").click()
            wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#stylise-compare img")) == 2, "the result")
            time.sleep(1.0)
            driver.save_screenshot(str(args.out / "studio_stylise.png"))

            tab("Live")
            start_webcam(driver)
            wait_for(lambda: "fps" in driver.find_element(By.ID, "live-stats").text, "frames to come back")
            wait_for(
                lambda: studio.sessions and max(s.live.frames for s in studio.sessions.values()) >= 8, "eight frames"
            )
            driver.save_screenshot(str(args.out / "studio_live.png"))
            shots = ["studio_stylise.png", "studio_live.png"]

            if args.train_data:
                driver.get(url)  # a fresh page: the webcam stream stops and leaves the CPU to the run
                wait_for(lambda: driver.find_elements(By.ID, "stylise-go"), "the page")
                tab("Train")
                boxes = driver.find_element(By.ID, "train-builtin").find_elements(By.CSS_SELECTOR, "label")
                next(b for b in boxes if b.text.strip() == args.train_style).click()
                data = driver.find_element(By.CSS_SELECTOR, "#train-data textarea, #train-data input")
                data.clear()
                data.send_keys(str(args.train_data.resolve()))
                name = driver.find_element(By.CSS_SELECTOR, "#train-name textarea, #train-name input")
                name.clear()
                name.send_keys("shipwreck_preview")
                driver.find_element(By.ID, "train-start").click()
                wait_for(lambda: "done" in driver.find_element(By.ID, "train-status").text, "the run to finish", 1800)
                wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#train-samples img"), "the sample grids")
                time.sleep(2.0)
                driver.save_screenshot(str(args.out / "studio_train.png"))
                shots.append("studio_train.png")
        finally:
            driver.quit()
            studio.close()
            demo.close()
    for name in shots:
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
