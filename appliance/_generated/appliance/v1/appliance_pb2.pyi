import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    STARTING: _ClassVar[SessionState]
    RUNNING: _ClassVar[SessionState]
    UNAVAILABLE: _ClassVar[SessionState]
    ENDED: _ClassVar[SessionState]

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    PCM_S16LE: _ClassVar[Encoding]
    F32LE: _ClassVar[Encoding]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    WEBVTT: _ClassVar[ExportFormat]
    SRT: _ClassVar[ExportFormat]
    JSON: _ClassVar[ExportFormat]
    RTTM: _ClassVar[ExportFormat]
SESSION_STATE_UNSPECIFIED: SessionState
STARTING: SessionState
RUNNING: SessionState
UNAVAILABLE: SessionState
ENDED: SessionState
ENCODING_UNSPECIFIED: Encoding
PCM_S16LE: Encoding
F32LE: Encoding
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
WEBVTT: ExportFormat
SRT: ExportFormat
JSON: ExportFormat
RTTM: ExportFormat

class SubscribeRequest(_message.Message):
    __slots__ = ("session_id", "from_seq", "include_partials")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PARTIALS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    from_seq: int
    include_partials: bool
    def __init__(self, session_id: _Optional[str] = ..., from_seq: _Optional[int] = ..., include_partials: _Optional[bool] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("text", "start", "end", "probability", "speaker")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    text: str
    start: float
    end: float
    probability: float
    speaker: str
    def __init__(self, text: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., probability: _Optional[float] = ..., speaker: _Optional[str] = ...) -> None: ...

class SubtitleEvent(_message.Message):
    __slots__ = ("session_id", "seq", "kind", "cue_id", "speaker", "start", "end", "text", "lines", "words", "stability", "state", "message", "final_words", "created", "language")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[SubtitleEvent.Kind]
        PARTIAL: _ClassVar[SubtitleEvent.Kind]
        FINAL: _ClassVar[SubtitleEvent.Kind]
        SPEAKER_UPDATE: _ClassVar[SubtitleEvent.Kind]
        SESSION_STATE: _ClassVar[SubtitleEvent.Kind]
    KIND_UNSPECIFIED: SubtitleEvent.Kind
    PARTIAL: SubtitleEvent.Kind
    FINAL: SubtitleEvent.Kind
    SPEAKER_UPDATE: SubtitleEvent.Kind
    SESSION_STATE: SubtitleEvent.Kind
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CUE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINAL_WORDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    seq: int
    kind: SubtitleEvent.Kind
    cue_id: str
    speaker: str
    start: float
    end: float
    text: str
    lines: _containers.RepeatedScalarFieldContainer[str]
    words: _containers.RepeatedCompositeFieldContainer[Word]
    stability: float
    state: SessionState
    message: str
    final_words: int
    created: _timestamp_pb2.Timestamp
    language: str
    def __init__(self, session_id: _Optional[str] = ..., seq: _Optional[int] = ..., kind: _Optional[_Union[SubtitleEvent.Kind, str]] = ..., cue_id: _Optional[str] = ..., speaker: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., text: _Optional[str] = ..., lines: _Optional[_Iterable[str]] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., stability: _Optional[float] = ..., state: _Optional[_Union[SessionState, str]] = ..., message: _Optional[str] = ..., final_words: _Optional[int] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., language: _Optional[str] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("session_id", "sample_rate", "encoding", "channels", "data", "model", "language", "task")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    sample_rate: int
    encoding: Encoding
    channels: int
    data: bytes
    model: str
    language: str
    task: str
    def __init__(self, session_id: _Optional[str] = ..., sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., channels: _Optional[int] = ..., data: _Optional[bytes] = ..., model: _Optional[str] = ..., language: _Optional[str] = ..., task: _Optional[str] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "state", "source", "audio_seconds", "last_seq", "subscribers", "final_cues", "message", "model", "language", "task", "degradation", "decode_lag_seconds")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    FINAL_CUES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_FIELD_NUMBER: _ClassVar[int]
    DECODE_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    state: SessionState
    source: str
    audio_seconds: float
    last_seq: int
    subscribers: int
    final_cues: int
    message: str
    model: str
    language: str
    task: str
    degradation: str
    decode_lag_seconds: float
    def __init__(self, session_id: _Optional[str] = ..., state: _Optional[_Union[SessionState, str]] = ..., source: _Optional[str] = ..., audio_seconds: _Optional[float] = ..., last_seq: _Optional[int] = ..., subscribers: _Optional[int] = ..., final_cues: _Optional[int] = ..., message: _Optional[str] = ..., model: _Optional[str] = ..., language: _Optional[str] = ..., task: _Optional[str] = ..., degradation: _Optional[str] = ..., decode_lag_seconds: _Optional[float] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("session_id", "format")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    format: ExportFormat
    def __init__(self, session_id: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("content", "media_type")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    content: str
    media_type: str
    def __init__(self, content: _Optional[str] = ..., media_type: _Optional[str] = ...) -> None: ...

class NameSpeakerRequest(_message.Message):
    __slots__ = ("session_id", "speaker", "name")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    speaker: str
    name: str
    def __init__(self, session_id: _Optional[str] = ..., speaker: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class NameSpeakerResponse(_message.Message):
    __slots__ = ("speaker", "name", "updated_cues")
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_CUES_FIELD_NUMBER: _ClassVar[int]
    speaker: str
    name: str
    updated_cues: int
    def __init__(self, speaker: _Optional[str] = ..., name: _Optional[str] = ..., updated_cues: _Optional[int] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("name", "sample_rate", "encoding", "channels", "audio")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    name: str
    sample_rate: int
    encoding: Encoding
    channels: int
    audio: bytes
    def __init__(self, name: _Optional[str] = ..., sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., channels: _Optional[int] = ..., audio: _Optional[bytes] = ...) -> None: ...

class Voiceprint(_message.Message):
    __slots__ = ("id", "name", "speech_seconds", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEECH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    speech_seconds: float
    created: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., speech_seconds: _Optional[float] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListVoiceprintsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListVoiceprintsResponse(_message.Message):
    __slots__ = ("voiceprints", "directory")
    VOICEPRINTS_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    voiceprints: _containers.RepeatedCompositeFieldContainer[Voiceprint]
    directory: str
    def __init__(self, voiceprints: _Optional[_Iterable[_Union[Voiceprint, _Mapping]]] = ..., directory: _Optional[str] = ...) -> None: ...

class DeleteVoiceprintRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteVoiceprintResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
