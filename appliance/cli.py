"""The `appliance` command."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

from appliance.config import SAMPLE_RATE, AsrConfig, ConfigError
from appliance.inference.manifest import ModelError, load_manifest, verify

EXIT_USAGE = 2  # bad input or configuration: one line on stderr, no traceback


class CliError(Exception):
    """Fails the command with one line on stderr and exit status 2."""


def _asr_config(args: argparse.Namespace) -> AsrConfig:
    return AsrConfig(model=args.model, language=args.language, compute_type=args.compute_type)


def _progress_bar(total: float) -> Callable[[float], None] | None:
    """A progress bar on stderr for files over a minute, only when a person is watching."""
    if total <= 60 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=round(total), unit="s", desc="transcribing", file=sys.stderr, leave=False)
    return lambda reached: bar.update(round(reached) - bar.n)


def _diarize(samples) -> list:
    """Speaker turns of a whole recording (offline diarizer, models verified against the manifest)."""
    from appliance.config import DiarizationConfig, InferenceConfig
    from appliance.diarization.models import load_models
    from appliance.diarization.offline import OfflineDiarizer

    config = DiarizationConfig()
    return OfflineDiarizer(load_models(config, InferenceConfig()), config)(samples)


def _emit(args: argparse.Namespace, text: str) -> None:
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise CliError(f"{args.output}: cannot write ({exc.strerror})") from None
    else:
        sys.stdout.write(text)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from appliance.asr.recognizer import WhisperRecognizer
    from appliance.audio.decode import load_audio
    from appliance.inference.whisper import load_whisper
    from appliance.subtitles.layout import layout_cues
    from appliance.subtitles.writers import CUE_WRITERS, to_rttm

    samples = load_audio(args.file)  # before the model: bad input fails fast
    if args.format == "rttm":  # who spoke when: no speech recognition needed
        _emit(args, to_rttm(_diarize(samples), uri=args.file.stem))
        return 0
    config = _asr_config(args)
    recognizer = WhisperRecognizer(load_whisper(config), config)
    duration = len(samples) / SAMPLE_RATE
    words, language = recognizer.transcribe_file(samples, progress=_progress_bar(duration))
    if args.diarize:
        from appliance.diarization.words import attach_speakers

        words = attach_speakers(words, _diarize(samples))
    _emit(args, CUE_WRITERS[args.format](layout_cues(words), duration=duration, language=language))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from appliance.asr.recognizer import WhisperRecognizer
    from appliance.audio.decode import load_audio
    from appliance.evaluation import read_reference, word_error_rate
    from appliance.inference.whisper import load_whisper
    from appliance.replay import replay
    from appliance.vad.silero import SileroVad

    samples = load_audio(args.file)
    reference = read_reference(args.reference) if args.reference else None
    config = _asr_config(args)
    recognizer = WhisperRecognizer(load_whisper(config), config)
    vad = SileroVad.load()
    with contextlib.ExitStack() as stack:
        events = stack.enter_context(args.events.open("w")) if args.events else None
        result = asyncio.run(replay(samples, recognizer, vad, realtime=args.realtime, events_out=events))
    summary = result.summary()
    if reference is not None:
        summary["wer"] = round(word_error_rate(reference, result.text), 4)
    mode = "real time" if args.realtime else "fast"
    print(f"replay of {args.file} ({mode}, {summary['audio_seconds']} s of audio)")
    for key, value in summary.items():
        print(f"  {key:<22} {value}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from appliance.config import load_config
    from appliance.daemon import serve

    config = load_config(args.config, os.environ, args.set)
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        raise CliError(str(exc)) from None
    return 0


_COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m"]


def cmd_subscribe(args: argparse.Namespace) -> int:
    import asyncio
    import json

    import grpc
    from google.protobuf import json_format

    from appliance._generated.appliance.v1 import appliance_pb2 as pb
    from appliance.service.client import Endpoint, follow

    endpoint = Endpoint(args.server, args.ca, args.cert, args.key, args.token_file, args.server_name)
    tty = sys.stdout.isatty()
    speakers: dict[str, str] = {}

    def label(speaker: str) -> str:
        if not speaker:
            return ""
        if not tty:
            return f"{speaker}: "
        colour = speakers.setdefault(speaker, _COLOURS[len(speakers) % len(_COLOURS)])
        return f"{colour}{speaker}\033[0m: "

    def timestamp(t: float) -> str:
        h, rem = divmod(t, 3600)
        m, s = divmod(rem, 60)
        return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"

    async def run() -> None:
        cue_number = 0
        if args.format == "vtt":
            print("WEBVTT\n", flush=True)
        async for event in follow(endpoint, args.session, args.partials, args.from_seq):
            if args.format == "json":
                print(json.dumps(json_format.MessageToDict(event, preserving_proto_field_name=True)), flush=True)
            elif event.kind == pb.SubtitleEvent.FINAL:
                if args.format == "vtt":
                    voice = f"<v {event.speaker}>" if event.speaker else ""
                    print(f"{timestamp(event.start)} --> {timestamp(event.end)}\n{voice}" + "\n".join(event.lines) + "\n", flush=True)
                else:
                    cue_number += 1
                    print(("\r\033[K" if tty else "") + label(event.speaker) + event.text, flush=True)
            elif event.kind == pb.SubtitleEvent.PARTIAL and args.format == "text" and event.text:
                if tty:
                    print(f"\r\033[K\033[2m{label(event.speaker)}{event.text}\033[0m", end="", flush=True)
                else:
                    print(f"… {label(event.speaker)}{event.text}", flush=True)
            elif event.kind == pb.SubtitleEvent.SESSION_STATE and args.format == "text":
                print(f"[session {event.session_id}: {pb.SessionState.Name(event.state).lower()}"
                      f"{' - ' + event.message if event.message else ''}]", file=sys.stderr, flush=True)

    try:
        asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        raise CliError(f"{args.server}: {exc.code().name}: {exc.details()}") from None
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    failures = 0
    for spec in load_manifest().values():
        try:
            verify(spec)
            state = "verified"
        except ModelError as exc:
            state, failures = f"FAILED: {exc}", failures + 1
        source = f"{spec.package}=={spec.version}"
        print(f"{spec.name:<18} {spec.role:<13} {source:<30} {spec.licence:<11} {state}")
    return 1 if failures else 0


def cmd_devices(args: argparse.Namespace) -> int:
    try:
        from appliance.audio.capture import input_devices
    except OSError as exc:  # sounddevice raises this when libportaudio2 is not installed
        raise CliError(f"PortAudio is not available: {exc}") from None

    devices = input_devices()
    if not devices:
        print("no input devices")
        return 0
    print(f"  {'index':>5}  {'name':<32} {'host API':<12} {'channels':>8} {'rate (Hz)':>10}")
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:>5}  {d.name:<32} {d.hostapi:<12} {d.max_input_channels:>8} {d.default_samplerate:>10.0f}")
    print("* default input")
    return 0


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=AsrConfig.model, help="manifest model name or a CTranslate2 Whisper directory")
    parser.add_argument("--language", help="language code for multilingual models (default: detect)")
    parser.add_argument("--compute-type", default=AsrConfig.compute_type, help="CTranslate2 compute type")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="On-premise live transcription and subtitles.")
    parser.add_argument("--log-level", default="WARNING", help="log level on stderr (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    transcribe = commands.add_parser("transcribe", help="transcribe a recording into subtitles")
    transcribe.add_argument("file", type=Path, help="any audio or video file FFmpeg decodes")
    transcribe.add_argument("--format", choices=["vtt", "srt", "json", "txt", "rttm"], default="vtt",
                            help="rttm: speaker turns only (diarization, no transcript)")
    transcribe.add_argument("--diarize", action="store_true",
                            help="label cues and words with speakers (S1, S2, ...)")
    transcribe.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    _model_options(transcribe)
    transcribe.set_defaults(run=cmd_transcribe)

    replay = commands.add_parser("replay", help="run the streaming pipeline on a recording and measure it")
    replay.add_argument("file", type=Path)
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="feed at wall-clock pace (latency; default)")
    pace.add_argument("--fast", dest="realtime", action="store_false", help="feed as fast as it goes (accuracy)")
    replay.set_defaults(realtime=True)
    replay.add_argument("--events", type=Path, help="write every emitted event as a JSON line here")
    replay.add_argument("--reference", type=Path, help="STM or plain-text reference: report WER")
    _model_options(replay)
    replay.set_defaults(run=cmd_replay)

    serve = commands.add_parser("serve", help="run the daemon: capture, recognise, serve subtitles over gRPC")
    serve.add_argument("--config", type=Path, help="TOML configuration (default: built-in defaults)")
    serve.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one setting (after the file and APPLIANCE_SECTION__KEY variables)")
    serve.set_defaults(run=cmd_serve)

    subscribe = commands.add_parser("subscribe", help="print a session's live captions")
    subscribe.add_argument("--server", default="127.0.0.1:50051", help="daemon address (default %(default)s)")
    subscribe.add_argument("--session", default="room", help="session id (default %(default)s)")
    subscribe.add_argument("--partials", action="store_true", help="show captions as they form")
    subscribe.add_argument("--format", choices=["text", "vtt", "json"], default="text")
    subscribe.add_argument("--from-seq", type=int, default=0, help="resume after this event seq")
    subscribe.add_argument("--ca", type=Path, help="TLS: CA or server certificate to trust")
    subscribe.add_argument("--cert", type=Path, help="mTLS: client certificate")
    subscribe.add_argument("--key", type=Path, help="mTLS: client key")
    subscribe.add_argument("--server-name", help="TLS: name to verify when --server is an IP")
    subscribe.add_argument("--token-file", type=Path, help="file holding the bearer token")
    subscribe.set_defaults(run=cmd_subscribe)

    models = commands.add_parser("models", help="list the pinned models and verify their hashes")
    models.set_defaults(run=cmd_models)

    devices = commands.add_parser("devices", help="list the sound cards live capture can record from")
    devices.set_defaults(run=cmd_devices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from appliance.audio.decode import AudioInputError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (AudioInputError, ModelError, ConfigError, CliError) as exc:
        print(f"appliance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
