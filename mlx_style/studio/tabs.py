"""The four tabs of the studio's page, each a layout of Gradio components wired to ``server``'s handlers."""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from mlx_style.studio.app import ERRORS, Picker, page_error, style_picker
from mlx_style.studio.media import Settings
from mlx_style.studio.server import Choice, Studio
from mlx_style.studio.styles import FORMATS
from mlx_style.studio.training import PRESETS

POLL_SECONDS = 0.5  # between progress lines of a video
SIZES = dict(minimum=64, maximum=1536, step=32)  # the processing size (longer side the network runs at)


def choice_of(key, blend_with, blend, picture) -> Choice:
    return Choice(key or "", blend_with or "", float(blend or 0.0), picture or None)


def settings_of(size, keep, strength) -> Settings:
    return Settings(int(size) if size else None, bool(keep), float(strength))


def stylise_tab(studio: Studio) -> Picker:
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(
                label="Photos or a video",
                file_count="multiple",
                file_types=["image", "video"],
                elem_id="stylise-files",
                height=140,
            )
            picker = style_picker(studio, "stylise")
            with gr.Row():
                strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength", elem_id="stylise-strength")
                size = gr.Slider(
                    value=512, label="Processing size", info="smaller: bigger strokes", **SIZES, elem_id="stylise-size"
                )
            keep = gr.Checkbox(label="Keep the photo's colours", elem_id="stylise-keep")
            with gr.Row():
                go = gr.Button("Stylise", variant="primary", elem_id="stylise-go")
                cancel = gr.Button("Cancel the video", elem_id="stylise-cancel")
        with gr.Column(scale=3):
            compare = gr.ImageSlider(
                label="Before / after", elem_id="stylise-compare", type="numpy", max_height=520, format="png"
            )
            status = gr.Markdown(elem_id="stylise-status", elem_classes="status-line")
            results = gr.Gallery(
                label="Every photo",
                columns=4,
                height=200,
                elem_id="stylise-results",
                format="png",
                object_fit="contain",
                visible=False,
            )
            video = gr.Video(label="Stylised video", elem_id="stylise-video", height=300)
            downloads = gr.File(label="Download", file_count="multiple", elem_id="stylise-downloads")

    def run(uploads, key, blend_with, blend, picture, strength, size, keep, request: gr.Request):
        try:
            photos, job = studio.stylise(
                request.session_hash,
                uploads or [],
                choice_of(key, blend_with, blend, picture),
                settings_of(size, keep, strength),
            )
        except ERRORS as exc:
            raise page_error(exc) from None
        compare_value = (photos[0].before, photos[0].after) if photos else None
        files_out = [str(p.path) for p in photos]
        line = f"{len(photos)} photo{'s' if len(photos) != 1 else ''} stylised" if photos else ""
        every = gr.update(value=[(p.after, p.name) for p in photos], visible=len(photos) > 1)
        yield compare_value, every, None, files_out or None, line
        if job is None:
            return
        while not job.finished:
            time.sleep(POLL_SECONDS)
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), job.progress()[1]
        if job.state == "done":
            files_out.append(str(job.target))
        yield (
            gr.skip(),
            gr.skip(),
            str(job.target) if job.state == "done" else None,
            files_out or None,
            job.progress()[1],
        )

    go.click(
        run,
        [files, *picker.inputs(), strength, size, keep],
        [compare, results, video, downloads, status],
        concurrency_limit=4,
        show_progress="minimal",
    )

    def cancelled(request: gr.Request):
        return studio.cancel_video(request.session_hash)

    cancel.click(cancelled, None, status, concurrency_limit=None)
    return picker


