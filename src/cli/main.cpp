// quantkit command-line interface.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>

#include "bench_kernels.h"
#include "bench_model.h"
#include "bert_commands.h"
#include "eval.h"
#include "quantkit/io/safetensors.h"
#include "quantkit/kernels/blas.h"
#include "quantkit/workflows/quantize_checkpoint.h"
#include "table.h"

namespace quantkit::cli {
namespace {

int run_inspect(const std::string& path) {
  const Checkpoint ckpt = Checkpoint::open(path);
  Table table({"name", "dtype", "shape", "bytes"}, {false, false, false, true});
  int64_t total = 0;
  for (const std::string& name : ckpt.names()) {
    if (ckpt.is_quantized(name)) {
      const QTensor q = ckpt.qtensor(name);
      table.add({name, q.scheme().describe(q.shape()), shape_to_string(q.shape()),
                 std::to_string(q.nbytes())});
      total += q.nbytes();
    } else {
      const Tensor t = ckpt.tensor(name);
      table.add({name, std::string(dtype_name(t.dtype())), shape_to_string(t.shape()),
                 std::to_string(t.nbytes())});
      total += t.nbytes();
    }
  }
  table.separator();
  table.add({std::to_string(ckpt.names().size()) + " tensors", "", "",
             std::to_string(total) + " (" + format_bytes(total) + ")"});
  table.print(stdout);
  return 0;
}

int run_quantize(const std::string& input, const std::string& output,
                 const CheckpointQuantOptions& options) {
  const Checkpoint ckpt = Checkpoint::open(input);
  SafetensorsWriter writer;
  std::vector<TensorReport> reports;
  {
    ProgressBar bar("quantizing");
    reports = quantize_checkpoint(
        ckpt, options, writer,
        [&](size_t done, size_t total, const std::string& name) { bar.update(done, total, name); });
  }
  writer.write(output);
  Table table({"name", "shape", "scheme", "bytes before", "bytes after", "SQNR dB"},
              {false, false, false, true, true, true});
  int64_t before = 0, after = 0, quantized = 0, partial = 0;
  double weighted_sqnr = 0.0, min_sqnr = INFINITY;
  int64_t quantized_elements = 0;
  for (const TensorReport& r : reports) {
    table.add({r.name, shape_to_string(r.shape), r.scheme, std::to_string(r.bytes_before),
               std::to_string(r.bytes_after), r.quantized ? fixed(r.sqnr_db, 2) : "-"});
    before += r.bytes_before;
    after += r.bytes_after;
    if (r.quantized) {
      ++quantized;
      partial += r.scheme.find("partial") != std::string::npos;
      const int64_t n = shape_numel(r.shape);
      weighted_sqnr += r.sqnr_db * static_cast<double>(n);
      quantized_elements += n;
      min_sqnr = std::min(min_sqnr, r.sqnr_db);
    }
  }
  table.separator();
  const double mean_sqnr =
      quantized_elements ? weighted_sqnr / static_cast<double>(quantized_elements) : NAN;
  table.add({"total: " + std::to_string(quantized) + " of " + std::to_string(reports.size()) +
                 " tensors quantized",
             "", "", format_bytes(before), format_bytes(after), fixed(mean_sqnr, 2)});
  table.print(stdout);
  std::printf(
      "compression %.2fx; SQNR mean %.2f dB (element-weighted), min %.2f dB; %lld tensors with a "
      "partial last group\n",
      after ? static_cast<double>(before) / static_cast<double>(after) : 0.0, mean_sqnr, min_sqnr,
      static_cast<long long>(partial));
  std::printf("wrote %s\n", output.c_str());
  return 0;
}

}  // namespace
}  // namespace quantkit::cli

