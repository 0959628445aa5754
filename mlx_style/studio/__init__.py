"""The studio (``mlx-style studio``): the whole tool in a browser tab, built with Gradio (the ``studio`` extra).

Four tabs over the library: stylise photos and videos, the live webcam, training a style while its loss curve and
samples appear, and every style with its provenance, export and sharing. The logic lives in plain, browser-free
modules (``paths``: what the page may name; ``catalogue``: every style found; ``engine``: networks bound to a
choice; ``media``: photos and videos; ``live``: one tab's webcam stream; ``training``: runs in their own process;
``styles``: details, export, push; ``server``: the handlers the page calls); ``app`` only lays out the page and
wires them. Nothing here imports Gradio except ``app``.
"""