def live_tab(studio: Studio) -> Picker:
    with gr.Row():
        with gr.Column(scale=2):
            camera = gr.Image(
                sources=["webcam"],
                streaming=True,
                type="numpy",
                label="Your webcam",
                elem_id="live-cam",
                webcam_options=gr.WebcamOptions(mirror=True),
                height=300,
            )
            picker = style_picker(studio, "live")
            with gr.Row():
                strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength", elem_id="live-strength")
                size = gr.Slider(value=320, label="Processing size", **SIZES, elem_id="live-size")
            with gr.Row():
                auto = gr.Checkbox(
                    value=True,
                    label="Automatic size: as large as keeps about 5 FPS (measured once per style)",
                    elem_id="live-auto-size",
                )
                keep = gr.Checkbox(label="Keep the colours", elem_id="live-keep")
                smooth = gr.Checkbox(value=True, label="Temporal smoothing (steadier texture)", elem_id="live-smooth")
        with gr.Column(scale=3):
            out = gr.Image(label="Stylised", elem_id="live-out", height=520, format="png")
            stats = gr.Markdown("waiting for the camera…", elem_id="live-stats", elem_classes="status-line")

    def frame(image, key, blend_with, blend, picture, strength, size, auto, keep, smooth, request: gr.Request):
        try:
            result, line = studio.live_frame(
                request.session_hash,
                image,
                choice_of(key, blend_with, blend, picture),
                settings_of(size, keep, strength),
                bool(smooth),
                bool(auto),
            )
        except ERRORS as exc:
            raise page_error(exc) from None
        return (gr.skip() if result is None else result), line

    # One frame at a time (concurrency_limit=1); a frame that finds the network busy with a photo or a video is
    # dropped, not queued (live.LiveSession). (trigger_mode="always_last" would end the stream
    # after its first frame in Gradio 6.)
    camera.stream(
        frame,
        [camera, *picker.inputs(), strength, size, auto, keep, smooth],
        [out, stats],
        stream_every=0.1,
        concurrency_limit=1,
        show_progress="hidden",
    )
    return picker


@dataclass
class TrainParts:
    timer: gr.Timer
    name: gr.Textbox
    outputs: list  # status, loss curve, samples


def train_tab(studio: Studio) -> TrainParts:
    builtin = sorted(studio.builtin_paintings())
    with gr.Row():
        with gr.Column(scale=2):
            paintings = gr.CheckboxGroup(builtin, label="Paintings that ship with mlx_style", elem_id="train-builtin")
            uploads = gr.File(
                label="…or upload your own (several: one network)",
                file_count="multiple",
                file_types=["image"],
                elem_id="train-paintings",
                height=110,
            )
            data = gr.Textbox(
                label="Folder of photos to learn on",
                elem_id="train-data",
                placeholder=f"a folder inside {studio.roots[0]}, e.g. photos/",
            )
            name = gr.Textbox(label="Style name (weights/NAME.safetensors)", value="my_style", elem_id="train-name")
            preset = gr.Radio(list(PRESETS), value="quick preview", label="Preset", elem_id="train-preset")
            with gr.Accordion("Full settings (empty: the preset's)", open=False):
                with gr.Row():
                    image_size = gr.Number(label="Crop size", precision=0, elem_id="train-image-size")
                    batch_size = gr.Number(label="Batch size", precision=0, elem_id="train-batch-size")
                    iters = gr.Number(label="Steps (0: one pass over the photos)", precision=0, elem_id="train-iters")
                with gr.Row():
                    width = gr.Number(label="Width (16: light, 32: full)", precision=0, elem_id="train-width")
                    blocks = gr.Number(label="Residual blocks", precision=0, elem_id="train-blocks")
                    seed = gr.Number(label="Seed", precision=0, elem_id="train-seed")
                with gr.Row():
                    lr = gr.Number(label="Learning rate", elem_id="train-lr")
                    style_weight = gr.Number(label="Style weight", elem_id="train-style-weight")
                    stable = gr.Number(label="Stability for video (--stable weight, e.g. 500)", elem_id="train-stable")
            overwrite = gr.Checkbox(label="Start over (replace this name's run and style)", elem_id="train-overwrite")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop", elem_id="train-stop")
                resume = gr.Button("Resume", elem_id="train-resume")
        with gr.Column(scale=3):
            status = gr.Markdown("no run yet", elem_id="train-status", elem_classes="status-line")
            curve = gr.Image(label="Loss (log scale)", elem_id="train-curve", height=320, buttons=["download"])
            samples = gr.Gallery(
                label="Samples as they are written (photos above, the style below)",
                columns=2,
                height=300,
                elem_id="train-samples",
            )
    timer = gr.Timer(1.0)

    def started(name, builtin_chosen, uploaded, folder, preset_name, *numbers, overwrite_run=False):
        keys = (
            "image_size",
            "batch_size",
            "iters",
            "width",
            "residual_blocks",
            "seed",
            "lr",
            "style_weight",
            "stable_weight",
        )
        settings = {k: v for k, v in zip(keys, numbers) if v is not None}
        try:
            return studio.start_training(
                name, builtin_chosen or [], uploaded or [], folder, preset_name, settings, overwrite_run
            )
        except ERRORS as exc:
            raise page_error(exc) from None

    def start_clicked(name, builtin_chosen, uploaded, folder, preset_name, *rest):
        *numbers, overwrite_run = rest
        return started(name, builtin_chosen, uploaded, folder, preset_name, *numbers, overwrite_run=overwrite_run)

    def guarded(action):
        def run(name):
            try:
                return action(name)
            except ERRORS as exc:
                raise page_error(exc) from None

        return run

    start.click(
        start_clicked,
        [
            name,
            paintings,
            uploads,
            data,
            preset,
            image_size,
            batch_size,
            iters,
            width,
            blocks,
            seed,
            lr,
            style_weight,
            stable,
            overwrite,
        ],
        status,
        concurrency_limit=None,
    )
    stop.click(guarded(studio.stop_training), name, status, concurrency_limit=None)
    resume.click(guarded(studio.resume_training), name, status, concurrency_limit=None)
    return TrainParts(timer, name, [status, curve, samples])