int main(int argc, char** argv) {
  using namespace quantkit;
  reexec_with_tuned_blas(argv);
  CLI::App app{"quantkit: neural-network quantization toolkit"};
  app.require_subcommand(1);

  std::string inspect_path;
  CLI::App* inspect =
      app.add_subcommand("inspect", "List the tensors of a safetensors file or model directory");
  inspect->add_option("path", inspect_path, "FILE.safetensors or a model directory")->required();

  std::string input, output, weights = "int8";
  CheckpointQuantOptions options;
  bool asymmetric = false, symmetric = false;
  std::string scale_dtype = "float16";
  CLI::App* quant =
      app.add_subcommand("quantize", "Quantize every floating-point matrix of a checkpoint");
  quant->add_option("input", input, "FILE.safetensors or a model directory")->required();
  quant->add_option("-o,--output", output, "output .safetensors file")->required();
  quant
      ->add_option("--weights", weights,
                   "int8 | int4 | int2 | fp8_e4m3 | fp8_e5m2 (also uint8, uint4, uint2)")
      ->capture_default_str();
  quant
      ->add_option("--group-size", options.group_size,
                   "elements per scale along each row (0 = per channel)")
      ->capture_default_str();
  quant->add_flag("--symmetric", symmetric, "symmetric, no zero point (default)");
  quant->add_flag("--asymmetric", asymmetric,
                  "asymmetric with a zero point (integer; float for --method linear)");
  quant
      ->add_option("--scale-dtype", scale_dtype,
                   "with --method: per-group weight scales in float16 (2 bytes a group in the "
                   "kernels' layout) | float32")
      ->check(CLI::IsMember({"float16", "float32"}))
      ->capture_default_str();
  quant->add_option(
      "--exclude", options.exclude,
      "keep matching tensors in float: a substring, or a glob such as '*.layer.0.*' (repeatable)");

  std::string method, activations = "none";
  cli::CalibrationOptions calibration;
  double damp_percent = 0.01;
  quant->add_option(
      "--method", method,
      "quantize a Llama model (HF directory or llama2.c .bin) with a registered "
      "method (linear, dynamic_int8, gptq, awq, xla) and save a model directory to -o");
  quant->add_option("--activations", activations, "linear: none | int8 | fp8 (calibrated)")
      ->capture_default_str();
  quant->add_option("--calibration-text", calibration.text,
                    "text (documents separated by <|endoftext|>) for methods that calibrate: "
                    "activation scales (linear --activations) or input statistics (gptq, awq)");
  quant->add_option("--calibration-docs", calibration.docs, "documents used for calibration")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  quant
      ->add_option("--calibration-skip", calibration.skip,
                   "documents skipped first (keep calibration apart from evaluation text)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  quant->add_option("--damp-percent", damp_percent, "gptq: Hessian damping (fraction of mean diag)")
      ->capture_default_str();
  bool act_order = false;
  quant->add_flag("--act-order", act_order,
                  "gptq: round columns by decreasing Hessian diagonal (static groups)");
  std::string rounding = "nearest";
  quant->add_option("--rounding", rounding, "awq: round the scaled weights to nearest | gptq")
      ->capture_default_str();
  quant->add_option("--tokenizer", calibration.tokenizer,
                    "llama2.c tokenizer.bin (for calibration)");
  std::string optimizer = "minmax";
  quant->add_option("--optimizer", optimizer, "--method: weight scales from minmax | mse")
      ->capture_default_str();

  cli::BenchKernelOptions bench_options;
  CLI::App* bench =
      app.add_subcommand("bench", "Measure quantkit beside anchors measured in the same run");
  CLI::App* bench_kernels =
      bench->add_subcommand("kernels", "Quantized linear kernels vs DRAM bandwidth and fp32 BLAS");
  bench->require_subcommand(1);
  bench_kernels->add_flag("--json", bench_options.json, "print JSON records instead of a table");
  bench_kernels->add_option("--threads", bench_options.threads,
                            "threads (default: QUANTKIT_NUM_THREADS or all cores)");
  bench_kernels->add_option("--dim", bench_options.dim, "K = N of the weight matrices")
      ->capture_default_str()
      ->check(CLI::Range(32, 16384));
  bench_kernels
      ->add_option("--dram-mib", bench_options.dram_mib,
                   "MiB of distinct weights cycled in DRAM cases")
      ->capture_default_str()
      ->check(CLI::Range(1, 16384));
  bench_kernels
      ->add_option("--gemm-rows", bench_options.gemm_rows, "M of the cache-resident GEMM cases")
      ->check(CLI::Range(1, 65536));

  auto add_quant_options = [](CLI::App* cmd, cli::ModelQuantOptions& q) {
    cmd->add_option("--weights", q.weights,
                    "quantize Linear weights in memory: int8 | int4 | int2 | fp8_e4m3 | fp8_e5m2");
    cmd->add_option("--group-size", q.group_size, "elements per scale (0 = per channel)");
    cmd->add_flag("--asymmetric", q.asymmetric, "asymmetric weights (float zero point)");
    cmd->add_flag("--mse", q.mse, "per-group clipping search for the weight scales");
    cmd->add_option("--activations", q.activations, "none | int8 (static, calibrated)");
    cmd->add_flag("--dynamic-int8", q.dynamic_int8,
                  "W8A8: int8 weights, int8 per-token dynamic activations");
    cmd->add_option("--exclude", q.exclude, "module globs kept float (default: lm_head)");
  };
  cli::EvalOptions eval_options;
  CLI::App* eval = app.add_subcommand(
      "eval", "Perplexity of a Llama model (HF directory or llama2.c .bin) on a text file");
  eval->add_option("model", eval_options.model, "model directory or .bin")->required();
  eval->add_option("--text", eval_options.text, "text file of documents (Llama models)");
  eval->add_option("--sentences", eval_options.sentences,
                   "one sentence per line (BERT models): cosine of the embeddings to --reference");
  eval->add_option("--separator", eval_options.separator, "document separator")
      ->capture_default_str();
  eval->add_option("--max-docs", eval_options.max_docs, "evaluate the first N documents");
  eval->add_option("--reference", eval_options.reference,
                   "float model: also report KL divergence and top-1 agreement");
  eval->add_option("--tokenizer", eval_options.tokenizer, "llama2.c tokenizer.bin");
  add_quant_options(eval, eval_options.quant);

  cli::GenerateOptions gen_options;
  CLI::App* generate = app.add_subcommand("generate", "Generate text with a Llama model");
  generate->add_option("model", gen_options.model, "model directory or .bin")->required();
  generate->add_option("--prompt", gen_options.prompt, "prompt text")->required();
  generate->add_option("--steps", gen_options.steps, "tokens to generate")->capture_default_str();
  generate->add_option("--temperature", gen_options.temperature, "0 = greedy")
      ->capture_default_str();
  generate->add_option("--top-p", gen_options.top_p, "nucleus sampling mass")
      ->capture_default_str();
  generate->add_option("--seed", gen_options.seed, "sampling seed")->capture_default_str();
  generate->add_option("--tokenizer", gen_options.tokenizer, "llama2.c tokenizer.bin");
  add_quant_options(generate, gen_options.quant);

  cli::BenchModelOptions model_bench;
  CLI::App* bench_llama = bench->add_subcommand(
      "llama", "Prefill/decode speed of a Llama model (random TinyLlama-1.1B shapes by default)");
  bench_llama->add_option("model", model_bench.model, "model directory or .bin (default: random)");
  bench_llama->add_option("--configs", model_bench.configs, "float int8 int4 int2 w8a8 w4a8")
      ->capture_default_str();
  bench_llama->add_option("--group-size", model_bench.group_size, "int4/int2 group size")
      ->capture_default_str();
  bench_llama->add_option("--dim", model_bench.dim, "random model: hidden size")
      ->capture_default_str();
  bench_llama->add_option("--layers", model_bench.layers, "random model: layers")
      ->capture_default_str();
  bench_llama->add_option("--ffn", model_bench.ffn, "random model: FFN size")
      ->capture_default_str();
  bench_llama->add_option("--heads", model_bench.heads, "random model: heads")
      ->capture_default_str();
  bench_llama->add_option("--kv-heads", model_bench.kv_heads, "random model: KV heads")
      ->capture_default_str();
  bench_llama->add_option("--vocab", model_bench.vocab, "random model: vocabulary")
      ->capture_default_str();
  bench_llama->add_option("--prompt", model_bench.prompt, "prefill tokens")->capture_default_str();
  bench_llama->add_option("--decode", model_bench.decode, "decoded tokens")->capture_default_str();

  std::string embed_model;
  std::vector<std::string> embed_sentences;
  CLI::App* embed = app.add_subcommand("embed", "Sentence embeddings with a BERT model directory");
  embed
      ->add_option("model", embed_model,
                   "model directory (config.json, model.safetensors, vocab.txt)")
      ->required();
  embed->add_option("sentences", embed_sentences, "sentences to embed")->required();

  std::string bert_model, bert_sentences;
  int bert_batch = 32;
  CLI::App* bench_bert = bench->add_subcommand(
      "bert", "BERT sentence embeddings: float vs W8A8 vs weight-only (bytes, cosine, speed)");
  bench_bert->add_option("model", bert_model, "model directory")->required();
  bench_bert->add_option("--sentences", bert_sentences, "one sentence per line")->required();
  bench_bert->add_option("--batch", bert_batch, "sentences per forward")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    if (inspect->parsed()) return cli::run_inspect(inspect_path);
    if (eval->parsed() && !eval_options.sentences.empty()) {
      return cli::run_eval_sentences(eval_options.model, eval_options.reference,
                                     eval_options.sentences, eval_options.quant.weights,
                                     eval_options.quant.group_size,
                                     eval_options.quant.dynamic_int8);
    }
    if (eval->parsed()) {
      QK_CHECK(!eval_options.text.empty(), ValueError,
               "eval needs --text FILE or --sentences FILE");
      return cli::run_eval(eval_options);
    }
    if (generate->parsed()) return cli::run_generate(gen_options);
    if (bench_llama->parsed()) return cli::run_bench_model(model_bench);
    if (bench_bert->parsed()) return cli::run_bench_bert(bert_model, bert_sentences, bert_batch);
    if (embed->parsed()) return cli::run_embed(embed_model, embed_sentences);
    if (bench->parsed()) return cli::run_bench_kernels(bench_options);
    if (symmetric && asymmetric)
      throw ValueError("--symmetric and --asymmetric exclude each other");
    options.symmetric = !asymmetric;
    if (!method.empty()) {
      QuantizationConfig config;
      config.quant_method = method;
      config.weights = weights;
      config.activations = activations;
      config.group_size = options.group_size;
      config.symmetric = options.symmetric;
      config.scale_dtype = scale_dtype;
      config.optimizer = optimizer;
      config.damp_percent = damp_percent;
      config.act_order = act_order;
      config.rounding = rounding;
      if (!options.exclude.empty()) config.modules_to_not_convert = options.exclude;
      return cli::run_quantize_model(input, output, config, calibration);
    }
    options.weights = parse_dtype(weights);
    return cli::run_quantize(input, output, options);
  } catch (const Error& e) {
    std::fprintf(stderr, "quantkit: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quantkit: internal error: %s\n", e.what());
    return 2;
  }
}
