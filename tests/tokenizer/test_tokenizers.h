// Tiny hand-written tokenizer.json files for unit tests (no dependency on downloaded models).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "src/tokenizer/byte_level.h"

namespace muse::tokenizer::testing_json {

// GPT-2 style: ByteLevel pre-tokenizer with its regex, ByteLevel decoder, <|bos|> template.
inline nlohmann::json ByteLevelTiny() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[std::string(ByteToChars(static_cast<uint8_t>(b)))] = b;
  int next = 256;
  for (const char* t : {"ll", "he", "hell", "hello", "\xc4\xa0h", "\xc4\xa0he"}) vocab[t] = next++;
  vocab["<|bos|>"] = next;
  nlohmann::json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = nlohmann::json::array({{{"id", next},
                                              {"content", "<|bos|>"},
                                              {"single_word", false},
                                              {"lstrip", false},
                                              {"rstrip", false},
                                              {"normalized", false},
                                              {"special", true}}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", nlohmann::json::array({{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}},
                                        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", nlohmann::json::array()},
      {"special_tokens",
       {{"<|bos|>", {{"id", "<|bos|>"}, {"ids", {next}}, {"tokens", {"<|bos|>"}}}}}}};
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", {"l l", "h e", "he ll", "hell o", "\xc4\xa0 h", "\xc4\xa0h e"}}};
  return j;
}

// Llama 2 style: Prepend/Replace normalizer, no pre-tokenizer, byte fallback, SentencePiece
// decoder.
inline nlohmann::json SentencePieceTiny() {
  nlohmann::json vocab = nlohmann::json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    vocab[buf] = 3 + b;
  }
  int next = 259;
  for (const char* t : {"\xe2\x96\x81", "a", "b", "c",
                        "\xe2\x96\x81"
                        "a",
                        "ab",
                        "\xe2\x96\x81"
                        "ab",
                        "\xe6\x97\xa5"}) {
    vocab[t] = next++;
  }
  auto special = [](int id, const char* c) {
    return nlohmann::json{{"id", id},        {"content", c},    {"single_word", false},
                          {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                          {"special", true}};
  };
  nlohmann::json j;
  j["added_tokens"] =
      nlohmann::json::array({special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")});
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       nlohmann::json::array(
           {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
            {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}})}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", nlohmann::json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       nlohmann::json::array(
           {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", "<unk>"},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"vocab", vocab},
                {"merges", nlohmann::json::array({nlohmann::json::array({"a", "b"}),
                                                  "\xe2\x96\x81 ab", "\xe2\x96\x81 a"})}};
  return j;
}

}  // namespace muse::tokenizer::testing_json