def styles_tab(studio: Studio) -> Picker:
    with gr.Row():
        with gr.Column(scale=2):
            picker = style_picker(studio, "styles", blend=False)
        with gr.Column(scale=3):
            first = studio.catalogue.default_key()
            tile, table = studio.details(first) if first else (None, "")
            with gr.Row():
                painting = gr.Image(tile, label="Painting", height=240, elem_id="styles-painting", scale=2)
                details = gr.Markdown(table, elem_id="styles-details", container=True)
            with gr.Row():
                fmt = gr.Radio(list(FORMATS), value="ONNX", label="Export as", elem_id="styles-format")
                export = gr.Button("Export", elem_id="styles-export")
            exported = gr.File(label="Exported", elem_id="styles-exported")
            with gr.Accordion("Share on the Hugging Face Hub", open=False):
                repo = gr.Textbox(label="Repository", placeholder="you/my-style", elem_id="styles-repo")
                token = gr.Textbox(label="Token (empty: your `hf auth login`)", type="password", elem_id="styles-token")
                onnx = gr.Checkbox(label="Include the ONNX export", elem_id="styles-onnx")
                push = gr.Button("Push", elem_id="styles-push")
                pushed = gr.Markdown(elem_id="styles-pushed")

    def shown(key):
        if not key:
            return None, ""
        try:
            return studio.details(key)
        except ERRORS as exc:
            raise page_error(exc) from None

    def exported_file(key, fmt_name, picture, request: gr.Request):
        try:
            return str(studio.export(request.session_hash, key, fmt_name, picture))
        except ERRORS as exc:
            raise page_error(exc) from None

    def pushed_to(key, repo_name, token_text, with_onnx):
        try:
            return f"pushed: {studio.push(key, repo_name, token_text, with_onnx)}"
        except ERRORS as exc:
            raise page_error(exc) from None

    picker.style.change(shown, picker.style, [painting, details], show_progress="hidden")
    export.click(exported_file, [picker.style, fmt, picker.picture], exported, concurrency_limit=2)
    push.click(pushed_to, [picker.style, repo, token, onnx], pushed, concurrency_limit=2)
    return picker
