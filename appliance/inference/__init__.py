"""The only places that locate, verify and build models (CTranslate2, onnxruntime)."""
