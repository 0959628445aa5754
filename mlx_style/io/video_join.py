"""Joining a video's finished segments (``io.video.SegmentWriter``) into one file, with every audio stream of its
source carried over: copied where the container takes the codec, else re-encoded (AAC, or Opus in WebM)."""

from __future__ import annotations

import heapq
from fractions import Fraction
from pathlib import Path

import av

from mlx_style.io import video


def _audio_routes(output, source) -> list[tuple]:
    """``(input stream, output stream, copy?)`` per audio stream of ``source``: copied where the output container
    takes its codec, else re-encoded (AAC; Opus in WebM, which takes no AAC)."""
    routes = []
    for stream in source.streams.audio:
        name = stream.codec_context.name if stream.codec_context else None
        if name and name in output.supported_codecs:
            routes.append((stream, output.add_stream_from_template(stream), True))
            continue
        encoder = "libopus" if output.format.name == "webm" else "aac"
        out = output.add_stream(encoder, rate=48000 if encoder == "libopus" else stream.rate)
        out.layout = stream.layout
        routes.append((stream, out, False))
    return routes


def _audio_packets(source, routes):
    by_index = {inp.index: (out, copy) for inp, out, copy in routes}
    for packet in source.demux([inp for inp, _, _ in routes]):
        out, copy = by_index[packet.stream.index]
        if copy:
            if packet.dts is not None:  # None: the demuxer's end-of-stream marker
                packet.stream = out
                yield packet
        else:
            for frame in packet.decode():
                yield from out.encode(frame)
    for _, out, copy in routes:
        if not copy:
            yield from out.encode(None)


def _frame_durations(segments) -> dict[int, int]:
    """Each frame's duration by pts (time base of the segments): to the next frame, and for a segment's last frame
    to the end of the segment (MP4 reads packet durations back as dts steps, which B-frames reorder)."""
    durations = {}
    for segment in segments:
        stream = segment.streams.video[0]
        stamps = sorted(p.pts for p in segment.demux(stream) if p.pts is not None)
        segment.seek(0)
        end = (stream.start_time or 0) + (stream.duration or 0)
        for pts, following in zip(stamps, stamps[1:] + [max(end, stamps[-1] + 1)] if stamps else []):
            durations[pts] = following - pts
    return durations


def _video_packets(segments, out_stream, written: list[int], renumber: bool):
    durations = _frame_durations(segments)
    for segment in segments:
        for packet in segment.demux(segment.streams.video[0]):
            if packet.dts is None:
                continue
            if renumber:  # AVI is constant-rate: frame n at n / rate (MJPEG has no reordering)
                packet.pts = packet.dts = written[0]
                packet.time_base, packet.duration = out_stream.time_base, 1
            else:
                packet.duration = durations.get(packet.pts, packet.duration)
            packet.stream = out_stream
            written[0] += 1
            yield packet


def _when(packet) -> Fraction:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return stamp * packet.time_base if stamp is not None else Fraction(0)


def join(segments: list[Path], target: Path, source: Path | None = None) -> int:
    """Remux the video of ``segments`` (in order; one encoder's settings) into ``target``, with every audio stream of
    ``source`` when given, interleaved by time; returns the video packets written."""
    inputs = [av.open(str(s)) for s in segments]
    sound = video.open_input(source) if source is not None and video.probe(source).audio else None
    try:
        template = inputs[0].streams.video[0]
        if len({bytes(i.streams.video[0].codec_context.extradata or b"") for i in inputs}) > 1:
            raise video.VideoWriteError(f"could not write {target}: its segments were encoded with different settings")
        output = av.open(str(target), "w", options=video.container_options(target, Fraction(template.time_base)))
        with output:
            picture = output.add_stream_from_template(template)
            renumber = target.suffix.lower() == ".avi"
            rate = template.average_rate or template.guessed_rate or Fraction(30)
            picture.time_base = 1 / Fraction(rate) if renumber else template.time_base
            routes = _audio_routes(output, sound) if sound is not None else []
            written = [0]
            streams = [_video_packets(inputs, picture, written, renumber)]
            streams += [_audio_packets(sound, routes)] if routes else []
            video.mux(output, heapq.merge(*streams, key=_when))
        return written[0]
    finally:
        for container in inputs + ([sound] if sound is not None else []):
            container.close()
