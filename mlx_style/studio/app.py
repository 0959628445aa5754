"""The studio's page: Gradio components laid out in four tabs (``tabs``) and wired to the handlers of ``server``;
and ``launch``, which serves it on loopback unless told otherwise (``config.check_serving``)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from mlx_style.errors import MlxStyleError
from mlx_style.studio.config import StudioConfig, check_serving
from mlx_style.studio.server import NO_BLEND, Studio

TITLE = "mlx_style studio"
CSS = """
#stylise-gallery, #live-gallery, #styles-gallery {min-height: 120px}
.status-line {min-height: 1.5em}
#styles-details code {white-space: normal; word-break: break-all}
"""
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # nothing fetched from a font service: works offline
ERRORS = (MlxStyleError, ValueError, OSError)  # what a handler reports to the page in one line


def page_error(exc: BaseException) -> gr.Error:
    """A handler's failure as Gradio's error toast: its first line, no traceback."""
    text = str(exc).strip().splitlines()
    return gr.Error(text[0] if text else type(exc).__name__, print_exception=False)


@dataclass
class Picker:
    """A tab's style controls: the gallery of paintings, the style menu, the blend and the any-picture upload."""

    gallery: gr.Gallery
    style: gr.Dropdown
    blend_with: gr.Dropdown | None
    blend: gr.Slider | None
    picture: gr.Image

    def inputs(self) -> list:
        return [self.style, self.blend_with, self.blend, self.picture]

    def refreshable(self) -> list:
        return [self.gallery, self.style] + ([self.blend_with] if self.blend_with is not None else [])


def style_picker(studio: Studio, prefix: str, blend: bool = True) -> Picker:
    """The gallery (click a painting to pick its style) over a menu of every style, with the blend controls."""
    choices = studio.choices()
    gallery = gr.Gallery(
        value=studio.gallery(),
        label="Styles: click one",
        columns=4,
        height=260,
        allow_preview=False,
        object_fit="cover",
        elem_id=f"{prefix}-gallery",
    )
    with gr.Row():
        style = gr.Dropdown(
            choices=choices, value=studio.catalogue.default_key(), label="Style", elem_id=f"{prefix}-style"
        )
        blend_with = (
            gr.Dropdown(
                choices=[("(none)", NO_BLEND)] + choices,
                value=NO_BLEND,
                label="Blend with",
                elem_id=f"{prefix}-blend-with",
            )
            if blend
            else None
        )
    blend_slider = (
        gr.Slider(0, 1, value=0.5, step=0.05, label="Blend (0: the style, 1: the other)", elem_id=f"{prefix}-blend")
        if blend
        else None
    )
    with gr.Accordion("Any picture as the style", open=False):
        picture = gr.Image(
            type="filepath",
            sources=["upload"],
            label="Your painting (for an 'any picture' style)",
            height=160,
            elem_id=f"{prefix}-picture",
        )
        with gr.Row():
            hub = gr.Textbox(label="A style on the Hub", placeholder="hf:user/name", scale=3, elem_id=f"{prefix}-hub")
            pull = gr.Button("Add", scale=1, elem_id=f"{prefix}-pull")
    picker = Picker(gallery, style, blend_with, blend_slider, picture)

    def picked(evt: gr.SelectData):
        try:
            return studio.key_at(evt.index)
        except ERRORS as exc:
            raise page_error(exc) from None

    gallery.select(picked, None, style, show_progress="hidden")

    def pulled(name):
        try:
            key = studio.pull(name)
        except ERRORS as exc:
            raise page_error(exc) from None
        gallery_update, style_update, *rest = refreshed(studio, [picker])
        return [gallery_update, gr.update(choices=style_update["choices"], value=key), *rest]

    pull.click(pulled, hub, picker.refreshable())
    return picker


def refreshed(studio: Studio, pickers: list[Picker]) -> list:
    """New galleries and menus for ``pickers`` (a style was trained or pulled), keeping each menu's choice."""
    choices, tiles = studio.choices(), studio.gallery()
    updates = []
    for picker in pickers:
        updates += [gr.update(value=tiles), gr.update(choices=choices)]
        if picker.blend_with is not None:
            updates.append(gr.update(choices=[("(none)", NO_BLEND)] + choices))
    return updates


def build(studio: Studio) -> gr.Blocks:
    """The page."""
    from mlx_style.studio import tabs

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(
            f"## {TITLE}  \nStylise photos and videos, the live webcam, train a style and share it. "
            f"Folders you type must lie in: {', '.join(str(r) for r in studio.roots)}."
        )
        with gr.Tabs():
            with gr.Tab("Stylise", id="stylise"):
                stylise = tabs.stylise_tab(studio)
            with gr.Tab("Live", id="live"):
                live = tabs.live_tab(studio)
            with gr.Tab("Train", id="train"):
                train = tabs.train_tab(studio)
            with gr.Tab("Styles", id="styles"):
                styles = tabs.styles_tab(studio)
        pickers = [stylise, live, styles]
        everywhere = [c for p in pickers for c in p.refreshable()]

        def poll(name, request: gr.Request):
            """Every second: what is new in the run named on the Train tab; every menu anew when it finishes."""
            view = studio.training_view(request.session_hash, name or "")
            if view is None:
                return [gr.skip()] * (len(train.outputs) + len(everywhere))
            rest = refreshed(studio, pickers) if view["finished"] else [gr.skip()] * len(everywhere)
            return [view["status"], view["curve"], view["samples"], *rest]

        train.timer.tick(poll, train.name, train.outputs + everywhere, show_progress="hidden", concurrency_limit=None)
        # each page load lists the styles as they are now (one trained by `mlx-style train` meanwhile included)
        demo.load(lambda: refreshed(studio, pickers), None, everywhere, show_progress="hidden")

        def closed(request: gr.Request):
            studio.close_session(request.session_hash)

        demo.unload(closed)
    return demo


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def launch(config: StudioConfig) -> tuple[gr.Blocks, Studio, str]:
    """Serve the studio in this process (a background thread); returns ``(page, studio, url)``.

    Raises:
        UsageError: serving beyond loopback without a password, or a bad port or root.
    """
    import gradio.utils

    auth = check_serving(config)
    studio = Studio(config, upload_root=Path(gradio.utils.get_upload_folder()))
    demo = build(studio)
    demo.queue(default_concurrency_limit=1)
    port = config.port or free_port(config.host)
    theme = gr.themes.Soft(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"])
    try:
        _, url, _ = demo.launch(
            server_name=config.host,
            server_port=port,
            auth=auth,
            max_file_size=config.max_file_size,
            inbrowser=config.open_browser,
            prevent_thread_lock=True,
            ssr_mode=False,
            quiet=True,
            theme=theme,
            css=CSS,
            footer_links=["gradio", "settings"],
            mcp_server=False,
            pwa=False,
            enable_monitoring=False,
        )
    except BaseException:
        studio.close()  # its temporary folder goes with it
        raise
    return demo, studio, url


def serve_until_stopped(demo: gr.Blocks, studio: Studio, stop: threading.Event | None = None) -> None:
    """Block until Ctrl-C (or ``stop``), then close: runs stop with a checkpoint, results are removed."""
    try:
        if stop is None:
            demo.block_thread()
        else:
            stop.wait()
    finally:
        studio.close()
        demo.close()
