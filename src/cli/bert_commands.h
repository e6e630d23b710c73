// `quantkit embed` and `quantkit bench bert`: sentence embeddings with BERT models
// (all-MiniLM-L6-v2 style: WordPiece, mean pooling, L2 normalisation).
#pragma once

#include <string>
#include <vector>

namespace quantkit::cli {

/// `eval BERT_MODEL --sentences FILE [--reference FLOAT_MODEL]`: cosine of the embeddings of
/// `model` (optionally quantized with `weights` / `dynamic_int8`) to the reference's.
int run_eval_sentences(const std::string& model, const std::string& reference,
                       const std::string& sentences_file, const std::string& weights,
                       int64_t group_size, bool dynamic_int8);

int run_embed(const std::string& model, const std::vector<std::string>& sentences);

/// Float vs W8A8 (per-token) vs int8 / int4 g32 weight-only: weight bytes, cosine of the
/// embeddings to float over the sentences of `sentences_file`, sentences/s at `batch`.
int run_bench_bert(const std::string& model, const std::string& sentences_file, int batch);

}  // namespace quantkit::cli
