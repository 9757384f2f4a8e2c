"""Encodes texts with sentence-transformers from a local directory (no hub access).

usage: encode_st.py MODEL_DIR TEXTS_JSON  → prints {"embeddings": [[...], ...]}
"""

import json
import sys

from sentence_transformers import SentenceTransformer

model = SentenceTransformer(sys.argv[1], device="cpu", local_files_only=True)
with open(sys.argv[2]) as f:
    texts = json.load(f)
embeddings = model.encode(texts, batch_size=len(texts), convert_to_numpy=True)
print(json.dumps({"embeddings": embeddings.tolist()}))
