#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/.

Standard library only. Seeds are small, real-looking inputs: valid files of
each shape the parser accepts and the edge cases its checks exist for (so the
fuzzer starts next to every error branch). Tokenizer seeds are the test
fixtures of tests/testdata/tokenizers cut down to a few hundred vocabulary
entries, so that one run of the target stays fast. Inputs that once crashed a
target are added by hand as crash-<what>, and this script leaves them alone.

Usage: python3 fuzz/make_corpus.py   (from anywhere; rewrites the seeds it owns)
"""
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
FIXTURE = "/tmp/foak-fuzz-job"  # made by job_spec_fuzz's LLVMFuzzerInitialize


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# --- safetensors ---------------------------------------------------------------
def safetensors(header, data=b"", length=None, pad=True):
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    n = len(text) if length is None else length
    return struct.pack("<Q", n) + text + data


def safetensors_seeds():
    t = "safetensors_header"
    write(t, "f32_2x3", safetensors(
        {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, bytes(range(24))))
    write(t, "two_tensors_metadata", safetensors(
        {"__metadata__": {"format": "pt"},
         "model.embed_tokens.weight": {"dtype": "BF16", "shape": [4, 2], "data_offsets": [0, 16]},
         "model.norm.weight": {"dtype": "BF16", "shape": [2], "data_offsets": [16, 20]}},
        bytes(20)))
    write(t, "every_dtype", safetensors(
        {name: {"dtype": name, "shape": [1], "data_offsets": [i * 8, i * 8 + size]}
         for i, (name, size) in enumerate([("F64", 8), ("F32", 4), ("F16", 2), ("BF16", 2),
                                           ("I64", 8), ("I32", 4), ("I16", 2), ("I8", 1),
                                           ("U8", 1), ("BOOL", 1)])}, bytes(80)))
    write(t, "scalar_and_empty", safetensors(
        {"scalar": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
         "empty": {"dtype": "F32", "shape": [0, 5], "data_offsets": [4, 4]}}, bytes(4)))
    write(t, "empty_header", safetensors({}))
    write(t, "header_past_end", safetensors(
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), length=1 << 40))
    write(t, "offsets_past_buffer", safetensors(
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)))
    write(t, "overlap", safetensors(
        {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
         "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, bytes(6)))
    write(t, "size_mismatch", safetensors(
        {"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}}, bytes(4)))
    write(t, "huge_shape", safetensors(
        {"w": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}}, bytes(8)))
    write(t, "negative_dim", safetensors(
        {"w": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 0]}}))
    write(t, "bad_dtype", safetensors(
        {"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, bytes(1)))
    write(t, "metadata_not_string", safetensors({"__metadata__": {"step": 3}}))
    write(t, "not_json", struct.pack("<Q", 8) + b"{\"w\": [1" + bytes(4))
    write(t, "short", b"\x10\x00\x00")


# --- tokenizer.json ------------------------------------------------------------
def trimmed_tokenizer(name, keep):
    path = os.path.join(ROOT, "tests", "testdata", "tokenizers", name, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    model = tok["model"]
    vocab = {k: v for k, v in model["vocab"].items() if v < keep}
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    model["vocab"] = vocab
    model["merges"] = merges[:120]
    return json.dumps(tok, ensure_ascii=False, separators=(",", ":"))


def tokenizer_seeds():
    t = "tokenizer_json"
    write(t, "llama3_byte_level", trimmed_tokenizer("llama3_bpe", 300))
    write(t, "llama2_byte_fallback", trimmed_tokenizer("llama2_bpe", 300))
    write(t, "qwen2_nfc", trimmed_tokenizer("qwen2_bpe", 300))
    # tokenizer_json_fuzz splits its input at this line: tokenizer_config.json follows.
    marker = "\n//tokenizer_config.json\n"
    for name in ("llama3_bpe", "llama2_bpe"):
        with open(os.path.join(ROOT, "tests", "testdata", "tokenizers", name,
                               "tokenizer_config.json"), encoding="utf-8") as f:
            config = f.read()
        write(t, name.split("_")[0] + "_with_config", trimmed_tokenizer(name, 300) + marker + config)
    write(t, "config_chat_template_list", trimmed_tokenizer("qwen2_bpe", 300) + marker + json.dumps({
        "add_bos_token": False, "eos_token": {"content": "<|endoftext|>"}, "pad_token": None,
        "chat_template": [{"name": "default", "template": "{{ messages }}"},
                          {"name": "tool_use", "template": "x"}]}))
    write(t, "gpt2_byte_level", trimmed_tokenizer("gpt2", 300))
    tiny = {
        "version": "1.0",
        "added_tokens": [
            {"id": 5, "content": "<s>", "special": True, "lstrip": False, "rstrip": False,
             "single_word": False, "normalized": False},
            {"id": 6, "content": "<|eot|>", "special": True, "lstrip": True, "rstrip": True,
             "single_word": False, "normalized": False},
            {"id": 7, "content": "hello", "special": False, "lstrip": False, "rstrip": False,
             "single_word": True, "normalized": True}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [5], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "<0x41>": 4},
                  "merges": ["a b"]},
    }
    write(t, "tiny_byte_fallback", json.dumps(tiny, ensure_ascii=False))
    write(t, "empty_bpe", '{"model": {"type": "BPE", "vocab": {}, "merges": []}}')
    write(t, "wordpiece", '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}')
    write(t, "merge_pairs", json.dumps({"model": {
        "type": "BPE", "vocab": {"x": 0, "y": 1, "xy": 2}, "merges": [["x", "y"]]},
        "pre_tokenizer": {"type": "Whitespace"}}))
    write(t, "added_big_id", json.dumps({
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
        "added_tokens": [{"id": 128009, "content": "<|eot_id|>", "special": True}]}))
    write(t, "not_object", "[1, 2, 3]")


# --- JSONL datasets ------------------------------------------------------------
def jsonl(*records):
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                   for r in records)


def jsonl_seeds():
    t = "jsonl_dataset"
    write(t, "text", jsonl({"text": "The quick brown fox."}, {"text": "jumps over\nthe lazy dog"},
                           "", {"text": "h\u00e9llo \u4f60\u597d \U0001f600", "id": 3}))
    write(t, "alpaca", jsonl(
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "output": "hi"}))
    write(t, "prompt_completion", jsonl({"prompt": "2 + 2 =", "completion": " 4"},
                                        {"prompt": "", "completion": "empty prompt"}))
    write(t, "chat", jsonl(
        {"messages": [{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": "93 + 25 = ?"},
                      {"role": "assistant", "content": "118"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                      {"role": "user", "content": "bye"}, {"role": "assistant", "content": "bye"}]}))
    write(t, "mixed_formats", jsonl({"text": "a"}, {"prompt": "b", "completion": "c"}))
    write(t, "bad_lines", jsonl({"text": "ok"}, "{\"text\": 5}", "not json", "[1,2]",
                                {"messages": []}, {"messages": [{"role": "bot", "content": "x"}]},
                                {"messages": [{"role": "user", "content": "no answer"}]},
                                {"text": "ok again"}))
    write(t, "invalid_utf8", b'{"text": "caf\xc3"}\n{"text": "\xed\xa0\x80"}\n{"text": "fine"}\n')
    write(t, "crlf_blank_lines", b'{"text": "one"}\r\n\r\n   \n{"text": "two"}\r\n')
    write(t, "long_line", jsonl({"text": "word " * 200}))
    write(t, "no_trailing_newline", '{"prompt": "p", "completion": "c"}')
    write(t, "escapes", jsonl({"text": "tab\there \"quoted\" \\ back \u0000 nul \u2028"}))


# --- job specs -----------------------------------------------------------------
def job_seeds():
    t = "job_spec"
    model = FIXTURE + "/model"
    train = FIXTURE + "/train.jsonl"
    valid = FIXTURE + "/valid.jsonl"
    full = {
        "name": "fuzz-full", "model": model, "output_dir": FIXTURE + "/out",
        "dataset": {"train": train, "validation": valid, "format": "text"},
        "method": "full",
        "hyperparameters": {"learning_rate": 1e-4, "max_steps": 10, "batch_size": 2,
                            "max_seq_len": 64, "warmup_steps": 2, "lr_scheduler": "cosine",
                            "seed": 7, "precision": "fp32", "packing": True},
    }
    write(t, "full", json.dumps(full, indent=2))
    lora = {
        "name": "fuzz-lora", "model": model,
        "dataset": {"train": "file-0123456789abcdef", "validation_split": 0.1, "format": "chat",
                    "chat_template": "llama3", "skip_bad_lines": True},
        "method": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.05,
                                   "target_modules": "all-linear", "use_rslora": True},
        "save_merged": True,
        "resources": {"gpus": 1}, "priority": 10, "max_restarts": 3,
        "labels": {"team": "nlp", "run": "a-1"},
        "hyperparameters": {"learning_rate": 0.01, "epochs": 2, "batch_size": 4,
                            "gradient_accumulation_steps": 2, "max_grad_norm": 1.0,
                            "save_steps": 5, "save_total_limit": 2,
                            "weight_decay": 0.01, "eval_steps": 5, "logging_steps": 1,
                            "precision": "bf16", "gradient_checkpointing": True},
    }
    write(t, "lora_uploaded_file", json.dumps(lora, indent=2))
    qlora = dict(lora, name="fuzz-qlora", method="qlora",
                 quantization={"type": "nf4", "double_quant": False})
    write(t, "qlora_uploaded_file", json.dumps(qlora, indent=2))
    custom = {
        "model": model, "output_dir": "/tmp/foak-fuzz-job/out",
        "dataset": {"train": train, "format": "alpaca", "instructions_as_chat": True,
                    "chat_template": {"user": {"prefix": "<|user|>\n", "suffix": "\n"},
                                      "assistant": {"prefix": "<|assistant|>\n",
                                                    "suffix": "<|end|>\n"},
                                      "bos": True, "eos": False}},
        "resources": {"processes": 2}, "kernels": ["foak"],
        "hyperparameters": {"max_steps": 20, "batch_size": 1, "seed": 42},
    }
    write(t, "custom_template_cpu_ranks", json.dumps(custom, indent=2))
    cluster = {
        "model": model, "dataset": {"train": train},
        "resources": {"gpus": 8, "nodes": 2, "node_selector": {"gpu.example.com/type": "h200"},
                      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                       "effect": "NoSchedule"}],
                      "queue": "team-a"},
        "hyperparameters": {"max_steps": 5},
    }
    write(t, "cluster_placement", json.dumps(cluster, indent=2))
    bench = {"model": model, "bench": {"steps": 3, "batch_sizes": [1, 2], "seq_lens": [32],
                                       "kernel_sets": ["none", "all"], "find_max_batch": True}}
    write(t, "bench", json.dumps(bench, indent=2))
    write(t, "relative_model", json.dumps({"model": "models/x", "dataset": {"train": train}}))
    write(t, "unknown_file_id", json.dumps({"model": model,
                                           "dataset": {"train": "file-000000000000dead"}}))
    write(t, "wrong_types", json.dumps({"model": model, "dataset": {"train": train},
                                        "priority": "high", "max_restarts": -1,
                                        "resources": {"gpus": 99},
                                        "hyperparameters": {"batch_size": 0.5}}))
    write(t, "huge_numbers", json.dumps({"model": model, "dataset": {"train": train},
                                         "priority": 18446744073709551615,
                                         "hyperparameters": {"max_steps": 9223372036854775807,
                                                             "learning_rate": 1e308}}))
    write(t, "empty_object", "{}")
    write(t, "not_json", "{\"model\": ")


if __name__ == "__main__":
    safetensors_seeds()
    tokenizer_seeds()
    jsonl_seeds()
    job_seeds()
