#include "models/batch_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace muse::models {
namespace {

constexpr uint32_t kMagic = 0x4d425431;  // "MBT1"

template <typename T>
void Put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
void PutVector(std::string& out, const std::vector<T>& v) {
  Put<uint64_t>(out, v.size());
  if (!v.empty()) out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}

  template <typename T>
  absl::Status Get(const char* what, T* v) {
    if (s_.size() - pos_ < sizeof(T)) return Cut(what);
    std::memcpy(v, s_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status GetVector(const char* what, std::vector<T>* v) {
    uint64_t n = 0;
    RETURN_IF_ERROR(Get(what, &n));
    if (n > (s_.size() - pos_) / sizeof(T)) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch message: ", what, " has ", n, " entries, more than the message"));
    }
    v->clear();
    return Append(what, n, v);
  }

  // `n` more elements appended to *v.
  template <typename T>
  absl::Status Append(const char* what, uint64_t n, std::vector<T>* v) {
    if (n > (s_.size() - pos_) / sizeof(T)) return Cut(what);
    if (n == 0) return absl::OkStatus();  // (an empty vector's data() may be null)
    const size_t old = v->size();
    v->resize(old + n);
    std::memcpy(v->data() + old, s_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return absl::OkStatus();
  }

  bool done() const { return pos_ == s_.size(); }

 private:
  absl::Status Cut(const char* what) const {
    return absl::InvalidArgumentError(absl::StrCat("batch message is cut at ", what));
  }
  const std::string& s_;
  size_t pos_ = 0;
};

}  // namespace

std::string EncodeBatch(const Batch& b, int64_t hidden_size) {
  std::string out;
  Put(out, kMagic);
  PutVector(out, b.input_ids);
  PutVector(out, b.positions);
  PutVector(out, b.query_start_loc);
  PutVector(out, b.seq_lens);
  PutVector(out, b.block_tables);
  Put(out, b.max_blocks_per_seq);
  PutVector(out, b.slot_mapping);
  PutVector(out, b.logits_indices);
  Put<uint64_t>(out, b.embedding_overrides.size());
  for (const EmbeddingOverride& e : b.embedding_overrides) {
    Put(out, e.token_index);
    Put(out, e.num_rows);
    if (e.num_rows > 0) {
      out.append(reinterpret_cast<const char*>(e.data),
                 static_cast<size_t>(e.num_rows) * hidden_size * sizeof(float));
    }
  }
  return out;
}

absl::Status DecodeBatch(const std::string& bytes, int64_t hidden_size, DecodedBatch* out) {
  Reader r(bytes);
  uint32_t magic = 0;
  RETURN_IF_ERROR(r.Get("magic", &magic));
  if (magic != kMagic) return absl::InvalidArgumentError("batch message: wrong magic");
  Batch& b = out->batch;
  b = Batch();
  RETURN_IF_ERROR(r.GetVector("input_ids", &b.input_ids));
  RETURN_IF_ERROR(r.GetVector("positions", &b.positions));
  RETURN_IF_ERROR(r.GetVector("query_start_loc", &b.query_start_loc));
  RETURN_IF_ERROR(r.GetVector("seq_lens", &b.seq_lens));
  RETURN_IF_ERROR(r.GetVector("block_tables", &b.block_tables));
  RETURN_IF_ERROR(r.Get("max_blocks_per_seq", &b.max_blocks_per_seq));
  RETURN_IF_ERROR(r.GetVector("slot_mapping", &b.slot_mapping));
  RETURN_IF_ERROR(r.GetVector("logits_indices", &b.logits_indices));
  uint64_t n = 0;
  RETURN_IF_ERROR(r.Get("embedding_overrides", &n));
  std::vector<std::pair<int32_t, int32_t>> spans;
  std::vector<float>& data = out->override_data;
  data.clear();
  for (uint64_t i = 0; i < n; ++i) {
    int32_t token_index = 0, num_rows = 0;
    RETURN_IF_ERROR(r.Get("embedding_overrides.token_index", &token_index));
    RETURN_IF_ERROR(r.Get("embedding_overrides.num_rows", &num_rows));
    if (num_rows < 0) {
      return absl::InvalidArgumentError("batch message: embedding_overrides.num_rows < 0");
    }
    RETURN_IF_ERROR(
        r.Append("embedding_overrides.data", static_cast<uint64_t>(num_rows) * hidden_size, &data));
    spans.emplace_back(token_index, num_rows);
  }
  if (!r.done()) return absl::InvalidArgumentError("batch message has trailing bytes");
  size_t offset = 0;
  for (const auto& [token_index, num_rows] : spans) {
    b.embedding_overrides.push_back({token_index, num_rows, data.data() + offset});
    offset += static_cast<size_t>(num_rows) * hidden_size;
  }
  return absl::OkStatus();
}

}  // namespace muse::models
