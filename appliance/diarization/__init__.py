"""Speaker diarization on onnxruntime (no torch at run time).

models.py      Segmenter / SpeakerEmbedder protocols and their ONNX backends
features.py    CAM++'s Kaldi fbank front-end
clustering.py  offline agglomerative clustering and the streaming SpeakerRegistry (pure)
aggregation.py overlapping-window votes -> speaker timeline -> turns (pure)
offline.py     OfflineDiarizer: a whole recording at once
streaming.py   StreamingDiarizer: push() chunks, update() when due(), get final turns with bounded label latency
words.py       attach speakers to recognised words (pure)
"""
