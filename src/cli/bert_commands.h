// `quantkit embed` and `quantkit bench bert`: sentence embeddings with BERT models
// (all-MiniLM-L6-v2 style: WordPiece, mean pooling, L2 normalisation).
#pragma once

#include <string>
#include <vector>

namespace quantkit::cli {

int run_embed(const std::string& model, const std::vector<std::string>& sentences);

/// Float vs W8A8 (per-token) vs int8 / int4 g32 weight-only: weight bytes, cosine of the
/// embeddings to float over the sentences of `sentences_file`, sentences/s at `batch`.
int run_bench_bert(const std::string& model, const std::string& sentences_file, int batch);

}  // namespace quantkit::cli
