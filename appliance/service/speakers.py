"""The Speakers servicer: enrol, list and delete voiceprints.

Enrolment is off unless `diarization.voiceprints` names a directory (voiceprints are personal
data): every call then answers FAILED_PRECONDITION saying how to turn it on. Names and vectors
never reach a log line or a status message; refusals are counted as bad input.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.pcm import PcmError, PcmFormat
from appliance.audio.resample import Normalizer
from appliance.diarization.enrolment import Enrolment, EnrolmentError
from appliance.diarization.voiceprint_store import VoiceprintStore
from appliance.diarization.voiceprints import Voiceprint
from appliance.service.servicers import NoHooks, ServiceHooks
from appliance.subtitles.names import name_problem

OFF = ("voiceprint enrolment is off: set diarization.voiceprints to a directory the daemon may write "
       "(for example /var/lib/appliance/voiceprints) and restart it")


def voiceprint_to_pb(voiceprint: Voiceprint) -> pb.Voiceprint:
    created = Timestamp()
    created.FromNanoseconds(round(voiceprint.created * 1e9))
    return pb.Voiceprint(id=voiceprint.id, name=voiceprint.name, speech_seconds=voiceprint.speech_seconds,
                         created=created)


def pcm_to_samples(request: pb.EnrollRequest) -> np.ndarray:
    """The request's audio as 16 kHz mono float32; PcmError says what is wrong with it."""
    if not (request.sample_rate and request.encoding and request.channels):
        raise PcmError("declare sample_rate, encoding and channels of the audio")
    encoding = pb.Encoding.Name(request.encoding) if request.encoding in pb.Encoding.values() else str(request.encoding)
    audio_format = PcmFormat(request.sample_rate, encoding, request.channels)
    block = audio_format.decode(request.audio)
    normalise = Normalizer(request.sample_rate, request.channels)
    return np.concatenate([normalise(block), normalise.flush()])


class SpeakersServicer(pb_grpc.SpeakersServicer):
    def __init__(self, store: VoiceprintStore | None, enrol: Callable[[np.ndarray], Enrolment] | None,
                 executor: Executor | None = None, hooks: ServiceHooks | None = None, off: str = OFF):
        """`store` and `enrol` None: enrolment is off, for the reason `off` says."""
        self.store = store if enrol is not None else None
        self.enrol = enrol
        self.executor = executor
        self.hooks = hooks or NoHooks()
        self.off = off

    async def _refuse(self, context: grpc.aio.ServicerContext, method: str, code: grpc.StatusCode,
                      message: str) -> None:
        self.hooks.bad_input_seen(method, message)
        await context.abort(code, message)

    async def _store(self, context: grpc.aio.ServicerContext) -> VoiceprintStore:
        if self.store is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, self.off)
        return self.store

    async def Enroll(self, request: pb.EnrollRequest, context: grpc.aio.ServicerContext) -> pb.Voiceprint:
        store = await self._store(context)
        if problem := name_problem(request.name):
            await self._refuse(context, "Enroll", grpc.StatusCode.INVALID_ARGUMENT, problem)
        if store.find(request.name) is not None:
            await self._refuse(context, "Enroll", grpc.StatusCode.ALREADY_EXISTS,
                               "this name is enrolled already: delete its voiceprint first to enrol it again")
        try:
            samples = pcm_to_samples(request)
        except PcmError as exc:
            await self._refuse(context, "Enroll", grpc.StatusCode.INVALID_ARGUMENT, f"bad audio: {exc}")
        try:
            enrolment = await asyncio.get_running_loop().run_in_executor(self.executor, self.enrol, samples)
        except EnrolmentError as exc:
            await self._refuse(context, "Enroll", grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            voiceprint = store.add(request.name, enrolment.vector, enrolment.speech_seconds)
        except KeyError:  # enrolled by another call while this one was embedding
            await self._refuse(context, "Enroll", grpc.StatusCode.ALREADY_EXISTS,
                               "this name is enrolled already: delete its voiceprint first to enrol it again")
        return voiceprint_to_pb(voiceprint)

    async def List(self, request: pb.ListVoiceprintsRequest, context) -> pb.ListVoiceprintsResponse:
        store = await self._store(context)
        return pb.ListVoiceprintsResponse(voiceprints=[voiceprint_to_pb(p) for p in store.all()],
                                          directory=str(store.directory))

    async def Delete(self, request: pb.DeleteVoiceprintRequest, context) -> pb.DeleteVoiceprintResponse:
        store = await self._store(context)
        try:
            store.delete(request.id)
        except KeyError:
            await self._refuse(context, "Delete", grpc.StatusCode.NOT_FOUND,
                               f"no voiceprint {request.id[:64]!r} (Speakers.List gives the ids)")
        return pb.DeleteVoiceprintResponse()
