#!/usr/bin/env python3
"""Reference embeddings for all-MiniLM-L6-v2, from an implementation independent of quantkit.

Tokenization: Hugging Face `tokenizers` on the model's tokenizer.json. Forward pass: numpy in
float64 (BertModel: embeddings + 6 post-LayerNorm encoder layers, exact-erf GELU), then
sentence-transformers' mean pooling over the attention mask and L2 normalisation. Run once:

  pip install numpy tokenizers safetensors
  python3 tools/minilm_reference.py MODEL_DIR tests/data/minilm_sentences.txt tests/data

writes minilm_reference_token_ids.txt (one line of ids per sentence) and
minilm_reference_embeddings.f32.npy ([sentences, 384]).
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def main():
    model_dir, sentences_path, out_dir = sys.argv[1:4]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
    p = "" if "embeddings.word_embeddings.weight" in w else "bert."
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    sentences = [s.rstrip("\n") for s in open(sentences_path, encoding="utf-8") if s.strip()]
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    embeddings, all_ids = [], []
    for s in sentences:
        ids = tok.encode(s).ids
        all_ids.append(ids)
        t = len(ids)
        x = (w[p + "embeddings.word_embeddings.weight"][ids]
             + w[p + "embeddings.position_embeddings.weight"][:t]
             + w[p + "embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w[p + "embeddings.LayerNorm.weight"], w[p + "embeddings.LayerNorm.bias"], eps)
        d = x.shape[1] // heads
        for l in range(cfg["num_hidden_layers"]):
            L = f"{p}encoder.layer.{l}."
            lin = lambda v, n: v @ w[L + n + ".weight"].T + w[L + n + ".bias"]
            q = lin(x, "attention.self.query").reshape(t, heads, d).transpose(1, 0, 2)
            k = lin(x, "attention.self.key").reshape(t, heads, d).transpose(1, 0, 2)
            v = lin(x, "attention.self.value").reshape(t, heads, d).transpose(1, 0, 2)
            a = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(t, -1)
            x = layer_norm(x + lin(ctx, "attention.output.dense"), w[L + "attention.output.LayerNorm.weight"],
                           w[L + "attention.output.LayerNorm.bias"], eps)
            h = gelu(lin(x, "intermediate.dense"))
            x = layer_norm(x + lin(h, "output.dense"), w[L + "output.LayerNorm.weight"],
                           w[L + "output.LayerNorm.bias"], eps)
        e = x.mean(0)
        embeddings.append(e / np.linalg.norm(e))
    with open(os.path.join(out_dir, "minilm_reference_token_ids.txt"), "w") as f:
        for ids in all_ids:
            f.write(" ".join(map(str, ids)) + "\n")
    np.save(os.path.join(out_dir, "minilm_reference_embeddings.f32.npy"), np.array(embeddings, np.float32))
    print(f"{len(sentences)} sentences, {sum(map(len, all_ids))} tokens")


if __name__ == "__main__":
    main()
